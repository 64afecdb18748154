// What the C entry points of CDicom.cpp (reading) and CDicomDerived.cpp (writing) share: the parsed object,
// DCMTK's one-time set-up, and the guard that keeps C++ exceptions from crossing the C boundary.
#ifndef CDICOM_SUPPORT_H
#define CDICOM_SUPPORT_H

#include "CDicom.h"

#include <dcmtk/config/osconfig.h>
#include <dcmtk/dcmdata/dcdatset.h>
#include <dcmtk/dcmdata/dcrledrg.h>
#include <dcmtk/dcmjpeg/djdecode.h>
#include <dcmtk/oflog/oflog.h>

#include <cstring>
#include <mutex>
#include <new>
#include <vector>

struct CDicomObject {
    /// The data set's bytes, which its long elements are loaded from when first used.
    std::vector<uint8_t> bytes;
    DcmDataset dataset;
};

/// DCMTK's logging off (its warnings may quote attribute values, and patient data is never logged) and
/// the RLE and JPEG decoders registered, once per process.
inline void configureOnce() {
    static std::once_flag once;
    std::call_once(once, [] {
        OFLog::configure(OFLogger::OFF_LOG_LEVEL);
        DcmRLEDecoderRegistration::registerCodecs();
        DJDecoderRegistration::registerCodecs();
    });
}

/// `status`, with `text` copied into `message` (NUL-ended, cut to `capacity`).
inline CDicomStatus fail(CDicomStatus status, const char *text, char *message, size_t capacity) {
    if (message && capacity > 0) {
        std::strncpy(message, text, capacity - 1);
        message[capacity - 1] = '\0';
    }
    return status;
}

/// Runs `body`, turning any exception into a status: nothing C++ crosses the C boundary.
template <typename Body>
CDicomStatus guarded(char *message, size_t capacity, Body body) {
    try {
        configureOnce();
        return body();
    } catch (const std::bad_alloc &) {
        return fail(CDICOM_MALFORMED, "out of memory in DCMTK", message, capacity);
    } catch (...) {
        return fail(CDICOM_MALFORMED, "DCMTK failed", message, capacity);
    }
}

#endif
