// DCMTK behind the C API of include/CDicom.h. Every entry point catches every C++ exception (an allocation
// failure in DCMTK included) and reports it as a status; DCMTK's own logging is switched off, because its
// warnings may quote attribute values and patient data is never logged.
#include "CDicom.h"
#include "CDicomSupport.h"

#include <dcmtk/config/osconfig.h>
#include <dcmtk/dcmdata/dcdatset.h>
#include <dcmtk/dcmdata/dcdeftag.h>
#include <dcmtk/dcmdata/dcelem.h>
#include <dcmtk/dcmdata/dcistrmb.h>
#include <dcmtk/dcmdata/dcmetinf.h>
#include <dcmtk/dcmdata/dcxfer.h>

#include <dcmtk/dcmdata/dcstack.h>

#include <cstring>
#include <exception>
#include <vector>

namespace {

/// Elements longer than this are not loaded while parsing but when used, from `CDicomObject::bytes` (as
/// DCMTK loads them from a file), after every length was checked against the buffer.
const Uint32 maximumReadLength = 4096;

/// A buffer stream that can be opened again at an offset, so that DCMTK defers long elements instead of
/// allocating their declared length while parsing.
class ReopenableBufferStream : public DcmInputBufferStream {
public:
    ReopenableBufferStream(const uint8_t *bytes, size_t count, size_t base) : bytes_(bytes), count_(count), base_(base) {
        setBuffer(bytes + base, static_cast<offile_off_t>(count - base));
        setEos();
    }
    DcmInputStreamFactory *newFactory() const override;

private:
    const uint8_t *bytes_;
    size_t count_, base_;
};

class ReopenableBufferStreamFactory : public DcmInputStreamFactory {
public:
    ReopenableBufferStreamFactory(const uint8_t *bytes, size_t count, size_t offset) : bytes_(bytes), count_(count), offset_(offset) {}
    DcmInputStream *create() const override { return new ReopenableBufferStream(bytes_, count_, offset_); }
    DcmInputStreamFactory *clone() const override { return new ReopenableBufferStreamFactory(*this); }
    // Only DCMTK's file and temporary-file factories are named; a deferred element is what this is used for.
    DcmInputStreamFactoryType ident() const override { return DFT_DcmInputFileStreamFactory; }

private:
    const uint8_t *bytes_;
    size_t count_, offset_;
};

DcmInputStreamFactory *ReopenableBufferStream::newFactory() const {
    const size_t offset = base_ + static_cast<size_t>(tell());
    return offset <= count_ ? new ReopenableBufferStreamFactory(bytes_, count_, offset) : nullptr;
}

/// Whether every element of `item`, at any depth, declares at most `count` bytes (or an undefined
/// length): then no deferred element can make DCMTK allocate more than the buffer's own size.
bool lengthsFit(DcmItem &item, size_t count) {
    DcmStack stack;
    while (item.nextObject(stack, OFTrue).good()) {
        const Uint32 length = stack.top()->getLengthField();
        if (length != DCM_UndefinedLength && length > count) return false;
    }
    return true;
}

/// One numeric value of `element`, whatever its numeric VR.
bool numberAt(DcmElement *element, unsigned long index, double &value) {
    switch (element->ident()) {
    case EVR_DS: case EVR_FD: { Float64 v; if (element->getFloat64(v, index).bad()) return false; value = v; return true; }
    case EVR_FL: { Float32 v; if (element->getFloat32(v, index).bad()) return false; value = v; return true; }
    case EVR_IS: case EVR_SL: { Sint32 v; if (element->getSint32(v, index).bad()) return false; value = v; return true; }
    case EVR_US: { Uint16 v; if (element->getUint16(v, index).bad()) return false; value = v; return true; }
    case EVR_UL: { Uint32 v; if (element->getUint32(v, index).bad()) return false; value = v; return true; }
    case EVR_SS: { Sint16 v; if (element->getSint16(v, index).bad()) return false; value = v; return true; }
    default: return false;
    }
}

size_t numbersIn(DcmItem *item, const DcmTagKey &key, double *values, size_t capacity) {
    DcmElement *element = nullptr;
    if (!item || item->findAndGetElement(key, element, OFFalse).bad() || !element) return 0;
    const unsigned long available = element->getVM();
    size_t written = 0;
    for (unsigned long index = 0; index < available && written < capacity; ++index) {
        if (!numberAt(element, index, values[written])) return 0;
        ++written;
    }
    return written;
}

/// Item `index` of sequence `key` in `item`, or null.
DcmItem *itemOf(DcmItem *item, const DcmTagKey &key, long index) {
    DcmItem *found = nullptr;
    if (!item || item->findAndGetSequenceItem(key, found, index).bad()) return nullptr;
    return found;
}

}  // namespace

