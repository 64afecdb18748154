import Foundation
import Imaging
import TestSupport
import Threading
import XCTest
import ZlibCodec

/// The real `mimood serve` on loopback, used as users do: curl with every input and output format, numpy
/// and nibabel reading what comes back, bad inputs of every kind, concurrent clients, a full queue, SIGTERM.
/// The parity checkpoint (tiny) keeps it quick; one test serves the default model as a fresh clone does.
final class ServiceEndToEndTests: ServiceTestCase {
    // MARK: Inputs

    private func sliceNPY() throws -> String { try write(NPY.encode(shape: [160, 160], float32: paritySlice()), "slice.npy") }

    static let volumeAffine = Affine(rows: [[1.2, 0, 0, -90], [0, 1, 0, -80], [0, 0, 2, -6], [0, 0, 0, 1]])

    /// The slice's brain, `thickness` slices thick, at 1.2 × 1.0 × 2.0 mm, as a gzip-compressed NIfTI.
    private func volumeNIfTI(thickness: Int = 3, name: String = "head.nii.gz") throws -> String {
        let slice = try paritySlice()
        var volume = Volume(zeros: [160, 160, thickness])
        for k in 0..<thickness { for j in 0..<160 { for i in 0..<160 { volume[i, j, k] = slice[j * 160 + i] * 1000 } } }
        return try write(NIfTI.encode(volume, geometry: NIfTIGeometry(affine: Self.volumeAffine)), name)
    }

    /// A raw 8-bit slice of another size (150 columns × 170 rows): preprocessed by the 2-D rule.
    private func slicePNG() throws -> String {
        let parity = try paritySlice()
        var raw = GrayImage(width: 150, height: 170, pixels: [Float](repeating: 0, count: 150 * 170))
        for row in 5..<165 { for column in 0..<150 { raw[row, column] = parity[(row - 5) * 160 + column + 5] } }
        return try write(PNG.encode(PNGImage(gray: raw)), "raw.png")
    }

    /// Runs a Python snippet with the project's environment (numpy, nibabel); fails the test on a non-zero exit.
    private func python(_ script: String, line: UInt = #line) throws {
        let interpreter = ServiceProcess.repository.appendingPathComponent(".venv/bin/python").path
        guard FileManager.default.isExecutableFile(atPath: interpreter) else {
            throw ServiceTestFailure("no \(interpreter): scripts/test sets up the Python environment first")
        }
        let finished = try runProcess(interpreter, ["-c", script])
        XCTAssertEqual(finished.status, 0, finished.errors + finished.output, line: line)
    }

    private func saved(_ response: Curl.Response, _ name: String) throws -> String {
        try write([UInt8](response.body), name)
    }

    // MARK: Formats

