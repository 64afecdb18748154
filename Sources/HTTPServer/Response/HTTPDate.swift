import Threading
import Glibc

/// The `Date` field value (RFC 9110 §5.6.7 IMF-fixdate). Formatting per response would cost more than the
/// rest of a small response, and the value only changes once a second, so the last one is cached.
enum HTTPDate {
    private static let cache = LockedValue<(second: time_t, text: String)>((-1, ""))
    private static let weekdays = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"]
    private static let months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]

    static func now() -> String {
        let second = time(nil)
        return cache.withLock { cached in
            if cached.second != second { cached = (second, format(second)) }
            return cached.text
        }
    }

    /// e.g. "Sun, 06 Nov 1994 08:49:37 GMT".
    static func format(_ secondsSinceEpoch: time_t) -> String {
        var seconds = secondsSinceEpoch
        var parts = tm()
        gmtime_r(&seconds, &parts)
        func twoDigits(_ value: Int32) -> String { value < 10 ? "0\(value)" : "\(value)" }
        return "\(weekdays[Int(parts.tm_wday)]), \(twoDigits(parts.tm_mday)) \(months[Int(parts.tm_mon)]) "
            + "\(parts.tm_year + 1900) \(twoDigits(parts.tm_hour)):\(twoDigits(parts.tm_min)):"
            + "\(twoDigits(parts.tm_sec)) GMT"
    }
}