extern "C" CDicomStatus cdicom_read_meta(const uint8_t *bytes, size_t count, char transferSyntax[65], size_t *datasetOffset,
                                         char *message, size_t messageCapacity) {
    return guarded(message, messageCapacity, [&]() -> CDicomStatus {
        if (count < 132 || std::memcmp(bytes + 128, "DICM", 4) != 0) {
            return fail(CDICOM_MALFORMED, "no DICOM preamble ('DICM' at byte 128)", message, messageCapacity);
        }
        ReopenableBufferStream stream(bytes, count, 0);
        DcmMetaInfo meta;
        meta.transferInit();
        OFCondition condition = meta.read(stream, EXS_Unknown, EGL_noChange, maximumReadLength);
        meta.transferEnd();
        if (condition.bad()) return fail(CDICOM_MALFORMED, condition.text(), message, messageCapacity);
        if (!lengthsFit(meta, count)) return fail(CDICOM_MALFORMED, "a file meta element is longer than the file", message, messageCapacity);
        OFString uid;
        if (meta.findAndGetOFString(DCM_TransferSyntaxUID, uid).bad() || uid.empty() || uid.length() > 64) {
            return fail(CDICOM_MALFORMED, "the file meta information has no valid Transfer Syntax UID (0002,0010)", message, messageCapacity);
        }
        std::memcpy(transferSyntax, uid.c_str(), uid.length() + 1);
        *datasetOffset = static_cast<size_t>(stream.tell());
        return CDICOM_OK;
    });
}

extern "C" CDicomStatus cdicom_parse_dataset(const uint8_t *bytes, size_t count, const char *transferSyntax,
                                             CDicomObject **object, char *message, size_t messageCapacity) {
    *object = nullptr;
    return guarded(message, messageCapacity, [&]() -> CDicomStatus {
        const E_TransferSyntax syntax = DcmXfer(transferSyntax).getXfer();
        if (syntax == EXS_Unknown) return fail(CDICOM_UNSUPPORTED, "unknown transfer syntax", message, messageCapacity);
        CDicomObject *parsed = new CDicomObject();
        parsed->bytes.assign(bytes, bytes + count);
        ReopenableBufferStream stream(parsed->bytes.data(), count, 0);
        parsed->dataset.transferInit();
        OFCondition condition = parsed->dataset.read(stream, syntax, EGL_noChange, maximumReadLength);
        parsed->dataset.transferEnd();
        if (condition.bad() || !lengthsFit(parsed->dataset, count)) {
            delete parsed;
            return fail(CDICOM_MALFORMED, condition.bad() ? condition.text() : "an element is longer than the data set",
                        message, messageCapacity);
        }
        *object = parsed;
        return CDICOM_OK;
    });
}

extern "C" void cdicom_free(CDicomObject *object) {
    try { delete object; } catch (...) {}
}

extern "C" int cdicom_transfer_syntax_name(const char *transferSyntax, char *name, size_t capacity) {
    try {
        DcmXfer syntax(transferSyntax);
        if (syntax.getXfer() == EXS_Unknown || capacity == 0) return -1;
        std::strncpy(name, syntax.getXferName(), capacity - 1);
        name[capacity - 1] = '\0';
        return 0;
    } catch (...) {
        return -1;
    }
}