    func testEveryInputFormatWithEveryOutputFormatThroughCurl() throws {
        let service = try serve()
        let fast = "restorations=2&steps=2&seed=7"

        // A .npy slice declared preprocessed → JSON, whose arrays decode with numpy as documented.
        let slice = try Curl.detect(service, file: try sliceNPY(), contentType: "application/x-npy",
                                    query: fast + "&preprocessed=true", extra: ["-H", "X-Request-ID: pacs-0001"])
        XCTAssertEqual(slice.status, 200, slice.text)
        XCTAssertEqual(slice.headers["content-type"], "application/json")
        XCTAssertEqual(slice.headers["x-request-id"], "pacs-0001")
        XCTAssertTrue(slice.headers["server-timing"]?.contains("inference;dur=") == true)
        let json = try slice.json()
        XCTAssertEqual(json["request_id"] as? String, "pacs-0001")
        XCTAssertEqual((json["model"] as? [String: Any])?["name"] as? String, "parity-fixture")
        XCTAssertEqual((json["parameters"] as? [String: Any])?["restorations"] as? Int, 2)
        XCTAssertEqual((json["summary"] as? [String: Any])?["tokens"] as? Int, 400)
        XCTAssertNotNil((json["timings"] as? [String: Any])?["queue_wait_ms"])
        try python("""
            import base64, gzip, json, numpy as np
            r = json.load(open(\(pythonString(try saved(slice, "slice.json")))))
            def array(a):
                assert a["dtype"] == "float32" and a["byte_order"] == "little" and a["encoding"] == "gzip+base64", a
                return np.frombuffer(gzip.decompress(base64.b64decode(a["data"])), "<f4").reshape(a["shape"])
            m, t = array(r["anomaly_map"]), array(r["token_heatmap"])
            assert m.shape == (160, 160) and t.shape == (20, 20), (m.shape, t.shape)
            assert 0 <= m.min() and m.max() <= 1 and abs(m.max() - r["summary"]["max_score"]) < 1e-6
            """)

        // The same request gives the same map: results depend on the seed, not on batching or timing.
        let again = try Curl.detect(service, file: try sliceNPY(), contentType: "application/x-npy", query: fast + "&preprocessed=true")
        XCTAssertEqual((try again.json()["anomaly_map"] as? [String: Any])?["data"] as? String,
                       (json["anomaly_map"] as? [String: Any])?["data"] as? String)

        // A NIfTI volume → .nii.gz with the input's affine, on the input's voxel grid.
        let volume = try volumeNIfTI()
        let nifti = try Curl.detect(service, file: volume, contentType: "application/x-nifti", query: fast, accept: "application/x-nifti")
        XCTAssertEqual(nifti.status, 200, nifti.text)
        XCTAssertEqual(nifti.headers["content-type"], "application/x-nifti")
        try python("""
            import nibabel as nib, numpy as np
            image, source = nib.load(\(pythonString(try saved(nifti, "map.nii.gz")))), nib.load(\(pythonString(volume)))
            assert image.shape == source.shape == (160, 160, 3), (image.shape, source.shape)
            assert np.allclose(image.affine, source.affine), (image.affine, source.affine)
            data = image.get_fdata()
            assert 0 <= data.min() and data.max() <= 1 and data.max() > 0
            """)

        // The same volume → .npz, and → JSON with [slices, 20, 20] token scores.
        let npz = try Curl.detect(service, file: volume, contentType: "application/x-nifti", query: fast, accept: "application/x-npz")
        XCTAssertEqual(npz.status, 200, npz.text)
        try python("""
            import numpy as np
            arrays = np.load(\(pythonString(try saved(npz, "maps.npz"))))
            assert arrays["anomaly_map"].shape == (160, 160, 3), arrays["anomaly_map"].shape
            assert arrays["token_heatmap"].shape[1:] == (20, 20) and arrays["anomaly_map"].dtype == np.float32
            """)
        let volumeJSON = try Curl.detect(service, file: volume, contentType: nil, query: fast, accept: "application/json")
        XCTAssertEqual(volumeJSON.status, 200, volumeJSON.text)
        let shapes = try ["anomaly_map", "token_heatmap"].map { (try volumeJSON.json()[$0] as? [String: Any])?["shape"] as? [Int] }
        XCTAssertEqual(shapes[0], [160, 160, 3])
        XCTAssertEqual(shapes[1]?.dropFirst(), [20, 20])

        // A raw PNG slice → the overlay PNG, a valid colour image of the model's frame.
        let overlay = try Curl.detect(service, file: try slicePNG(), contentType: "image/png", query: fast, accept: "image/png")
        XCTAssertEqual(overlay.status, 200, overlay.text)
        XCTAssertEqual(overlay.headers["content-type"], "image/png")
        let image = try PNG.decode([UInt8](overlay.body))
        XCTAssertEqual([image.width, image.height], [160, 160])
        // A .npy volume [x, y, z] → JSON on its own grid (voxel axes taken as RAS at 1 mm): two axial slices.
        let parity = try paritySlice()
        let stack = (0..<160).flatMap { i in (0..<160).flatMap { j in [Float](repeating: parity[j * 160 + i] * 500, count: 2) } }
        let npyVolume = try write(NPY.encode(shape: [160, 160, 2], float32: stack), "stack.npy")
        let volumeFromNPY = try Curl.detect(service, file: npyVolume, contentType: "application/x-npy", query: fast)
        XCTAssertEqual(volumeFromNPY.status, 200, volumeFromNPY.text)
        XCTAssertEqual((try volumeFromNPY.json()["anomaly_map"] as? [String: Any])?["shape"] as? [Int], [160, 160, 2])
        XCTAssertEqual(service.terminate(), 0)
    }

