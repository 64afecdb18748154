import Detection
import HTTPServer
import Models

/// The representations POST /detect answers with, chosen by `Accept`.
public enum ResponseFormat: String, Sendable, CaseIterable {
    /// Arrays as gzip + base64 little-endian float32 with shape and dtype, summary, parameters, timings.
    case json = "application/json"
    /// `anomaly_map` and `token_heatmap`, for `np.load`.
    case npz = "application/x-npz"
    /// The anomaly map as `.nii.gz` with the input's affine (volume inputs only).
    case nifti = "application/x-nifti"
    /// The anomaly map over the most anomalous slice, for a person.
    case png = "image/png"
    /// DICOM input only: a Parametric Map and a Segmentation, as STOW-RS takes them.
    case dicom = "multipart/related; type=\"application/dicom\""
    /// DICOM input only: the same objects as files of a ZIP archive.
    case zip = "application/zip"

    /// Whether the format answers DICOM input only.
    var isDICOM: Bool { self == .dicom || self == .zip }

    /// The format an `Accept` field value prefers (RFC 9110 §12.5.1: the highest q, then the most specific
    /// range, then the order of our formats); JSON when the field is absent; nil when none is acceptable.
    static func negotiate(_ accept: String?) -> ResponseFormat? {
        guard let accept, !accept.trimmed(of: " \t").isEmpty else { return .json }
        var best: (format: ResponseFormat, quality: Double, specificity: Int)?
        for range in accept.split(separator: ",") {
            let parts = range.split(separator: ";").map { $0.trimmed(of: " \t").lowercased() }
            guard let mediaRange = parts.first, !mediaRange.isEmpty else { continue }
            var quality = 1.0
            var relatedType: String?
            for parameter in parts.dropFirst() {
                if parameter.hasPrefix("q=") { quality = Double(parameter.dropFirst(2)) ?? 0 }
                if parameter.hasPrefix("type=") { relatedType = parameter.dropFirst(5).trimmed(of: "\"") }
            }
            guard quality > 0 else { continue }
            let (type, subtype) = mediaRange.firstIndex(of: "/").map { (mediaRange[..<$0], mediaRange[mediaRange.index(after: $0)...]) }
                ?? (Substring(mediaRange), "")
            for format in allCases {
                let (ownType, ownSubtype) = format.mediaType
                // multipart/related names what its parts are: DICOM only, when it says.
                if format == .dicom, let relatedType, relatedType != "application/dicom" { continue }
                let specificity: Int
                if type == "*" && subtype == "*" { specificity = 0 }
                else if type == ownType && subtype == "*" { specificity = 1 }
                else if type == ownType && subtype == ownSubtype { specificity = 2 }
                else { continue }
                if let current = best, (current.quality, current.specificity) >= (quality, specificity) { continue }
                best = (format, quality, specificity)
            }
        }
        return best?.format
    }

    /// Type and subtype, without parameters.
    private var mediaType: (Substring, Substring) {
        let slash = rawValue.firstIndex(of: "/")!
        return (rawValue[..<slash], rawValue[rawValue.index(after: slash)...].prefix { $0 != ";" })
    }
}

/// What POST /detect was asked for, read from the request head before its body: the parameters
/// (the checkpoint's defaults with the query's overrides), whether the body is preprocessed, the
/// response format, the input format the Content-Type names (nil: told by the body's magic bytes), and
/// for DICOM the multipart boundary and `force`.
struct DetectRequest: Sendable {
    var parameters: InferenceParameters
    var preprocessed = false
    var responseFormat: ResponseFormat
    var declaredFormat: InputFormat?
    var dicom = DICOMRequest()

    /// Content-Type values accepted for a body, and the format each names.
    static let bodyTypes: [(mediaType: String, format: InputFormat?)] = [
        ("application/x-npy", .npy), ("image/png", .png), ("application/x-nifti", .nifti),
        ("application/gzip", .nifti), ("application/dicom", .dicom), ("application/zip", .dicom),
        ("multipart/related", .dicom), ("application/octet-stream", nil),
    ]

    static let queryParameters = ["restorations", "steps", "threshold", "seed", "method", "combine", "preprocessed", "force"]

