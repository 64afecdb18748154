/// The `X-Request-ID` rule, for every answer and log line: a client's id is echoed and logged only when it
/// is 1–128 of `A–Z a–z 0–9 . _ : -`; any other is replaced by a fresh random one, so that no raw client
/// bytes reach a response header or a log.
public enum RequestID {
    public static let header = "X-Request-ID"

    public static func isSane(_ id: String) -> Bool {
        (1...128).contains(id.utf8.count) && id.utf8.allSatisfy(isAllowed)
    }

    /// 32 random hexadecimal digits.
    public static func fresh() -> String {
        var generator = SystemRandomNumberGenerator()
        return (0..<32).map { _ in String(generator.next(upperBound: 16 as UInt8), radix: 16) }.joined()
    }

    /// The id to answer `head` with: the client's when sane, a fresh one when not; nil when it sent none.
    public static func answering(_ head: RequestHead) -> String? {
        head.headers[header].map { isSane($0) ? $0 : fresh() }
    }

    /// The request's id comes back on every answer, also on those the HTTP layer gives itself.
    static func stamp(_ response: inout HTTPResponse, answering head: RequestHead?) {
        if response.headers[header] == nil, let id = head.flatMap(answering) { response.headers.add(header, id) }
    }

    private static func isAllowed(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "0")...UInt8(ascii: "9"),
             UInt8(ascii: "."), UInt8(ascii: "_"), UInt8(ascii: ":"), UInt8(ascii: "-"): true
        default: false
        }
    }
}