    // MARK: Errors

    func testEveryMalformedInputGetsItsProblemStatusAndTheServerKeepsServing() throws {
        let service = try serve(["--max-body-bytes", "2000000", "--request-max-slices", "4"])
        let npy = try NPY.encode(shape: [160, 160], float32: paritySlice())
        let png = try PNG.encode(PNGImage(gray: GrayImage(width: 40, height: 30, pixels: [Float](repeating: 0.5, count: 1200))))
        // Two slices 2 mm apart: three at 1 mm, within request_max_slices (a volume over it is refused from its header).
        let nifti = [UInt8](try Data(contentsOf: URL(fileURLWithPath: try volumeNIfTI(thickness: 2))))
        var corruptPNG = png
        corruptPNG[40] ^= 0xFF
        var badMagic = try NIfTI.encode(Volume(zeros: [4, 4, 4]), geometry: NIfTIGeometry(affine: .identity), compressed: false)
        badMagic[344] = UInt8(ascii: "x")
        let colour = try PNG.encode(PNGImage(width: 2, height: 1, color: .rgb, bitDepth: 8, samples: [255, 0, 0, 0, 255, 0]))
        let fourDimensional = NPY.encode(shape: [1, 1, 2, 2], float32: [0, 0, 0, 0])
        let tooManySlices = NPY.encode(shape: [5, 160, 160], float32: [Float](repeating: 0.5, count: 5 * 160 * 160))
        let cases: [(name: String, body: [UInt8], type: String?, query: String, accept: String?, status: Int)] = [
            ("truncated .npy", Array(npy.prefix(500)), "application/x-npy", "", nil, 400),
            ("4-D .npy", fourDimensional, "application/x-npy", "", nil, 422),
            ("object dtype .npy", [UInt8](try Data(contentsOf: ServiceProcess.repository
                .appendingPathComponent("Tests/Fixtures/imaging/npy/object.npy"))), "application/x-npy", "", nil, 422),
            ("unknown bytes", Array("hello, world, this is not an image".utf8), nil, "", nil, 415),
            ("text/plain", npy, "text/plain", "", nil, 415),
            ("curl's default type", npy, "application/x-www-form-urlencoded", "", nil, 415),
            ("truncated .nii.gz", Array(nifti.prefix(nifti.count / 2)), "application/x-nifti", "", nil, 400),
            ("NIfTI with a bad magic", badMagic, "application/x-nifti", "", nil, 400),
            ("garbage named NIfTI", Array(repeating: 7, count: 400), "application/x-nifti", "", nil, 400),
            ("PNG with a bad CRC", corruptPNG, "image/png", "", nil, 400),
            ("colour PNG", colour, "image/png", "", nil, 422),
            ("PNG declared as .npy", png, "application/x-npy", "", nil, 400),
            ("empty body", [], "application/x-npy", "", nil, 400),
            ("a volume declared preprocessed", nifti, "application/x-nifti", "preprocessed=true", nil, 422),
            ("restorations 0", npy, "application/x-npy", "restorations=0", nil, 422),
            ("restorations above max_restorations", npy, "application/x-npy", "restorations=33", nil, 422),
            ("steps not a number", npy, "application/x-npy", "steps=many", nil, 422),
            ("unknown method", npy, "application/x-npy", "method=diffusion", nil, 422),
            ("unknown parameter", npy, "application/x-npy", "restoration=2", nil, 422),
            ("repeated parameter", npy, "application/x-npy", "seed=1&seed=2", nil, 422),
            ("no acceptable format", npy, "application/x-npy", "", "text/html", 406),
            ("NIfTI output for a 2-D slice", npy, "application/x-npy", "preprocessed=true", "application/x-nifti", 406),
            ("too many slices", tooManySlices, "application/x-npy", "preprocessed=true", nil, 413),
            ("body over max_body_bytes", [UInt8](repeating: 0, count: 2_100_000), "application/x-npy", "", nil, 413),
        ]
        for (index, bad) in cases.enumerated() {
            let response = try Curl.detect(service, file: try write(bad.body, "bad-\(index)"), contentType: bad.type,
                                           query: bad.query, accept: bad.accept)
            XCTAssertEqual(response.status, bad.status, "\(bad.name): \(response.text)")
            XCTAssertEqual(response.headers["content-type"], "application/problem+json", bad.name)
            let problem = try response.json()
            XCTAssertEqual(problem["status"] as? Int, bad.status, bad.name)
            XCTAssertFalse((problem["detail"] as? String ?? "").isEmpty, bad.name)
            XCTAssertEqual(try Curl.run(["\(service.baseURL)/healthz"]).status, 200, "after \(bad.name)")
        }
        let good = try Curl.detect(service, file: try sliceNPY(), contentType: "application/x-npy", query: "preprocessed=true&steps=1")
        XCTAssertEqual(good.status, 200, good.text)
        // Patient data never reaches the logs: no body byte, only metadata.
        XCTAssertFalse(service.logLines.contains { $0.contains("hello, world") })
        XCTAssertEqual(service.terminate(), 0)
    }

