// A narrow C API over DCMTK (dcmdata with the RLE and JPEG lossless decoders; dcmpmap and dcmseg) for Swift:
// parse a DICOM object from memory, read the attributes the series assembly needs, decode the pixels; write
// a Parametric Map and a Segmentation on a source series' geometry. No C++ exception
// crosses it, and nothing it reports holds an attribute's value (messages name tags, never values).
#ifndef CDICOM_H
#define CDICOM_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/// A parsed data set; freed with cdicom_free.
typedef struct CDicomObject CDicomObject;

/// What a call ended with; a message (never an attribute value) is written where one is asked for.
typedef enum {
    CDICOM_OK = 0,
    /// Not DICOM, truncated, or inconsistent.
    CDICOM_MALFORMED = 1,
    /// Valid, but not what the decoder takes (e.g. a codec it lacks).
    CDICOM_UNSUPPORTED = 2,
} CDicomStatus;

/// Reads a Part 10 file's preamble and meta information: the data set's transfer syntax UID (at most 64
/// characters) and the offset where the data set starts.
CDicomStatus cdicom_read_meta(const uint8_t *bytes, size_t count, char transferSyntax[65], size_t *datasetOffset,
                              char *message, size_t messageCapacity);

/// Parses a data set encoded in `transferSyntax` (a deflated one is given inflated, as explicit VR little
/// endian), into a copy of its bytes: elements longer than 4 KiB (Pixel Data among them) are loaded from that
/// copy when first used, not while parsing. No element longer than `count` is read.
CDicomStatus cdicom_parse_dataset(const uint8_t *bytes, size_t count, const char *transferSyntax,
                                  CDicomObject **object, char *message, size_t messageCapacity);

void cdicom_free(CDicomObject *object);

/// The name DCMTK gives a transfer syntax UID (e.g. "JPEG 2000 (Lossless only)") into `name`, NUL-ended;
/// returns 0, or -1 for a UID it does not know.
int cdicom_transfer_syntax_name(const char *transferSyntax, char *name, size_t capacity);

/// The value of a top-level string attribute (multiple values joined by '\\') into `value`, NUL-ended;
/// returns its length, or -1 when it is absent or longer than `capacity - 1`.
long cdicom_string(const CDicomObject *object, uint16_t group, uint16_t element, char *value, size_t capacity);

/// The numeric values (DS, IS, FD, FL, US, UL, SS, SL) of an attribute for frame `frame` (0-based), looked
/// for where an Enhanced object keeps it — in `macro` (a functional group sequence such as Plane Position
/// Sequence) of the frame's Per-frame Functional Groups item, then of the Shared Functional Groups — and
/// then at the top level. `macroGroup` = 0 looks at the top level only. Returns how many values were
/// written (at most `capacity`), 0 when the attribute is absent.
size_t cdicom_numbers(const CDicomObject *object, uint32_t frame, uint16_t macroGroup, uint16_t macroElement,
                      uint16_t group, uint16_t element, double *values, size_t capacity);

/// Decodes Pixel Data (decompressing RLE or JPEG lossless) into `count` stored values as Float32, frame
/// after frame, row after row: `count` must be frames × rows × columns of a single-sample image of 8 or 16
/// bits allocated, as the caller checked from the header. Values are the stored integers (signed when
/// Pixel Representation is 1, masked to Bits Stored), before any rescale.
CDicomStatus cdicom_pixels(CDicomObject *object, float *values, size_t count, char *message, size_t messageCapacity);

/// The patient, study and frame-of-reference attributes of a parsed object (and its Specific Character
/// Set), copied so that objects derived from its series can be filed with its study after it is freed.
typedef struct CDicomStudy CDicomStudy;

/// A copy of `object`'s study attributes; NULL when memory runs out. Freed with cdicom_study_free.
CDicomStudy *cdicom_study_copy(const CDicomObject *object);

void cdicom_study_free(CDicomStudy *study);

/// The source frame a derived frame lies on.
typedef struct {
    const char *sopClassUID;
    const char *sopInstanceUID;
    /// 1-based, in a multi-frame object; 0 for a single-frame one.
    uint32_t frameNumber;
} CDicomSourceFrame;

/// Where the frames of a derived object lie (those of its source series, in slice order) and what names it.
typedef struct {
    uint16_t rows;
    uint16_t columns;
    uint32_t frames;
    /// frames × 3: each frame's Image Position (Patient), LPS millimetres.
    const double *positions;
    /// Image Orientation (Patient): row direction, then column direction.
    double orientation[6];
    /// Pixel Spacing: between rows, then between columns (mm).
    double pixelSpacing[2];
    /// Between slice centres (mm), also written as the slice thickness.
    double sliceSpacing;
    /// frames entries.
    const CDicomSourceFrame *sources;
    const char *sourceSeriesUID;
    /// The new object's Series Instance UID, SOP Instance UID and Dimension Organization UID.
    const char *seriesUID;
    const char *instanceUID;
    const char *dimensionOrganizationUID;
    /// Software Versions of the equipment module.
    const char *softwareVersion;
} CDicomDerivedFrames;

/// A Parametric Map (Float32, one frame per source frame, `values` frame after frame, row after row) filed
/// with `study`, as a Part 10 file in explicit VR little endian into `*bytes` (freed with cdicom_free_bytes).
CDicomStatus cdicom_write_parametric_map(const CDicomStudy *study, const CDicomDerivedFrames *frames, const float *values,
                                         uint8_t **bytes, size_t *count, char *message, size_t messageCapacity);

/// A binary Segmentation with one segment, "anomaly" (`mask`: one byte per pixel, laid out as the map's,
/// non-zero inside), filed with `study`, as cdicom_write_parametric_map writes.
CDicomStatus cdicom_write_segmentation(const CDicomStudy *study, const CDicomDerivedFrames *frames, const uint8_t *mask,
                                       uint8_t **bytes, size_t *count, char *message, size_t messageCapacity);

void cdicom_free_bytes(uint8_t *bytes);

#ifdef __cplusplus
}
#endif

#endif
