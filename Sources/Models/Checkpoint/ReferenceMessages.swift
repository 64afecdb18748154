// Messages worded as the reference (Python) reader words them, so that a refusal reads the same from both.
import JSON

/// A name in single quotes, as Python's `repr` shows the plain names of a manifest ('vqvae'); unlike
/// `repr`, nothing is escaped, which is enough for messages.
func singleQuoted(_ string: String) -> String { "'\(string)'" }

extension JSONValue {
    /// The value as the reference reader's messages print it (Python's repr of the parsed value),
    /// so that an error about `shape` or `dtype` reads the same from both readers.
    var pythonDescription: String {
        switch self {
        case .null: "None"
        case .bool(let value): value ? "True" : "False"
        case .integer(let value): String(value)
        case .unsignedInteger(let value): String(value)
        case .number(let value): String(value)
        case .string(let value): singleQuoted(value)
        case .array(let elements): "[" + elements.map(\.pythonDescription).joined(separator: ", ") + "]"
        case .object(let object):
            "{" + object.keys.map { singleQuoted($0) + ": " + (object[$0]?.pythonDescription ?? "") }
                .joined(separator: ", ") + "}"
        }
    }
}