    /// Issue 14's hostile bodies: each used to trap, allocate gigabytes, or answer late or wrongly. Each is
    /// now refused from its header with a 4xx naming the limit, no slice reaches the engine, the process
    /// stays up, and a normal request right after is served.
    func testHostileInputsAreRefusedFromTheirHeadersAndTheServerKeepsServing() throws {
        let service = try serve()
        func niftiHeader(shape: [Int], pixdim: [Float], voxOffset: Float) -> [UInt8] {
            var volume = Volume(zeros: shape)
            volume.voxels = volume.voxels.map { _ in 1 }
            var geometry = NIfTIGeometry(affine: .identity)
            (geometry.qformCode, geometry.sformCode, geometry.pixdim) = (0, 0, [1] + pixdim + [1, 1, 1, 1])
            var bytes = try! NIfTI.encode(volume, geometry: geometry, compressed: false)
            bytes.replaceSubrange(108..<112, with: withUnsafeBytes(of: voxOffset.bitPattern.littleEndian, Array.init))
            return bytes
        }
        func npy(_ dict: String, data: Int = 0) -> [UInt8] {
            let text = Array(dict.utf8) + [UInt8(ascii: "\n")]
            return [0x93] + Array("NUMPY".utf8) + [2, 0] + withUnsafeBytes(of: UInt32(text.count).littleEndian, Array.init) + text
                + [UInt8](repeating: 1, count: data)
        }
        let cases: [(name: String, body: [UInt8], type: String, accept: String?, status: Int, detail: String)] = [
            ("vox_offset -1e20", niftiHeader(shape: [4, 4, 2], pixdim: [1, 1, 1], voxOffset: -1e20), "application/x-nifti", nil,
             400, "vox_offset -1e+20"),
            ("1×1×2 voxels 10^6 mm apart", try Zlib.compress(niftiHeader(shape: [1, 1, 2], pixdim: [1, 1, 1e6], voxOffset: 352), format: .gzip),
             "application/x-nifti", nil, 413, "1000001 slices after preprocessing, more than the 512 a request may bring (request_max_slices: 512)"),
            ("a (1, 1, 1000000) .npy", npy("{'descr': '|u1', 'fortran_order': False, 'shape': (1, 1, 1000000), }", data: 1_000_000),
             "application/x-npy", nil, 413, "(request_max_slices: 512)"),
            ("a (40000, 1, 1) .npy asked for as NIfTI", npy("{'descr': '|u1', 'fortran_order': False, 'shape': (40000, 1, 1), }", data: 40000),
             "application/x-npy", "application/x-nifti", 406, "at most 32767 voxels per axis"),
            ("a 5 MiB .npy header", npy("{'descr': '" + String(repeating: "\u{1}x", count: 5 << 19) + "', 'fortran_order': False, 'shape': (1,), }"),
             "application/x-npy", nil, 422, "(5242880 characters)"),
            // 2^24 bytes of data (decode_max_bytes / 4 values): its 422 comes from the header, not after decoding and reordering them.
            ("a 26-dimensional .npy", npy("{'descr': '|u1', 'fortran_order': True, 'shape': (\((Array(repeating: "2", count: 24) + ["1", "1"]).joined(separator: ", "))), }",
                                          data: 1 << 24), "application/x-npy", nil, 422, "(26 dimensions)"),
        ]
        let processed = try service.metric("mimood_slices_processed_total")
        for (index, hostile) in cases.enumerated() {
            let response = try Curl.detect(service, file: try write(hostile.body, "hostile-\(index)"), contentType: hostile.type,
                                           accept: hostile.accept)
            XCTAssertEqual(response.status, hostile.status, "\(hostile.name): \(response.text.prefix(500))")
            XCTAssertEqual(response.headers["content-type"], "application/problem+json", hostile.name)
            XCTAssertLessThan(response.body.count, 2000, hostile.name)
            let problem = try response.json()
            XCTAssertEqual(problem["status"] as? Int, hostile.status, hostile.name)
            XCTAssertTrue((problem["detail"] as? String ?? "").contains(hostile.detail), "\(hostile.name): \(problem["detail"] ?? "")")
            XCTAssertTrue(service.process.isRunning, "after \(hostile.name)")
            XCTAssertEqual(try Curl.run(["\(service.baseURL)/healthz"]).status, 200, "after \(hostile.name)")
        }
        XCTAssertEqual(try service.metric("mimood_slices_processed_total"), processed, "a hostile input reached the engine")

        // The largest seed is echoed as itself, not as -1.
        let seeded = try Curl.detect(service, file: try sliceNPY(), contentType: "application/x-npy",
                                     query: "preprocessed=true&steps=1&seed=18446744073709551615")
        XCTAssertEqual(seeded.status, 200, seeded.text)
        XCTAssertTrue(seeded.text.contains("\"seed\":18446744073709551615"), String(seeded.text.prefix(400)))

        // A 20,000-character X-Request-ID is neither echoed nor logged, on any route.
        let hostileID = String(repeating: "A", count: 20_000)
        for path in ["/healthz", "/readyz", "/v1/model", "/metrics", "/openapi.yaml"] {
            let response = try Curl.run(["-H", "X-Request-ID: \(hostileID)", "\(service.baseURL)\(path)"])
            XCTAssertEqual(response.status, 200, path)
            XCTAssertEqual(response.headers["x-request-id"]?.count, 32, path)
        }
        XCTAssertEqual(try Curl.run(["-H", "X-Request-ID: trace-42", "\(service.baseURL)/healthz"]).headers["x-request-id"], "trace-42")
        _ = try Curl.run(["-H", "X-Request-ID: \(hostileID)", "\(service.baseURL)/nowhere"])
        XCTAssertFalse(service.logLines.contains { $0.contains(String(hostileID.prefix(200))) }, "the raw id reached the log")

        let good = try Curl.detect(service, file: try sliceNPY(), contentType: "application/x-npy", query: "preprocessed=true&steps=1")
        XCTAssertEqual(good.status, 200, good.text)
        XCTAssertEqual(service.terminate(), 0)
    }

