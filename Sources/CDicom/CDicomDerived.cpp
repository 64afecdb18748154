// The derived objects of include/CDicom.h — a Parametric Map and a binary Segmentation on a source series'
// geometry — built with DCMTK's IOD classes (dcmpmap, dcmseg, dcmfg), which write the modules and functional
// groups those IODs require, and encoded as Part 10 files in memory.
#include "CDicom.h"
#include "CDicomSupport.h"

#include <dcmtk/config/osconfig.h>
#include <dcmtk/dcmdata/dcdeftag.h>
#include <dcmtk/dcmdata/dcfilefo.h>
#include <dcmtk/dcmdata/dcostrmb.h>
#include <dcmtk/dcmdata/dcuid.h>
#include <dcmtk/dcmfg/fgderimg.h>
#include <dcmtk/dcmfg/fgframeanatomy.h>
#include <dcmtk/dcmfg/fgfracon.h>
#include <dcmtk/dcmfg/fgparametricmapframetype.h>
#include <dcmtk/dcmfg/fgpixeltransform.h>
#include <dcmtk/dcmfg/fgpixmsr.h>
#include <dcmtk/dcmfg/fgplanor.h>
#include <dcmtk/dcmfg/fgplanpo.h>
#include <dcmtk/dcmfg/fgrealworldvaluemapping.h>
#include <dcmtk/dcmfg/fgseg.h>
#include <dcmtk/dcmiod/modfloatingpointimagepixel.h>
#include <dcmtk/dcmpmap/dpmparametricmapiod.h>
#include <dcmtk/dcmseg/segdoc.h>
#include <dcmtk/dcmseg/segment.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

struct CDicomStudy {
    /// The source's Patient, General Study, Patient Study and Frame of Reference attributes, and its
    /// Specific Character Set: what files a derived object with the source study.
    DcmDataset attributes;
};

namespace {

/// The attributes copied from a source object: the Type 1 and 2 attributes of the Patient, General Study
/// and Frame of Reference modules (DICOM PS3.3 C.7.1.1, C.7.2.1, C.7.4.1), which file a derived object with
/// its source study, and the character set their values are in; no optional patient or study attribute.
const DcmTagKey copiedTags[] = {
    DCM_SpecificCharacterSet,
    // Patient
    DCM_PatientName, DCM_PatientID, DCM_PatientBirthDate, DCM_PatientSex,
    // General Study
    DCM_StudyInstanceUID, DCM_StudyDate, DCM_StudyTime, DCM_ReferringPhysicianName, DCM_StudyID, DCM_AccessionNumber,
    // Frame of Reference
    DCM_FrameOfReferenceUID, DCM_PositionReferenceIndicator,
};

const char *const manufacturer = "MIM-OOD Server";
const char *const modelName = "mimood";

/// A DS value (at most 16 characters) of `value`, with as many digits as fit.
OFString decimalString(double value) {
    char text[32];
    for (int digits = 12; digits >= 1; --digits) {
        std::snprintf(text, sizeof text, "%.*g", digits, value);
        if (std::strlen(text) <= 16) break;
    }
    return text;
}

OFCondition check(OFCondition condition, const char *what, std::string &failure) {
    if (condition.bad() && failure.empty()) failure = std::string(what) + ": " + condition.text();
    return condition;
}

/// The Part 10 file of `dataset` in explicit VR little endian, into a malloc'ed buffer.
bool encode(DcmDataset &dataset, uint8_t **bytes, size_t *count, std::string &failure) {
    DcmFileFormat file(&dataset);
    if (check(file.validateMetaInfo(EXS_LittleEndianExplicit), "file meta information", failure).bad()) return false;
    file.removeInvalidGroups();
    const Uint32 length = file.calcElementLength(EXS_LittleEndianExplicit, EET_ExplicitLength) + 128 + 4;
    uint8_t *buffer = static_cast<uint8_t *>(std::malloc(length));
    if (!buffer) throw std::bad_alloc();
    DcmOutputBufferStream stream(buffer, length);
    file.transferInit();
    const OFCondition written = file.write(stream, EXS_LittleEndianExplicit, EET_ExplicitLength, nullptr);
    file.transferEnd();
    if (check(written, "encoding", failure).bad()) {
        std::free(buffer);
        return false;
    }
    void *used = nullptr;
    offile_off_t usedLength = 0;
    stream.flushBuffer(used, usedLength);
    *bytes = buffer;
    *count = static_cast<size_t>(usedLength);
    return true;
}

/// The functional groups every frame of both objects shares: pixel measures, orientation, and the frame's
/// anatomy (the brain).
bool addSharedGroups(const CDicomDerivedFrames &frames, OFCondition (*add)(void *, const FGBase &), void *object,
                     std::string &failure) {
    FGPixelMeasures measures;
    check(measures.setPixelSpacing(decimalString(frames.pixelSpacing[0]) + "\\" + decimalString(frames.pixelSpacing[1])),
          "Pixel Spacing", failure);
    check(measures.setSliceThickness(decimalString(frames.sliceSpacing)), "Slice Thickness", failure);
    check(measures.setSpacingBetweenSlices(decimalString(frames.sliceSpacing)), "Spacing Between Slices", failure);
    FGPlaneOrientationPatient orientation;
    const double *o = frames.orientation;
    check(orientation.setImageOrientationPatient(decimalString(o[0]), decimalString(o[1]), decimalString(o[2]),
                                                 decimalString(o[3]), decimalString(o[4]), decimalString(o[5])),
          "Image Orientation (Patient)", failure);
    FGFrameAnatomy anatomy;
    check(anatomy.setLaterality(FGFrameAnatomy::LATERALITY_UNPAIRED), "Frame Laterality", failure);
    check(anatomy.getAnatomy().getAnatomicRegion().set("12738006", "SCT", "Brain"), "Anatomic Region", failure);
    if (!failure.empty()) return false;
    return check(add(object, measures), "shared Pixel Measures", failure).good()
        && check(add(object, orientation), "shared Plane Orientation", failure).good()
        && check(add(object, anatomy), "shared Frame Anatomy", failure).good();
}

/// Frame `index`'s own groups: its position, its place in the one stack (the dimension index), and the
/// source frame it was derived from.
struct FrameGroups {
    FGPlanePosPatient position;
    FGFrameContent content;
    std::unique_ptr<FGDerivationImage> derivation;

