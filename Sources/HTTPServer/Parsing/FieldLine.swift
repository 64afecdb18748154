/// One `field-name ":" OWS field-value OWS` line (RFC 9112 §5), used for the header and the trailer section.
enum FieldLine {
    /// Parses a field line without its CRLF. Refused with 400: obs-fold, whitespace before the colon,
    /// a name that is not a token, any control character (NUL, bare CR, ...) in the value, and a value
    /// whose non-ASCII bytes are not UTF-8 (we hand values out as Strings and never guess a charset).
    static func parse(_ line: ArraySlice<UInt8>) throws(HTTPParseError) -> (name: String, value: String) {
        guard let first = line.first, !first.isWhitespace else {
            // A line starting with whitespace continues the previous one (obs-fold, RFC 9112 §5.2), or, as the
            // first line, may hide a field from other parsers (§2.2); either way it is refused.
            throw .badRequest("obsolete line folding is not accepted")
        }
        guard let colon = line.firstIndex(of: ASCII.colon) else { throw .badRequest("a field line has no colon") }
        let name = line[..<colon]
        guard !name.isEmpty else { throw .badRequest("a field name is empty") }
        guard !name.last!.isWhitespace else {
            // RFC 9112 §5.1: MUST be rejected, it is a known request smuggling vector.
            throw .badRequest("whitespace between a field name and its colon is not accepted")
        }
        guard name.allSatisfy(\.isTokenChar) else { throw .badRequest("invalid character in a field name") }
        let value = line[(colon + 1)...].trimmingWhitespace
        if let invalid = value.first(where: { !$0.isFieldValueChar }) {
            switch invalid {
            case 0: throw .badRequest("NUL in a field value")
            case ASCII.cr: throw .badRequest("bare CR in a field value")
            default: throw .badRequest("control character in a field value")
            }
        }
        guard let valueString = String(validating: value, as: UTF8.self) else {
            throw .badRequest("a field value is not valid UTF-8")
        }
        return (String(decoding: name, as: UTF8.self), valueString)
    }
}
