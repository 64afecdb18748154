import CDicom
import Foundation

/// A parsed object's patient, study and frame-of-reference attributes (DCMTK's copy), held so that objects
/// derived from its series are filed with its study. Never logged or echoed: it holds patient data.
/// `@unchecked Sendable`: written once when copied, only read after.
public final class DICOMStudy: @unchecked Sendable {
    fileprivate let attributes: OpaquePointer

    init(_ attributes: OpaquePointer) {
        self.attributes = attributes
    }

    deinit { cdicom_study_free(attributes) }
}

/// What objects derived from a DICOM series take from it: its study, and where each of its frames lies and
/// which instance it is, in slice order (the order of `DICOMSeries.volume()`'s slices).
public struct DICOMSource: Sendable {
    public struct Frame: Sendable {
        let sopClassUID: String
        let sopInstanceUID: String
        /// 1-based within a multi-frame object; 0 for a single-frame one.
        let number: Int
    }

    let study: DICOMStudy
    let seriesUID: String
    public let rows: Int
    public let columns: Int
    /// Image Position (Patient) of each frame, LPS millimetres.
    let positions: [[Double]]
    let orientation: [Double]
    /// Between rows, then between columns.
    let spacing: [Double]
    let sliceSpacing: Double
    let frames: [Frame]

    public var frameCount: Int { frames.count }

    /// A Parametric Map of `values` (Float32, the series' voxel grid as `DICOMSeries.volume()` lays it out:
    /// frame after frame, row after row) in a new series of the source study, as a Part 10 file.
    public func parametricMap(_ values: [Float], softwareVersion: String) throws(DICOMError) -> [UInt8] {
        precondition(values.count == rows * columns * frames.count, "one value per voxel")
        return try write(softwareVersion: softwareVersion) { frames, bytes, count, message in
            values.withUnsafeBufferPointer { cdicom_write_parametric_map(study.attributes, frames, $0.baseAddress, bytes, count, message, 256) }
        }
    }

    /// A binary Segmentation, one segment "anomaly" marking the voxels where `mask` is true (laid out as
    /// `parametricMap`'s values), in a new series of the source study, as a Part 10 file.
    public func segmentation(_ mask: [Bool], softwareVersion: String) throws(DICOMError) -> [UInt8] {
        precondition(mask.count == rows * columns * frames.count, "one value per voxel")
        let bytes = mask.map { UInt8($0 ? 1 : 0) }
        return try write(softwareVersion: softwareVersion) { frames, output, count, message in
            bytes.withUnsafeBufferPointer { cdicom_write_segmentation(study.attributes, frames, $0.baseAddress, output, count, message, 256) }
        }
    }

    /// Runs one of CDicom's writers on this source's frames with new UIDs, and takes the file it wrote.
    private func write(softwareVersion: String,
                       _ writer: (UnsafePointer<CDicomDerivedFrames>, UnsafeMutablePointer<UnsafeMutablePointer<UInt8>?>,
                                  UnsafeMutablePointer<Int>, UnsafeMutablePointer<CChar>) -> CDicomStatus) throws(DICOMError) -> [UInt8] {
        guard rows <= Int(UInt16.max), columns <= Int(UInt16.max) else {
            throw .unprocessable("a DICOM object cannot hold frames of \(rows) × \(columns) pixels")
        }
        let (seriesUID, instanceUID, organizationUID) = (DICOMUID.make(), DICOMUID.make(), DICOMUID.make())
        var message = [CChar](repeating: 0, count: 256)
        var output: UnsafeMutablePointer<UInt8>?
        var count = 0
        let flatPositions = positions.flatMap { $0 }
        // The C strings live as long as the calls below: every one is made within these closures.
        let status = withCStrings(frames.flatMap { [$0.sopClassUID, $0.sopInstanceUID] }
                                  + [self.seriesUID, seriesUID, instanceUID, organizationUID, softwareVersion]) { strings in
            let sources = frames.indices.map { index in
                CDicomSourceFrame(sopClassUID: strings[2 * index], sopInstanceUID: strings[2 * index + 1], frameNumber: UInt32(frames[index].number))
            }
            let named = strings.suffix(5).map { $0 }
            return flatPositions.withUnsafeBufferPointer { positions in
                sources.withUnsafeBufferPointer { sources in
                    var description = CDicomDerivedFrames(
                        rows: UInt16(rows), columns: UInt16(columns), frames: UInt32(frames.count), positions: positions.baseAddress,
                        orientation: (orientation[0], orientation[1], orientation[2], orientation[3], orientation[4], orientation[5]),
                        pixelSpacing: (spacing[0], spacing[1]), sliceSpacing: sliceSpacing, sources: sources.baseAddress,
                        sourceSeriesUID: named[0], seriesUID: named[1], instanceUID: named[2], dimensionOrganizationUID: named[3],
                        softwareVersion: named[4])
                    return writer(&description, &output, &count, &message)
                }
            }
        }
        guard status == CDICOM_OK, let output else {
            throw .unprocessable("the DICOM answer could not be written: \(DICOMObject.text(message))")
        }
        defer { cdicom_free_bytes(output) }
        return Array(UnsafeBufferPointer(start: output, count: count))
    }
}

/// UIDs of the objects written here: `2.25.` and a random UUID as one decimal integer (ISO/IEC 9834-8,
/// PS3.5 §B.2), which needs no registered root and is unique without coordination between replicas.
public enum DICOMUID {
    public static func make() -> String {
        var value = UUID().uuid
        var bytes = withUnsafeBytes(of: &value) { Array($0) }
        // The decimal digits of the 128-bit big-endian integer, by repeated division by 10.
        var digits: [Character] = []
        while bytes.contains(where: { $0 != 0 }) {
            var remainder = 0
            for index in bytes.indices {
                let current = remainder * 256 + Int(bytes[index])
                bytes[index] = UInt8(current / 10)
                remainder = current % 10
            }
            digits.append(Character(String(remainder)))
        }
        return "2.25." + (digits.isEmpty ? "0" : String(digits.reversed()))
    }
}

/// Runs `body` with C copies of `strings`, valid during the call.
private func withCStrings<Result>(_ strings: [String], _ body: ([UnsafePointer<CChar>]) -> Result) -> Result {
    let copies = strings.map { strdup($0)! }
    defer { copies.forEach { free($0) } }
    return body(copies.map { UnsafePointer($0) })
}