    bool make(const CDicomDerivedFrames &frames, uint32_t index, const std::vector<Uint32> &dimensionValues, std::string &failure) {
        const double *p = frames.positions + 3 * index;
        check(position.setImagePositionPatient(decimalString(p[0]), decimalString(p[1]), decimalString(p[2])),
              "Image Position (Patient)", failure);
        for (unsigned dimension = 0; dimension < dimensionValues.size(); ++dimension) {
            check(content.setDimensionIndexValues(dimensionValues[dimension], dimension), "Dimension Index Values", failure);
        }
        const CDicomSourceFrame &source = frames.sources[index];
        ImageSOPInstanceReferenceMacro *reference = nullptr;
        if (check(ImageSOPInstanceReferenceMacro::create(source.sopClassUID, source.sopInstanceUID, reference),
                  "source image reference", failure).bad()) return false;
        // Unchecked: DCMTK 3.6.7 formats the number with a leading space (valid IS) that its own check refuses.
        if (source.frameNumber > UINT16_MAX) failure = "a source frame number is beyond 65535";
        if (source.frameNumber > 0 && failure.empty()) {
            check(reference->addReferencedFrameNumber(static_cast<Uint16>(source.frameNumber), OFFalse), "Referenced Frame Number", failure);
        }
        OFVector<ImageSOPInstanceReferenceMacro> references;
        references.push_back(*reference);
        delete reference;
        derivation.reset(FGDerivationImage::createMinimal(
            references, "MIM-OOD anomaly detection",
            CodeSequenceMacro("113076", "DCM", "Segmentation"),
            CodeSequenceMacro("121322", "DCM", "Source image for image processing operation")));
        if (!derivation) failure = "source image reference: the Derivation Image group could not be made";
        return failure.empty();
    }

