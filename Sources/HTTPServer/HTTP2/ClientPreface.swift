/// The client connection preface of HTTP/2 (RFC 9113 §3.4), by which a cleartext client that knows the
/// server speaks HTTP/2 (h2c "prior knowledge") opens its connection; no HTTP/1.1 request starts like it.
enum ClientPreface {
    static let bytes = Array("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".utf8)

    enum Match {
        case http2
        case http1
        /// A prefix of the preface so far: more bytes decide.
        case undecided
    }

    /// What the first bytes of a cleartext connection say.
    static func match(_ received: [UInt8]) -> Match {
        let compared = min(received.count, bytes.count)
        guard received.prefix(compared).elementsEqual(bytes.prefix(compared)) else { return .http1 }
        return compared == bytes.count ? .http2 : .undecided
    }
}
