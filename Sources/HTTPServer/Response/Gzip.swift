import ZlibCodec

/// gzip `Content-Encoding` (RFC 9110 §8.4.1.3).
enum Gzip {
    /// The body in the gzip format, or nil if zlib fails (the caller then sends it unencoded).
    static func compress(_ input: [UInt8]) -> [UInt8]? {
        try? Zlib.compress(input, format: .gzip)
    }
}

/// What a request's `Accept-Encoding` allows (RFC 9110 §12.5.3), for the two codings we produce.
struct AcceptedEncodings: Equatable {
    var gzip: Bool
    var identity: Bool

    /// No field means any coding is acceptable, but RFC 9110 leaves identity as the sensible choice then.
    init(fieldValue: String?) {
        guard let fieldValue else {
            gzip = false
            identity = true
            return
        }
        var qualities: [String: Double] = [:]
        for element in fieldValue.split(separator: ",") {
            let parts = element.split(separator: ";").map { $0.trimmingSpacesAndTabs() }
            guard let coding = parts.first?.lowercased(), !coding.isEmpty else { continue }
            var quality = 1.0
            for parameter in parts.dropFirst() where parameter.lowercased().hasPrefix("q=") {
                // An unreadable weight makes the element unusable rather than a silent "yes".
                quality = Double(parameter.dropFirst(2)) ?? 0
            }
            qualities[coding] = quality
        }
        let wildcard = qualities["*"]
        gzip = (qualities["gzip"] ?? qualities["x-gzip"] ?? wildcard ?? 0) > 0
        // identity is acceptable unless excluded explicitly or through "*;q=0" (§12.5.3).
        identity = (qualities["identity"] ?? wildcard ?? 1) > 0
    }
}

extension StringProtocol {
    /// Without the optional whitespace (OWS: spaces and tabs) around list elements and parameters.
    func trimmingSpacesAndTabs() -> String {
        let isContent = { (character: Character) in character != " " && character != "\t" }
        guard let first = firstIndex(where: isContent), let last = lastIndex(where: isContent) else { return "" }
        return String(self[first...last])
    }
}
