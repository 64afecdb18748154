import Glibc
import Imaging

/// How a DICOM body was sent, beyond its bytes, and what the request allows of it.
public struct DICOMRequest: Sendable, Equatable {
    /// The boundary of a `multipart/related; type="application/dicom"` body (a series as WADO-RS returns
    /// it); nil when the body is one DICOM file or a ZIP of a series folder.
    public var multipartBoundary: String?
    /// `force`: run a series whose Modality is not MR.
    public var anyModality = false

    public init(multipartBoundary: String? = nil, anyModality: Bool = false) {
        (self.multipartBoundary, self.anyModality) = (multipartBoundary, anyModality)
    }
}

/// Where the DICOM files of a body are, found without inflating or copying anything: the body itself (one
/// Part 10 file), the parts of a multipart/related body, or a ZIP's members (folders, a DICOMDIR and hidden
/// files skipped). Their count and declared sizes are checked against the limits here.
enum DICOMBody {
    case whole
    /// Ranges of the body.
    case parts([Range<Int>])
    /// Inflated one at a time as they are read.
    case members([ZIPArchive.Entry])

    init(locating bytes: [UInt8], _ request: DICOMRequest, limits: DICOMLimits) throws(InputError) {
        if let boundary = request.multipartBoundary {
            do { self = .parts(try MultipartRelated.parts(bytes, boundary: boundary, limits: limits)) } catch { throw .refusal(error) }
            return
        }
        guard bytes.starts(with: ZIPArchive.signature) else {
            self = .whole
            return
        }
        let entries: [ZIPArchive.Entry]
        do { entries = try ZIPArchive.entries(bytes, maximumMembers: limits.maximumFiles, maximumBytes: limits.maximumBytes) } catch {
            throw .refusal(error)
        }
        let files = entries.filter { entry in
            let name = entry.name.split(separator: "/").last.map(String.init) ?? ""
            return !entry.isFolder && name.uppercased() != "DICOMDIR" && !name.hasPrefix(".")
        }
        guard !files.isEmpty else { throw InputError(.malformed, "the ZIP archive holds no DICOM file") }
        self = .members(files)
    }

    /// What reading one file holds besides the body: a ZIP member's stored and inflated bytes (parts and
    /// a whole body are parsed in place).
    var largestFileReadingBytes: Int {
        guard case .members(let entries) = self else { return 0 }
        return entries.map(\.readingBytes).max() ?? 0
    }

    /// The series of the files in `bytes`, each parsed once as it is read.
    func series(in bytes: [UInt8], anyModality: Bool, limits: DICOMLimits) throws(InputError) -> DICOMSeries {
        var reader = DICOMSeriesReader(limits: limits)
        func read(_ file: ArraySlice<UInt8>) throws(InputError) {
            do { try reader.read(file) } catch { throw .refusal(error) }
        }
        switch self {
        case .whole:
            try read(bytes[...])
        case .parts(let ranges):
            for range in ranges { try read(bytes[range]) }
        case .members(let entries):
            for entry in entries {
                // Its parsed data set is kept; its inflated bytes are not.
                let contents: [UInt8]
                do { contents = try ZIPArchive.contents(of: entry, in: bytes) } catch { throw .refusal(error) }
                try read(contents[...])
            }
        }
        do { return try reader.series(anyModality: anyModality) } catch { throw .refusal(error) }
    }
}

/// Why a multipart/related body could not be split.
enum MultipartError: Error, CustomStringConvertible {
    case malformed(String)
    /// More parts than `DICOMLimits.maximumFiles`.
    case tooManyParts(String)
    case tooLarge(String)
    /// A part of another type than application/dicom.
    case unsupportedPart(String)

    var description: String {
        switch self {
        case .malformed(let detail): "the multipart/related body is malformed: \(detail)"
        case .tooManyParts(let detail), .tooLarge(let detail): detail
        case .unsupportedPart(let type): "every part of a multipart/related body must be application/dicom, got '\(type)'"
        }
    }
}

/// A strict reader of `multipart/related` bodies (RFC 2387, RFC 2046 §5.1.1): delimiters `--boundary` at
/// line starts, each part's header fields (at most 8 KiB, Content-Type application/dicom required), and
/// the close delimiter `--boundary--` required; preamble and epilogue ignored.
enum MultipartRelated {
    static let maximumPartHeaderBytes = 8192