    /// The request as the head asks for it, or the problem response that refuses it (415, 406, 422).
    static func read(_ head: RequestHead, defaults: InferenceParameters, configuration: ServiceConfiguration,
                     engine: Engine) -> Result<DetectRequest, ServiceProblem> {
        let declaredFormat: InputFormat?
        var multipartBoundary: String?
        if let contentType = head.headers["Content-Type"] {
            let mediaType = contentType.split(separator: ";").first.map { $0.trimmed(of: " \t").lowercased() } ?? ""
            guard let known = bodyTypes.first(where: { $0.mediaType == mediaType }) else {
                let hint = mediaType == "application/x-www-form-urlencoded"
                    ? " (curl sends that for --data-binary unless told otherwise: add -H 'Content-Type: application/x-nifti')" : ""
                return .failure(ServiceProblem(415, "Content-Type '\(mediaType)' is not accepted; send one of "
                                               + bodyTypes.map(\.mediaType).joined(separator: ", ") + hint))
            }
            declaredFormat = known.format
            if mediaType == "multipart/related" {
                switch boundary(ofMultipart: contentType) {
                case .success(let boundary): multipartBoundary = boundary
                case .failure(let problem): return .failure(problem)
                }
            }
        } else {
            declaredFormat = nil
        }
        guard let responseFormat = ResponseFormat.negotiate(head.headers["Accept"]) else {
            return .failure(ServiceProblem(406, "none of the accepted types is produced here; ask for one of "
                                           + ResponseFormat.allCases.map(\.rawValue).joined(separator: ", ")))
        }
        var request = DetectRequest(parameters: defaults, responseFormat: responseFormat, declaredFormat: declaredFormat,
                                    dicom: DICOMRequest(multipartBoundary: multipartBoundary))
        var seen = Set<String>()
        var (method, restorations, steps, threshold, seed, combine): (InferenceMethod?, Int?, Int?, Float?, UInt64?, CombineRule?)
        for (name, value) in head.query {
            guard queryParameters.contains(name) else {
                return .failure(ServiceProblem(422, "unknown query parameter '\(name)'; known: " + queryParameters.joined(separator: ", ")))
            }
            guard seen.insert(name).inserted else { return .failure(ServiceProblem(422, "query parameter '\(name)' is given twice")) }
            func refuse(_ expected: String) -> Result<DetectRequest, ServiceProblem> {
                .failure(ServiceProblem(422, "query parameter '\(name)' must be \(expected), got '\(value)'"))
            }
            switch name {
            case "restorations":
                guard let count = Int(value), (1...configuration.maxRestorations).contains(count) else {
                    return refuse("an integer in 1…\(configuration.maxRestorations)")
                }
                restorations = count
            case "steps":
                guard let count = Int(value), (1...configuration.maxSteps).contains(count) else {
                    return refuse("an integer in 1…\(configuration.maxSteps)")
                }
                steps = count
            case "threshold":
                guard let number = Float(value), number.isFinite else { return refuse("a finite number") }
                threshold = number
            case "seed":
                guard let number = UInt64(value) else { return refuse("an integer in 0…\(UInt64.max)") }
                seed = number
            case "method":
                guard let chosen = InferenceMethod(rawValue: value) else {
                    return refuse("one of " + InferenceMethod.allCases.map(\.rawValue).joined(separator: ", "))
                }
                method = chosen
            case "combine":
                guard let rule = CombineRule(rawValue: value) else { return refuse("mean or softmax-weighted") }
                combine = rule
            default:  // preprocessed, force
                guard let flag = ["true": true, "1": true, "false": false, "0": false][value.lowercased()] else {
                    return refuse("true or false")
                }
                if name == "force" { request.dicom.anyModality = flag } else { request.preprocessed = flag }
            }
        }
        request.parameters = defaults.overriding(method: method, restorations: restorations, steps: steps,
                                                 threshold: threshold, seed: seed, combine: combine)
        if let refusal = engine.refusal(of: request.parameters.method) { return .failure(ServiceProblem(422, refusal)) }
        if let problem = request.parameters.problem { return .failure(ServiceProblem(422, problem)) }
        // Every input has a slice: one alone over the cap is refused before its body is read.
        if request.parameters.sliceCost > configuration.requestMaxCost {
            return .failure(ServiceProblem(422, "one slice would cost \(request.parameters.sliceCost) (restorations × steps); a request "
                                           + "may cost at most \(configuration.requestMaxCost) (request_max_cost)"))
        }
        return .success(request)
    }
}

/// The boundary of a `multipart/related; type="application/dicom"; boundary=…` Content-Type (RFC 2387),
/// or the 415 that refuses it: the boundary is required, and the type, when given, must be application/dicom.
private func boundary(ofMultipart contentType: String) -> Result<String, ServiceProblem> {
    var parameters: [String: String] = [:]
    for parameter in contentType.split(separator: ";").dropFirst() {
        guard let equals = parameter.firstIndex(of: "=") else { continue }
        let name = parameter[..<equals].trimmed(of: " \t").lowercased()
        parameters[name] = parameter[parameter.index(after: equals)...].trimmed(of: " \t").trimmed(of: "\"")
    }
    if let type = parameters["type"], type.lowercased() != "application/dicom" {
        return .failure(ServiceProblem(415, "multipart/related bodies are read with type=\"application/dicom\" only"))
    }
    guard let boundary = parameters["boundary"], !boundary.isEmpty else {
        return .failure(ServiceProblem(415, "multipart/related needs a boundary parameter"))
    }
    return .success(boundary)
}

/// A refusal as status + detail, turned into an RFC 9457 response where it is answered.
struct ServiceProblem: Error, Sendable {
    let status: Int
    let detail: String
    var headers = HTTPHeaders()

    init(_ status: Int, _ detail: String, headers: HTTPHeaders = HTTPHeaders()) {
        (self.status, self.detail, self.headers) = (status, detail, headers)
    }

    var response: HTTPResponse { ProblemDetails.response(status: status, detail: detail, headers: headers) }
}