    OFVector<FGBase *> list() { return {&position, &content, derivation.get()}; }
};

/// One dimension per stack position (Image Position (Patient) in the Plane Position Sequence), after the
/// segment number for a segmentation.
bool addDimensions(IODMultiframeDimensionModule &dimensions, const char *organizationUID, bool bySegment, std::string &failure) {
    if (bySegment) {
        check(dimensions.addDimensionIndex(DCM_ReferencedSegmentNumber, organizationUID, DCM_SegmentIdentificationSequence,
                                           "Segment"), "segment dimension", failure);
    }
    check(dimensions.addDimensionIndex(DCM_ImagePositionPatient, organizationUID, DCM_PlanePositionSequence, "Position"),
          "position dimension", failure);
    return failure.empty();
}

/// The Referenced Series Sequence (Common Instance Reference module): every source instance, once.
bool addReferencedSeries(DcmDataset &dataset, const CDicomDerivedFrames &frames, std::string &failure) {
    DcmItem *series = nullptr;
    if (check(dataset.findOrCreateSequenceItem(DCM_ReferencedSeriesSequence, series, 0), "Referenced Series Sequence", failure).bad())
        return false;
    check(series->putAndInsertString(DCM_SeriesInstanceUID, frames.sourceSeriesUID), "referenced Series Instance UID", failure);
    std::vector<std::string> seen;
    for (uint32_t index = 0; index < frames.frames; ++index) {
        const CDicomSourceFrame &source = frames.sources[index];
        if (std::find(seen.begin(), seen.end(), source.sopInstanceUID) != seen.end()) continue;
        seen.push_back(source.sopInstanceUID);
        DcmItem *instance = nullptr;
        check(series->findOrCreateSequenceItem(DCM_ReferencedInstanceSequence, instance, -2), "Referenced Instance Sequence", failure);
        if (!instance) return false;
        check(instance->putAndInsertString(DCM_ReferencedSOPClassUID, source.sopClassUID), "Referenced SOP Class UID", failure);
        check(instance->putAndInsertString(DCM_ReferencedSOPInstanceUID, source.sopInstanceUID), "Referenced SOP Instance UID", failure);
    }
    return failure.empty();
}

/// Files `object` with the source study: its patient, study and frame of reference attributes.
template <typename IOD>
bool fileWithStudy(IOD &object, const CDicomStudy &study, std::string &failure) {
    DcmDataset attributes(study.attributes);
    return check(object.importHierarchy(attributes, OFTrue, OFTrue, OFTrue, OFFalse), "source study", failure).good();
}

CDicomStatus finish(bool good, const std::string &failure, char *message, size_t capacity) {
    return good ? CDICOM_OK : fail(CDICOM_MALFORMED, failure.empty() ? "the object could not be written" : failure.c_str(), message, capacity);
}

}  // namespace

extern "C" CDicomStudy *cdicom_study_copy(const CDicomObject *object) {
    try {
        configureOnce();
        std::unique_ptr<CDicomStudy> study(new CDicomStudy);
        DcmDataset &source = const_cast<DcmDataset &>(object->dataset);
        for (const DcmTagKey &tag : copiedTags) {
            DcmElement *element = nullptr;
            if (source.findAndGetElement(tag, element, OFFalse, OFTrue).good() && element) {
                study->attributes.insert(element, OFTrue);
            }
        }
        return study.release();
    } catch (...) {
        return nullptr;
    }
}

extern "C" void cdicom_study_free(CDicomStudy *study) { delete study; }

extern "C" void cdicom_free_bytes(uint8_t *bytes) { std::free(bytes); }

