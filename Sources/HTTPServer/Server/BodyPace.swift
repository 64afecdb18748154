/// When a request body is late: the pure rule behind `Connection`'s body timer. A body must keep coming
/// (no wait longer than `timeout`), be whole within `deadline` of its head, and — after a first `timeout`
/// of grace — average at least `minimumBytesPerSecond`, so a sender that trickles a byte now and then can
/// hold its connection for one timeout, not for as long as it likes.
struct BodyPace: Sendable, Equatable {
    var timeout: Duration
    var deadline: Duration
    /// 0 turns the rate rule off.
    var minimumBytesPerSecond: Int

    enum Lateness: Sendable, Equatable {
        case stalled, tooSlow, pastDeadline
    }

    /// How long from now the body may take to make its next progress, `elapsed` after its head with
    /// `received` bytes in, and which rule sets that time.
    func timeLeft(elapsed: Duration, received: Int) -> (Duration, Lateness) {
        var limits: [(Duration, Lateness)] = [(timeout, .stalled), (deadline - elapsed, .pastDeadline)]
        if minimumBytesPerSecond > 0 {
            // The bytes in suffice until `timeout + received / rate` after the head.
            let enoughUntil = timeout + .seconds(Double(received) / Double(minimumBytesPerSecond))
            limits.append((enoughUntil - elapsed, .tooSlow))
        }
        let (left, reason) = limits.min { $0.0 < $1.0 }!
        return (max(left, .zero), reason)
    }

    func detail(_ lateness: Lateness) -> String {
        switch lateness {
        case .stalled: "the request body did not arrive in time (no data for \(timeout))"
        case .pastDeadline: "the request body did not arrive in time (the whole body is due within \(deadline))"
        case .tooSlow: "the request body arrived too slowly (under \(minimumBytesPerSecond) bytes/s)"
        }
    }
}
