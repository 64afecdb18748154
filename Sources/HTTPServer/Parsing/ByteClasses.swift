// Character classes of RFC 9110/9112 and RFC 3986, on raw bytes: the parser never builds a String
// to decide what a byte is.

enum ASCII {
    static let tab: UInt8 = 0x09
    static let lf: UInt8 = 0x0A
    static let cr: UInt8 = 0x0D
    static let space: UInt8 = 0x20
    static let quote: UInt8 = 0x22
    static let percent: UInt8 = 0x25
    static let plus: UInt8 = 0x2B
    static let slash: UInt8 = 0x2F
    static let colon: UInt8 = 0x3A
    static let semicolon: UInt8 = 0x3B
    static let equals: UInt8 = 0x3D
    static let question: UInt8 = 0x3F
    static let at: UInt8 = 0x40
    static let openBracket: UInt8 = 0x5B
    static let backslash: UInt8 = 0x5C
    static let closeBracket: UInt8 = 0x5D
    static let ampersand: UInt8 = 0x26
    static let comma: UInt8 = 0x2C
}

extension UInt8 {
    var isDigit: Bool { self >= 0x30 && self <= 0x39 }

    var isAlpha: Bool { (self | 0x20) >= 0x61 && (self | 0x20) <= 0x7A }

    /// The value of a hexadecimal digit (either case), or nil.
    var hexValue: UInt8? {
        switch self {
        case 0x30...0x39: self - 0x30
        case 0x41...0x46: self - 0x41 + 10
        case 0x61...0x66: self - 0x61 + 10
        default: nil
        }
    }

    /// SP or HTAB: the OWS/BWS of RFC 9110 §5.6.3.
    var isWhitespace: Bool { self == ASCII.space || self == ASCII.tab }

    /// tchar of RFC 9110 §5.6.2: what methods, field names and transfer-coding names are made of.
    var isTokenChar: Bool {
        if isAlpha || isDigit { return true }
        switch self {
        case 0x21, 0x23, 0x24, 0x25, 0x26, 0x27, 0x2A, 0x2B, 0x2D, 0x2E, 0x5E, 0x5F, 0x60, 0x7C, 0x7E: return true
        default: return false
        }
    }

    /// field-vchar, SP or HTAB (RFC 9110 §5.5): everything a field value may hold. Excludes NUL, CR, LF
    /// and every other control.
    var isFieldValueChar: Bool { self == ASCII.tab || (self >= 0x20 && self != 0x7F) }

    /// unreserved / sub-delims of RFC 3986: the characters of a reg-name, and, with ":" and "@", of a path segment.
    var isUnreservedOrSubDelim: Bool {
        if isAlpha || isDigit { return true }
        switch self {
        case 0x2D, 0x2E, 0x5F, 0x7E: return true  // - . _ ~
        case 0x21, 0x24, 0x26, 0x27, 0x28, 0x29, 0x2A, 0x2B, 0x2C, 0x3B, 0x3D: return true  // ! $ & ' ( ) * + , ; =
        default: return false
        }
    }

    /// A byte of an RFC 3986 path or query; the percent-decoder checks that each "%" starts an escape.
    var isPathOrQueryChar: Bool {
        isUnreservedOrSubDelim || self == ASCII.colon || self == ASCII.at || self == ASCII.slash
            || self == ASCII.question || self == ASCII.percent
    }
}

extension ArraySlice<UInt8> {
    /// The slice without leading and trailing SP/HTAB.
    var trimmingWhitespace: ArraySlice<UInt8> {
        guard let first = firstIndex(where: { !$0.isWhitespace }) else { return self[endIndex...] }
        let last = lastIndex(where: { !$0.isWhitespace })!
        return self[first...last]
    }
}