    /// Where each part's bytes lie in `body`.
    static func parts(_ body: [UInt8], boundary: String, limits: DICOMLimits) throws(MultipartError) -> [Range<Int>] {
        guard (1...70).contains(boundary.utf8.count) else { throw .malformed("the boundary must have 1 to 70 characters") }
        let delimiter = Array("--\(boundary)".utf8)
        let crlf: [UInt8] = [13, 10]
        // The first delimiter may open the body; every other one follows a CRLF.
        var position: Int
        if body.starts(with: delimiter) {
            position = delimiter.count
        } else if let found = find(crlf + delimiter, in: body, body.indices) {
            position = found.upperBound
        } else {
            throw .malformed("no delimiter '--' + boundary")
        }
        var parts: [Range<Int>] = []
        var totalBytes = 0
        while true {
            if body[position...].starts(with: [45, 45]) { break }  // "--": the close delimiter
            // Transport padding (spaces, tabs) may follow a delimiter before its CRLF.
            while position < body.count, body[position] == 32 || body[position] == 9 { position += 1 }
            guard body[position...].starts(with: crlf) else { throw .malformed("a delimiter is not followed by CRLF") }
            position += 2
            let headerLimit = min(body.count, position + maximumPartHeaderBytes)
            guard let headerEnd = find(crlf + crlf, in: body, position ..< headerLimit) else {
                throw .malformed("a part's header fields do not end (they may take \(maximumPartHeaderBytes) bytes; a truncated body?)")
            }
            let headers = String(decoding: body[position ..< headerEnd.lowerBound], as: UTF8.self)
            let contentType = headers.split(separator: "\r\n").compactMap { line -> Substring? in
                guard let colon = line.firstIndex(of: ":"), line[..<colon].lowercased() == "content-type" else { return nil }
                return line[line.index(after: colon)...]
            }.first
            // A media type has no white space: what surrounds it is dropped with the parameters.
            let mediaType = contentType?.split(separator: ";").first.map { $0.filter { $0 != " " && $0 != "\t" }.lowercased() } ?? ""
            guard mediaType == "application/dicom" else { throw .unsupportedPart(String(mediaType.prefix(100))) }
            guard let end = find(crlf + delimiter, in: body, headerEnd.upperBound ..< body.count) else {
                throw .malformed("a part is not closed by a delimiter (truncated body?)")
            }
            totalBytes += end.lowerBound - headerEnd.upperBound
            guard parts.count < limits.maximumFiles else { throw .tooManyParts("more than the \(limits.maximumFiles) DICOM files allowed") }
            guard totalBytes <= limits.maximumBytes else { throw .tooLarge("the parts take more than the \(limits.maximumBytes) bytes allowed") }
            parts.append(headerEnd.upperBound ..< end.lowerBound)
            position = end.upperBound
        }
        guard !parts.isEmpty else { throw .malformed("no part") }
        return parts
    }

    /// A `multipart/related; type="<partType>"` body of `parts` and its Content-Type: a random boundary
    /// that no part contains, each part with its Content-Type, and the close delimiter.
    static func encode(_ parts: [[UInt8]], partType: String) -> (contentType: String, body: [UInt8]) {
        var boundary: String
        repeat {
            boundary = "mimood-" + (0..<4).map { _ in String(UInt64.random(in: 0...UInt64.max), radix: 36) }.joined()
        } while parts.contains { part in find(Array(boundary.utf8), in: part, part.indices) != nil }
        var body: [UInt8] = []
        body.reserveCapacity(parts.reduce(0) { $0 + $1.count } + parts.count * 100 + 100)
        for part in parts {
            body += Array("--\(boundary)\r\nContent-Type: \(partType)\r\n\r\n".utf8)
            body += part
            body += Array("\r\n".utf8)
        }
        body += Array("--\(boundary)--\r\n".utf8)
        return ("multipart/related; type=\"\(partType)\"; boundary=\(boundary)", body)
    }

    /// Where `pattern` (not empty) first lies within `range` of `body`: its first byte found by memchr, the
    /// rest compared. The generic `firstRange(of:)` takes seconds to cross a body of a few megabytes.
    private static func find(_ pattern: [UInt8], in body: [UInt8], _ range: Range<Int>) -> Range<Int>? {
        body.withUnsafeBytes { bytes in
            pattern.withUnsafeBytes { needle in
                var start = range.lowerBound
                while range.upperBound - start >= pattern.count {
                    guard let hit = memchr(bytes.baseAddress! + start, Int32(pattern[0]), range.upperBound - start) else { return nil }
                    let offset = bytes.baseAddress!.distance(to: UnsafeRawPointer(hit))
                    if range.upperBound - offset >= pattern.count, memcmp(hit, needle.baseAddress!, pattern.count) == 0 {
                        return offset ..< offset + pattern.count
                    }
                    start = offset + 1
                }
                return nil
            }
        }
    }
}
