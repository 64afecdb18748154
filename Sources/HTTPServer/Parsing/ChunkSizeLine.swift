/// `chunk-size [ chunk-ext ]` (RFC 9112 §7.1), the line in front of each chunk.
enum ChunkSizeLine {
    /// At most 16 hex digits, so that the size always fits a UInt64.
    static let maxSizeDigits = 16

    /// Parses a chunk-size line without its CRLF and returns the size. Extensions are checked against
    /// their grammar and then ignored. Refused with 400: no digits, a sign or "0x", more than 16 digits,
    /// whitespace other than before a ";", and malformed extensions.
    static func parseSize(_ line: ArraySlice<UInt8>) throws(HTTPParseError) -> UInt64 {
        let digitsEnd = line.firstIndex { $0.hexValue == nil } ?? line.endIndex
        let digitCount = digitsEnd - line.startIndex
        guard digitCount > 0 else { throw .badRequest("a chunk size must start with a hex digit") }
        guard digitCount <= maxSizeDigits else { throw .badRequest("a chunk size has more than 16 hex digits") }
        let size = line[..<digitsEnd].reduce(UInt64(0)) { $0 << 4 | UInt64($1.hexValue!) }
        try validateExtensions(line[digitsEnd...])
        return size
    }

    /// `*( BWS ";" BWS name [ BWS "=" BWS ( token / quoted-string ) ] )`, with nothing after the last one.
    private static func validateExtensions(_ bytes: ArraySlice<UInt8>) throws(HTTPParseError) {
        let malformed = HTTPParseError.badRequest("malformed chunk extension")
        var index = bytes.startIndex
        func skipWhitespace() { while index < bytes.endIndex && bytes[index].isWhitespace { index += 1 } }
        func skipToken() -> Bool {
            let start = index
            while index < bytes.endIndex && bytes[index].isTokenChar { index += 1 }
            return index > start
        }
        while index < bytes.endIndex {
            skipWhitespace()
            guard index < bytes.endIndex, bytes[index] == ASCII.semicolon else { throw malformed }
            index += 1
            skipWhitespace()
            guard skipToken() else { throw malformed }
            let nameEnd = index
            skipWhitespace()
            guard index < bytes.endIndex, bytes[index] == ASCII.equals else {
                index = nameEnd  // whitespace here belongs to the next ";", or is trailing and refused
                continue
            }
            index += 1
            skipWhitespace()
            if index < bytes.endIndex && bytes[index] == ASCII.quote {
                guard skipQuotedString(bytes, from: &index) else { throw malformed }
            } else {
                guard skipToken() else { throw malformed }
            }
        }
    }

    /// Advances past `DQUOTE *( qdtext / quoted-pair ) DQUOTE` (RFC 9110 §5.6.4); false when it is malformed.
    private static func skipQuotedString(_ bytes: ArraySlice<UInt8>, from index: inout Int) -> Bool {
        index += 1
        while index < bytes.endIndex {
            let byte = bytes[index]
            switch byte {
            case ASCII.quote:
                index += 1
                return true
            case ASCII.backslash:
                guard index + 1 < bytes.endIndex, bytes[index + 1].isFieldValueChar else { return false }
                index += 2
            default:
                guard byte.isFieldValueChar else { return false }
                index += 1
            }
        }
        return false
    }
}