    func testAnAPIKeyGuardsDetectionAndModelFactsButNotTheProbes() throws {
        let service = try serve([], environment: ["MIMOOD_API_KEY": "s3cret-key"])
        let slice = try sliceNPY()
        let none = try Curl.detect(service, file: slice, contentType: "application/x-npy", query: "preprocessed=true")
        XCTAssertEqual(none.status, 401)
        XCTAssertEqual(none.headers["www-authenticate"], "Bearer realm=\"mimood\"")
        let wrong = try Curl.detect(service, file: slice, contentType: "application/x-npy", query: "preprocessed=true",
                                    extra: ["-H", "Authorization: Bearer s3cret-kez"])
        XCTAssertEqual(wrong.status, 401)
        let right = try Curl.detect(service, file: slice, contentType: "application/x-npy", query: "preprocessed=true&steps=1",
                                    extra: ["-H", "Authorization: Bearer s3cret-key"])
        XCTAssertEqual(right.status, 200, right.text)
        XCTAssertEqual(try Curl.run(["\(service.baseURL)/v1/model"]).status, 401)
        XCTAssertEqual(try Curl.run(["-H", "Authorization: Bearer s3cret-key", "\(service.baseURL)/v1/model"]).status, 200)
        for probe in ["/healthz", "/readyz", "/metrics"] {
            XCTAssertEqual(try Curl.run(["\(service.baseURL)\(probe)"]).status, 200, probe)
        }
        XCTAssertEqual(service.terminate(), 0)
    }

