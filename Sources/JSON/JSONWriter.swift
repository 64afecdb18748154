// The one JSON writer: checkpoint manifests in tests, problem+json bodies, the service's responses and
// its log lines all go through it, so every one of them is valid JSON (RFC 8259).

extension JSONValue {
    /// Compact JSON text of the value, members in their stored order. Doubles use Swift's shortest
    /// round-trip form, so parse(text) gives back an equal value. JSON has no NaN or infinity: a
    /// non-finite number is written as `null` (as JavaScript's JSON.stringify does), never as invalid text.
    public var jsonText: String {
        var out = ""
        write(to: &out)
        return out
    }

    private func write(to out: inout String) {
        switch self {
        case .null: out += "null"
        case .bool(let value): out += value ? "true" : "false"
        case .integer(let value): out += String(value)
        case .unsignedInteger(let value): out += String(value)
        case .number(let value) where !value.isFinite: out += "null"
        case .number(let value):
            // A whole Double keeps a fraction so that it reads back as a float, not an integer.
            let text = String(value)
            out += text.contains(where: { $0 == "." || $0 == "e" }) ? text : text + ".0"
        case .string(let value): out += jsonStringLiteral(value)
        case .array(let elements):
            out += "["
            for (index, element) in elements.enumerated() {
                if index > 0 { out += "," }
                element.write(to: &out)
            }
            out += "]"
        case .object(let object):
            out += "{"
            for (index, key) in object.keys.enumerated() {
                if index > 0 { out += "," }
                out += jsonStringLiteral(key)
                out += ":"
                object[key]?.write(to: &out)
            }
            out += "}"
        }
    }
}

/// A JSON string literal (RFC 8259 §7): quotes, backslashes and control characters escaped, everything
/// else as it is (JSON text is UTF-8).
public func jsonStringLiteral(_ text: String) -> String {
    var literal = "\""
    for scalar in text.unicodeScalars {
        switch scalar {
        case "\"": literal += "\\\""
        case "\\": literal += "\\\\"
        case "\n": literal += "\\n"
        case "\r": literal += "\\r"
        case "\t": literal += "\\t"
        case _ where scalar.value < 0x20:
            let hex = String(scalar.value, radix: 16)
            literal += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
        default: literal.unicodeScalars.append(scalar)
        }
    }
    return literal + "\""
}
