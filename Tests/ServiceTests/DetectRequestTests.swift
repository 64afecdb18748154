import Detection
import HTTPServer
import Models
import XCTest
@testable import Service

/// What POST /detect is asked for, read from the head alone: content negotiation and the query, as pure functions.
final class DetectRequestTests: XCTestCase {
    func testAcceptPicksTheHighestQualityThenTheMostSpecificRange() {
        let cases: [(String?, ResponseFormat?)] = [
            (nil, .json), ("", .json), ("*/*", .json),
            ("application/x-npz", .npz), ("image/*", .png), ("IMAGE/PNG", .png),
            ("application/json;q=0.5, application/x-npz", .npz),
            ("application/json;q=0.5, application/x-npz;q=0.4", .json),
            ("*/*;q=0.9, application/x-nifti", .nifti),
            ("application/*;q=0.8, image/png;q=0.8", .png),   // equal q: the more specific range wins
            ("application/x-npz;q=0, */*;q=0.1", .json),      // q=0 refuses the format; the wildcard picks ours first
            ("text/html", nil), ("application/x-npz;q=0", nil),
            // The DICOM answer: multipart/related of DICOM parts (type quoted or not), or their ZIP.
            ("multipart/related; type=\"application/dicom\"", .dicom), ("multipart/related;type=application/dicom", .dicom),
            ("multipart/related", .dicom), ("multipart/related; type=\"image/jpeg\"", nil), ("application/zip", .zip),
        ]
        for (accept, expected) in cases {
            XCTAssertEqual(ResponseFormat.negotiate(accept), expected, accept ?? "(absent)")
        }
    }

    func testTheQueryOverridesTheCheckpointsDefaults() throws {
        let engine = try Self.engine()
        let request = try read(engine, query: [("restorations", "3"), ("steps", "2"), ("seed", "18446744073709551615"),
                                                ("threshold", "0.25"), ("combine", "mean"), ("preprocessed", "TRUE")]).get()
        XCTAssertEqual(request.parameters, engine.defaults.overriding(restorations: 3, steps: 2, threshold: 0.25,
                                                                      seed: .max, combine: .mean))
        XCTAssertTrue(request.preprocessed)
        XCTAssertEqual(request.responseFormat, .json)
        XCTAssertNil(request.declaredFormat)
    }

    /// The threshold sets the chosen method's threshold, whatever the order of the query.
    func testTheThresholdBelongsToTheChosenMethod() throws {
        let engine = try Self.engine()
        for query in [[("threshold", "7.5"), ("method", "ar")], [("method", "ar"), ("threshold", "7.5")]] {
            let parameters = try read(engine, query: query).get().parameters
            XCTAssertEqual(parameters.method, .ar)
            XCTAssertEqual(parameters.lambdaNLL, 7.5)
            XCTAssertEqual(parameters.lambda, engine.defaults.lambda)
        }
    }

    func testRefusalsNameTheProblem() throws {
        let engine = try Self.engine()
        let cases: [([(String, String)], [(String, String)], Int, String)] = [
            ([("restorations", "0")], [], 422, "'restorations' must be an integer in 1…"),
            ([("steps", "x")], [], 422, "'steps' must be an integer in 1…"),
            ([("threshold", "nan")], [], 422, "'threshold' must be a finite number"),
            ([("seed", "-1")], [], 422, "'seed' must be an integer in 0…"),
            ([("method", "gan")], [], 422, "'method' must be one of mim-ood, ar, mvtm-critic"),
            ([("seed", "1"), ("seed", "2")], [], 422, "'seed' is given twice"),
            ([("colour", "red")], [], 422, "unknown query parameter 'colour'"),
            ([], [("Content-Type", "application/x-www-form-urlencoded")], 415, "curl sends that"),
            ([], [("Accept", "text/html")], 406, "none of the accepted types"),
        ]
        for (query, headers, status, detail) in cases {
            switch read(engine, query: query, headers: headers) {
            case .success: XCTFail("accepted \(query) \(headers)")
            case .failure(let problem):
                XCTAssertEqual(problem.status, status, problem.detail)
                XCTAssertTrue(problem.detail.contains(detail), problem.detail)
            }
        }
    }

    func testAMethodTheCheckpointCannotRunIsRefusedBeforeTheBody() throws {
        let partial = try Engine(Checkpoint(directory: Self.checkpoint, only: [.vqvae, .atd, .mvtm]))
        guard case .failure(let problem) = read(partial, query: [("method", "ar")]) else { return XCTFail("accepted") }
        XCTAssertEqual(problem.status, 422)
        XCTAssertEqual(problem.detail, "method 'ar' needs component 'ar', which this checkpoint does not have")
        XCTAssertNoThrow(try read(partial, query: []).get())
    }

    func testTheContentTypeNamesTheInputFormat() throws {
        let engine = try Self.engine()
        let cases: [(String, InputFormat?)] = [("application/x-nifti", .nifti), ("application/gzip", .nifti),
                                               ("application/x-npy; charset=binary", .npy), ("image/png", .png),
                                               ("application/dicom", .dicom), ("application/zip", .dicom),
                                               ("application/octet-stream", nil)]   // told by the magic bytes
        for (type, format) in cases {
            XCTAssertEqual(try read(engine, query: [], headers: [("Content-Type", type)]).get().declaredFormat, format, type)
        }
    }

    /// A WADO-RS body: the boundary (quoted or not) from the Content-Type; `force` lets another modality through.
    func testMultipartRelatedNamesItsBoundaryAndForceAllowsAnyModality() throws {
        let engine = try Self.engine()
        for type in ["multipart/related; type=\"application/dicom\"; boundary=abc:1", "Multipart/Related;boundary=\"abc:1\""] {
            let request = try read(engine, query: [("force", "true")], headers: [("Content-Type", type)]).get()
            XCTAssertEqual(request.declaredFormat, .dicom, type)
            XCTAssertEqual(request.dicom, DICOMRequest(multipartBoundary: "abc:1", anyModality: true), type)
        }
        XCTAssertEqual(try read(engine, query: [], headers: [("Content-Type", "application/dicom")]).get().dicom, DICOMRequest())
        let refused = [("multipart/related; type=\"application/dicom\"", "needs a boundary"),
                       ("multipart/related; type=\"image/png\"; boundary=b", "type=\"application/dicom\" only")]
        for (type, detail) in refused {
            guard case .failure(let problem) = read(engine, query: [], headers: [("Content-Type", type)]) else { return XCTFail(type) }
            XCTAssertEqual(problem.status, 415, type)
            XCTAssertTrue(problem.detail.contains(detail), problem.detail)
        }
    }

    // MARK: - Helpers

    private static let checkpoint = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures/parity/checkpoint").path

    private static func engine() throws -> Engine { InferenceQueueTests.engine }

    private func read(_ engine: Engine, query: [(String, String)], headers: [(String, String)] = []) -> Result<DetectRequest, ServiceProblem> {
        let head = RequestHead(method: "POST", target: "/detect", path: "/detect", query: query.map { (name: $0.0, value: $0.1) },
                               version: .http1_1, headers: HTTPHeaders(headers))
        return DetectRequest.read(head, defaults: engine.defaults, configuration: ServiceConfiguration(), engine: engine)
    }
}