    // MARK: Operations

    func testProbesMetricsModelFactsAndTheOpenAPIDocument() throws {
        let service = try serve()
        XCTAssertEqual(try Curl.run(["\(service.baseURL)/healthz"]).json()["status"] as? String, "alive")
        XCTAssertEqual(try Curl.run(["\(service.baseURL)/readyz"]).json()["status"] as? String, "ready")
        let model = try Curl.run(["\(service.baseURL)/v1/model"]).json()
        XCTAssertEqual(model["name"] as? String, "parity-fixture")
        XCTAssertEqual((model["sha256"] as? String)?.count, 64)
        XCTAssertEqual(model["methods"] as? [String], ["mim-ood", "ar", "mvtm-critic"])
        XCTAssertNotNil((model["components"] as? [String: Any])?["atd"])
        let openapi = try Curl.run(["\(service.baseURL)/openapi.yaml"])
        XCTAssertEqual(openapi.status, 200)
        XCTAssertTrue(openapi.text.hasPrefix("openapi: 3.1"), String(openapi.text.prefix(40)))
        _ = try Curl.run(["\(service.baseURL)/nowhere"])
        _ = try Curl.run(["-X", "BREW", "\(service.baseURL)/healthz"])  // any token is a method: 405, labelled "other"
        let metrics = try Curl.run(["\(service.baseURL)/metrics"])
        XCTAssertEqual(metrics.headers["content-type"], "text/plain; version=0.0.4; charset=utf-8")
        for line in ["mimood_http_requests_total{route=\"/healthz\",method=\"GET\",status=\"200\",protocol=\"http/1.1\"} 1",
                     "mimood_http_requests_total{route=\"other\",method=\"GET\",status=\"404\",protocol=\"http/1.1\"} 1",
                     "mimood_http_requests_total{route=\"/healthz\",method=\"other\",status=\"405\",protocol=\"http/1.1\"} 1", "mimood_ready 1.0",
                     "# TYPE mimood_batch_slices histogram", "mimood_queue_slices 0.0"] {
            XCTAssertTrue(metrics.text.contains(line), "no '\(line)' in\n\(metrics.text)")
        }
        // Every request is logged as one JSON line with its id (probes at debug level).
        _ = try Curl.run(["-H", "X-Request-ID: trace-42", "\(service.baseURL)/v1/model"])
        let logged = try service.waitForLog("\"request_id\":\"trace-42\"")
        XCTAssertTrue(logged.contains("\"status\":200") && logged.contains("\"route\":\"/v1/model\""), logged)
        XCTAssertFalse(service.logLines.contains { $0.contains("\"route\":\"/healthz\"") && $0.contains("\"status\":200") },
                       "probes that pass are logged at debug")
        XCTAssertNotNil(try JSONSerialization.jsonObject(with: Data(logged.utf8)) as? [String: Any])
        XCTAssertEqual(service.terminate(), 0)
    }