extern "C" long cdicom_string(const CDicomObject *object, uint16_t group, uint16_t element, char *value, size_t capacity) {
    try {
        OFString text;
        auto &dataset = const_cast<DcmDataset &>(object->dataset);
        if (dataset.findAndGetOFStringArray(DcmTagKey(group, element), text).bad() || text.length() + 1 > capacity) return -1;
        std::memcpy(value, text.c_str(), text.length() + 1);
        return static_cast<long>(text.length());
    } catch (...) {
        return -1;
    }
}

extern "C" size_t cdicom_numbers(const CDicomObject *object, uint32_t frame, uint16_t macroGroup, uint16_t macroElement,
                                 uint16_t group, uint16_t element, double *values, size_t capacity) {
    try {
        auto *dataset = const_cast<DcmDataset *>(&object->dataset);
        const DcmTagKey key(group, element);
        if (macroGroup != 0) {
            const DcmTagKey macro(macroGroup, macroElement);
            DcmItem *perFrame = itemOf(dataset, DCM_PerFrameFunctionalGroupsSequence, static_cast<long>(frame));
            if (size_t found = numbersIn(itemOf(perFrame, macro, 0), key, values, capacity)) return found;
            DcmItem *shared = itemOf(dataset, DCM_SharedFunctionalGroupsSequence, 0);
            if (size_t found = numbersIn(itemOf(shared, macro, 0), key, values, capacity)) return found;
        }
        return numbersIn(dataset, key, values, capacity);
    } catch (...) {
        return 0;
    }
}

extern "C" CDicomStatus cdicom_pixels(CDicomObject *object, float *values, size_t count, char *message, size_t messageCapacity) {
    return guarded(message, messageCapacity, [&]() -> CDicomStatus {
        DcmDataset &dataset = object->dataset;
        if (DcmXfer(dataset.getOriginalXfer()).isEncapsulated()) {
            OFCondition condition = dataset.chooseRepresentation(EXS_LittleEndianExplicit, nullptr);
            if (condition.bad()) return fail(CDICOM_MALFORMED, condition.text(), message, messageCapacity);
        }
        Uint16 bitsAllocated = 0, bitsStored = 0, representation = 0;
        if (dataset.findAndGetUint16(DCM_BitsAllocated, bitsAllocated).bad() || dataset.findAndGetUint16(DCM_BitsStored, bitsStored).bad()
            || (bitsAllocated != 8 && bitsAllocated != 16) || bitsStored == 0 || bitsStored > bitsAllocated) {
            return fail(CDICOM_UNSUPPORTED, "Bits Allocated must be 8 or 16 and Bits Stored within it", message, messageCapacity);
        }
        dataset.findAndGetUint16(DCM_PixelRepresentation, representation);
        DcmElement *pixels = nullptr;
        if (dataset.findAndGetElement(DCM_PixelData, pixels).bad() || !pixels) {
            return fail(CDICOM_MALFORMED, "no Pixel Data (7FE0,0010)", message, messageCapacity);
        }
        const Uint32 mask = bitsStored == 32 ? 0xFFFFFFFFu : (1u << bitsStored) - 1;
        const Uint32 signBit = 1u << (bitsStored - 1);
        auto convert = [&](Uint32 raw) -> float {
            const Uint32 stored = raw & mask;
            if (representation == 1 && (stored & signBit)) return static_cast<float>(static_cast<int64_t>(stored) - (int64_t(1) << bitsStored));
            return static_cast<float>(stored);
        };
        const size_t length = pixels->getLength();
        if (bitsAllocated == 8) {
            Uint8 *data = nullptr;
            if (pixels->getUint8Array(data).bad() || !data || length < count) {
                return fail(CDICOM_MALFORMED, "Pixel Data is shorter than Rows × Columns × Number of Frames", message, messageCapacity);
            }
            for (size_t index = 0; index < count; ++index) values[index] = convert(data[index]);
        } else {
            Uint16 *data = nullptr;
            if (pixels->getUint16Array(data).bad() || !data || length / 2 < count) {
                return fail(CDICOM_MALFORMED, "Pixel Data is shorter than Rows × Columns × Number of Frames", message, messageCapacity);
            }
            for (size_t index = 0; index < count; ++index) values[index] = convert(data[index]);
        }
        return CDICOM_OK;
    });
}