extern "C" CDicomStatus cdicom_write_parametric_map(const CDicomStudy *study, const CDicomDerivedFrames *frames, const float *values,
                                                    uint8_t **bytes, size_t *count, char *message, size_t messageCapacity) {
    return guarded(message, messageCapacity, [&]() -> CDicomStatus {
        std::string failure;
        IODEnhGeneralEquipmentModule::EquipmentInfo equipment(manufacturer, modelName, "1", frames->softwareVersion);
        ContentIdentificationMacro content("1", "ANOMALY_MAP", "MIM-OOD anomaly map", "MIM-OOD");
        // Series 9901 (the Segmentation 9902): after a scanner's own series numbers.
        auto created = DPMParametricMapIOD::create<IODFloatingPointImagePixelModule>(
            "MR", "9901", "1", frames->rows, frames->columns, equipment, content, "VOLUME", "QUANTITY", DPMTypes::CQ_RESEARCH);
        if (OFCondition *error = OFget<OFCondition>(&created)) {
            check(*error, "Parametric Map", failure);
            return finish(false, failure, message, messageCapacity);
        }
        DPMParametricMapIOD &map = *OFget<DPMParametricMapIOD>(&created);
        if (!fileWithStudy(map, *study, failure)) return finish(false, failure, message, messageCapacity);
        map.getIODGeneralSeriesModule().setSeriesInstanceUID(frames->seriesUID);
        map.getIODGeneralSeriesModule().setSeriesDescription("MIM-OOD anomaly map");
        map.getIODSOPCommonModule().setSOPInstanceUID(frames->instanceUID);
        check(map.setRecognizableVisualFeatures(DPMTypes::RVF_NO), "Recognizable Visual Features", failure);

        auto add = [](void *object, const FGBase &group) { return static_cast<DPMParametricMapIOD *>(object)->addForAllFrames(group); };
        if (!addSharedGroups(*frames, add, &map, failure)) return finish(false, failure, message, messageCapacity);
        FGParametricMapFrameType frameType;
        check(frameType.setFrameType("DERIVED\\PRIMARY\\VOLUME\\QUANTITY"), "Frame Type", failure);
        // Float32 pixels are the values themselves: the identity transformation, and a real-world value
        // mapping that names what they are.
        FGPixelValueTransformation identity;
        check(identity.setRescaleIntercept("0"), "Rescale Intercept", failure);
        check(identity.setRescaleSlope("1"), "Rescale Slope", failure);
        check(identity.setRescaleType("US"), "Rescale Type", failure);
        float lowest = 0, highest = 0;
        const size_t area = size_t(frames->rows) * frames->columns, total = area * frames->frames;
        for (size_t index = 0; index < total; ++index) {
            lowest = std::fmin(lowest, values[index]);
            highest = std::fmax(highest, values[index]);
        }
        FGRealWorldValueMapping mapping;
        auto *item = new FGRealWorldValueMapping::RWVMItem();
        mapping.getRealWorldValueMapping().push_back(item);
        check(item->setDoubleFloatRealWorldValueFirstValueMapped(lowest), "Real World Value First Value Mapped", failure);
        check(item->setDoubleFloatRealWorldValueLastValueMapped(highest), "Real World Value Last Value Mapped", failure);
        check(item->setRealWorldValueIntercept(0), "Real World Value Intercept", failure);
        check(item->setRealWorldValueSlope(1), "Real World Value Slope", failure);
        check(item->setLUTExplanation("MIM-OOD anomaly score"), "LUT Explanation", failure);
        check(item->setLUTLabel("ANOMALY"), "LUT Label", failure);
        check(item->getMeasurementUnitsCode().set("1", "UCUM", "no units"), "Measurement Units Code", failure);
        if (!failure.empty()) return finish(false, failure, message, messageCapacity);
        if (check(map.addForAllFrames(frameType), "shared Frame Type", failure).bad()
            || check(map.addForAllFrames(identity), "shared Pixel Value Transformation", failure).bad()
            || check(map.addForAllFrames(mapping), "shared Real World Value Mapping", failure).bad()
            || !addDimensions(map.getIODMultiframeDimensionModule(), frames->dimensionOrganizationUID, false, failure)) {
            return finish(false, failure, message, messageCapacity);
        }

        DPMParametricMapIOD::FramesType framesVariant = map.getFrames();
        auto *floatFrames = OFget<DPMParametricMapIOD::Frames<Float32>>(&framesVariant);
        if (!floatFrames) return finish(false, "Parametric Map: no Float32 frames", message, messageCapacity);
        for (uint32_t index = 0; index < frames->frames; ++index) {
            FrameGroups groups;
            if (!groups.make(*frames, index, {index + 1}, failure)) return finish(false, failure, message, messageCapacity);
            std::vector<Float32> frame(values + index * area, values + (index + 1) * area);
            if (check(floatFrames->addFrame(frame.data(), area, groups.list()), "Parametric Map frame", failure).bad())
                return finish(false, failure, message, messageCapacity);
        }
        DcmDataset dataset;
        if (check(map.writeDataset(dataset), "Parametric Map", failure).bad() || !addReferencedSeries(dataset, *frames, failure))
            return finish(false, failure, message, messageCapacity);
        return finish(encode(dataset, bytes, count, failure), failure, message, messageCapacity);
    });
}