    func testConcurrentClientsShareOneBatchAndTheMetricsShowIt() throws {
        // A long batching window, so that requests sent together are sure to meet.
        let service = try serve(["--batch-max-wait-ms", "1500"])
        let file = try sliceNPY()
        let clients = 4
        let collected = LockedValue([Curl.Response?](repeating: nil, count: clients))
        let finished = DispatchSemaphore(value: 0)
        // A thread per client: all of them send at once, whatever the number of cores.
        for client in 0..<clients {
            Thread.detachNewThread {
                let response = try? Curl.detect(service, file: file, contentType: "application/x-npy",
                                                query: "preprocessed=true&steps=1&restorations=1&seed=\(client)")
                collected.withLock { $0[client] = response }
                finished.signal()
            }
        }
        for _ in 0..<clients { finished.wait() }
        let responses = collected.withLock { $0 }
        for response in responses {
            XCTAssertEqual(response?.status, 200, response?.text ?? "no response")
        }
        let shared = try responses.compactMap { try ($0?.json()["timings"] as? [String: Any])?["batch_requests"] as? [Int] }
        XCTAssertTrue(shared.contains { $0.contains { $0 > 1 } }, "no request shared a batch: \(shared)")
        // The batch-size histogram saw a batch of more than one request.
        let batches = try service.metric("mimood_batch_requests_count")
        let singles = try service.metric("mimood_batch_requests_bucket{le=\"1.0\"}")
        XCTAssertLessThan(singles, batches, "every batch held a single request")
        XCTAssertEqual(try service.metric("mimood_slices_processed_total"), Double(clients))
        XCTAssertEqual(service.terminate(), 0)
    }

    func testAFullQueueAnswers503WithRetryAfter() throws {
        // One slice per batch, at most 3 waiting: a 3-slice request keeps 2 waiting while its first runs,
        // so another one of 3 slices does not fit.
        let service = try serve(["--batch-max-slices", "1", "--queue-max-slices", "3", "--request-max-slices", "3",
                                 "--retry-after-seconds", "7"])
        let slice = try paritySlice()
        let volume = try write(NPY.encode(shape: [3, 160, 160], float32: slice + slice + slice), "three.npy")
        let firstStatus = LockedValue<Int?>(nil)
        let done = DispatchSemaphore(value: 0)
        DispatchQueue.global().async {
            let status = try? Curl.detect(service, file: volume, contentType: "application/x-npy",
                                          query: "preprocessed=true&restorations=8&steps=8").status
            firstStatus.withLock { $0 = status }
            done.signal()
        }
        let deadline = Date(timeIntervalSinceNow: 30)
        while try service.metric("mimood_queue_slices") < 2, Date() < deadline { Thread.sleep(forTimeInterval: 0.01) }
        let refused = try Curl.detect(service, file: volume, contentType: "application/x-npy", query: "preprocessed=true")
        XCTAssertEqual(refused.status, 503, refused.text)
        XCTAssertEqual(refused.headers["retry-after"], "7")
        XCTAssertEqual(refused.headers["content-type"], "application/problem+json")
        XCTAssertTrue(try refused.json()["detail"] as? String ?? "" != "")
        done.wait()
        XCTAssertEqual(firstStatus.withLock { $0 }, 200)
        XCTAssertGreaterThanOrEqual(try service.metric("mimood_requests_refused_total{reason=\"queue_full\"}"), 1)
        XCTAssertEqual(service.terminate(), 0)
    }

