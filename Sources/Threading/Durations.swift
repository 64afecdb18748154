import Dispatch

extension Duration {
    /// The duration in seconds, for logs, metrics and arithmetic with clocks that take seconds.
    public var inSeconds: Double { Double(components.seconds) + Double(components.attoseconds) / 1e18 }

    /// The duration for Dispatch timers and deadlines, rounded up to whole nanoseconds.
    public var dispatchInterval: DispatchTimeInterval {
        let (seconds, attoseconds) = components
        return .nanoseconds(Int(clamping: seconds * 1_000_000_000 + (attoseconds + 999_999_999) / 1_000_000_000))
    }
}
