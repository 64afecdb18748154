/// A JSON value (RFC 8259). Integers are kept apart from other numbers because the checkpoint
/// format distinguishes them (`shape: [4]` is valid, `shape: [4.0]` is not), exactly as Python's
/// `json` module does; objects keep their member order and never hold a name twice.
public enum JSONValue: Sendable, Equatable {
    case null
    case bool(Bool)
    /// A number written without fraction or exponent that fits in `Int`.
    case integer(Int)
    /// A whole number above `Int.max` that fits in `UInt64` (a seed may be one).
    case unsignedInteger(UInt64)
    /// Any other number.
    case number(Double)
    case string(String)
    case array([JSONValue])
    case object(JSONObject)

    /// The value as a Double when it is a number of either kind.
    public var numberValue: Double? {
        switch self {
        case .integer(let value): Double(value)
        case .unsignedInteger(let value): Double(value)
        case .number(let value): value
        default: nil
        }
    }

    public var objectValue: JSONObject? {
        if case .object(let object) = self { object } else { nil }
    }
}

/// A JSON object: member names in document order, each name once.
public struct JSONObject: Sendable, Equatable {
    public private(set) var keys: [String] = []
    private var members: [String: JSONValue] = [:]

    public init() {}

    /// An object of these members, in this order; a later member of the same name replaces an earlier one.
    public init(_ members: KeyValuePairs<String, JSONValue>) {
        for (key, value) in members { self[key] = value }
    }

    public subscript(key: String) -> JSONValue? {
        get { members[key] }
        set {
            if newValue != nil, members[key] == nil { keys.append(key) }
            if newValue == nil, members[key] != nil { keys.removeAll { $0 == key } }
            members[key] = newValue
        }
    }

    public var count: Int { keys.count }
}