    func testSIGTERMDuringARequestLetsItComplete() throws {
        let service = try serve(["--batch-max-slices", "1"])
        let volume = try volumeNIfTI(thickness: 3)
        let status = LockedValue<Int?>(nil)
        let done = DispatchSemaphore(value: 0)
        DispatchQueue.global().async {
            let answered = try? Curl.detect(service, file: volume, contentType: "application/x-nifti", query: "restorations=8&steps=8").status
            status.withLock { $0 = answered }
            done.signal()
        }
        let deadline = Date(timeIntervalSinceNow: 30)
        while try service.metric("mimood_queue_slices") < 1, Date() < deadline { Thread.sleep(forTimeInterval: 0.01) }
        kill(service.process.processIdentifier, SIGTERM)
        try service.waitForLog("\"message\":\"draining\"")
        done.wait()
        XCTAssertEqual(status.withLock { $0 }, 200, "the request in progress when SIGTERM came was not answered")
        service.process.waitUntilExit()
        XCTAssertEqual(service.process.terminationStatus, 0)
        try service.waitForLog("\"message\":\"stopped\"")
    }

    func testARequestPastItsDeadlineIsAnswered504AndItsSlicesDropped() throws {
        let service = try serve(["--batch-max-slices", "1", "--request-timeout-seconds", "1"])
        let started = Date()
        let late = try Curl.detect(service, file: try volumeNIfTI(thickness: 6), contentType: "application/x-nifti",
                                   query: "restorations=8&steps=8")
        XCTAssertEqual(late.status, 504, late.text)
        XCTAssertEqual(late.headers["content-type"], "application/problem+json")
        XCTAssertLessThan(Date().timeIntervalSince(started), 5, "answered at the deadline, not when the work would have ended")
        XCTAssertEqual(try service.metric("mimood_queue_slices"), 0)
        XCTAssertEqual(try service.metric("mimood_requests_refused_total{reason=\"deadline\"}"), 1)
        XCTAssertEqual(service.terminate(), 0)
    }

    func testAClientThatGoesAwayHasItsWorkDropped() throws {
        let service = try serve(["--batch-max-slices", "1"])
        let volume = try volumeNIfTI(thickness: 6)
        // curl gives up after a second: its remaining slices must not run.
        _ = try? runProcess("/usr/bin/curl", ["--silent", "--max-time", "1", "--data-binary", "@\(volume)", "-H",
                                              "Content-Type: application/x-nifti", "\(service.baseURL)/detect?restorations=8&steps=8"])
        let deadline = Date(timeIntervalSinceNow: 30)
        while try service.metric("mimood_requests_refused_total{reason=\"client_gone\"}") < 1, Date() < deadline {
            Thread.sleep(forTimeInterval: 0.05)
        }
        XCTAssertEqual(try service.metric("mimood_requests_refused_total{reason=\"client_gone\"}"), 1)
        XCTAssertEqual(try service.metric("mimood_queue_slices"), 0)
        Thread.sleep(forTimeInterval: 1)
        XCTAssertLessThan(try service.metric("mimood_slices_processed_total"), 8, "the slices of a client gone were run")
        XCTAssertEqual(service.terminate(), 0)
    }

    /// What a fresh clone does: `mimood serve` with no arguments serves Models/default (the port from the
    /// environment, so that the test does not depend on 8080 being free).
    func testServeWithoutArgumentsServesTheDefaultModel() throws {
        let service = try ServiceProcess([], environment: ["MIMOOD_PORT": "0"])
        let model = try Curl.run(["\(service.baseURL)/v1/model"]).json()
        XCTAssertEqual(model["name"] as? String, "mimood-small-synthetic-v3")
        let detected = try Curl.detect(service, file: try volumeNIfTI(), contentType: "application/x-nifti",
                                       query: "restorations=1&steps=1")
        XCTAssertEqual(detected.status, 200, detected.text)
        XCTAssertEqual(service.terminate(), 0)
    }
}

/// A Python string literal of a path.
private func pythonString(_ text: String) -> String {
    "'" + text.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "'", with: "\\'") + "'"
}