extern "C" CDicomStatus cdicom_write_segmentation(const CDicomStudy *study, const CDicomDerivedFrames *frames, const uint8_t *mask,
                                                  uint8_t **bytes, size_t *count, char *message, size_t messageCapacity) {
    return guarded(message, messageCapacity, [&]() -> CDicomStatus {
        std::string failure;
        IODGeneralEquipmentModule::EquipmentInfo equipment(manufacturer, modelName, "1", frames->softwareVersion);
        ContentIdentificationMacro content("1", "ANOMALY", "MIM-OOD anomaly segmentation", "MIM-OOD");
        DcmSegmentation *created = nullptr;
        if (check(DcmSegmentation::createBinarySegmentation(created, frames->rows, frames->columns, equipment, content),
                  "Segmentation", failure).bad() || !created) {
            return finish(false, failure, message, messageCapacity);
        }
        std::unique_ptr<DcmSegmentation> segmentation(created);
        if (!fileWithStudy(*segmentation, *study, failure)) return finish(false, failure, message, messageCapacity);
        segmentation->getSeries().setSeriesInstanceUID(frames->seriesUID);
        segmentation->getSeries().setSeriesDescription("MIM-OOD anomaly segmentation");
        segmentation->getSeries().setSeriesNumber("9902");
        segmentation->getSOPCommon().setSOPInstanceUID(frames->instanceUID);

        DcmSegment *segment = nullptr;
        CodeSequenceMacro category("49755003", "SCT", "Morphologically Altered Structure");
        CodeSequenceMacro type("52988006", "SCT", "Lesion");
        if (check(DcmSegment::create(segment, "anomaly", category, type, DcmSegTypes::SAT_AUTOMATIC, "MIM-OOD"), "segment", failure).bad())
            return finish(false, failure, message, messageCapacity);
        Uint16 segmentNumber = 0;
        if (check(segmentation->addSegment(segment, segmentNumber), "segment", failure).bad())
            return finish(false, failure, message, messageCapacity);

        auto add = [](void *object, const FGBase &group) { return static_cast<DcmSegmentation *>(object)->addForAllFrames(group); };
        if (!addSharedGroups(*frames, add, segmentation.get(), failure)
            || !addDimensions(segmentation->getDimensions(), frames->dimensionOrganizationUID, true, failure)) {
            return finish(false, failure, message, messageCapacity);
        }
        const size_t area = size_t(frames->rows) * frames->columns;
        FGSegmentation segmentGroup;
        check(segmentGroup.setReferencedSegmentNumber(segmentNumber), "Referenced Segment Number", failure);
        for (uint32_t index = 0; index < frames->frames; ++index) {
            FrameGroups groups;
            if (!groups.make(*frames, index, {segmentNumber, index + 1}, failure)) return finish(false, failure, message, messageCapacity);
            OFVector<FGBase *> list = groups.list();
            list.push_back(&segmentGroup);
            std::vector<Uint8> frame(mask + index * area, mask + (index + 1) * area);
            if (check(segmentation->addFrame(frame.data(), segmentNumber, list), "Segmentation frame", failure).bad())
                return finish(false, failure, message, messageCapacity);
        }
        DcmDataset dataset;
        if (check(segmentation->writeDataset(dataset), "Segmentation", failure).bad() || !addReferencedSeries(dataset, *frames, failure))
            return finish(false, failure, message, messageCapacity);
        // DCMTK 3.6.7 drops the bits of a last partial byte (frames × rows × columns not a multiple of 8), so
        // the bits are packed here: one per pixel, first pixel in the lowest bit, frames back to back (PS3.5 §8.1.1).
        const size_t total = area * frames->frames;
        std::vector<Uint8> packed((total + 7) / 8, 0);
        for (size_t pixel = 0; pixel < total; ++pixel) {
            if (mask[pixel]) packed[pixel / 8] |= Uint8(1u << (pixel % 8));
        }
        if (check(dataset.putAndInsertUint8Array(DCM_PixelData, packed.data(), packed.size()), "Pixel Data", failure).bad())
            return finish(false, failure, message, messageCapacity);
        return finish(encode(dataset, bytes, count, failure), failure, message, messageCapacity);
    });
}
