import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// The `Date` response header (RFC 9110 §5.6.7, IMF-fixdate), as Hummingbird stamps every response it writes: the
/// fast path stamps its own the same way. Formatted once a second for the whole process (an HTTP/2 request has
/// a handler of its own, so a cache per handler would format for nearly every one).
enum HTTPDate {
    private static let cache = Mutex((second: -1, text: ""))
    private static let days = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"]
    private static let months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]

    /// The header value for now.
    static func now() -> String {
        let now = time(nil)
        return cache.withLock { cache in
            if cache.second != now { cache = (now, format(now)) }
            return cache.text
        }
    }

    static func format(_ seconds: Int) -> String {
        var time = seconds
        var parts = tm()
        gmtime_r(&time, &parts)
        func two(_ value: Int32) -> String { value < 10 ? "0\(value)" : "\(value)" }
        return "\(days[Int(parts.tm_wday)]), \(two(parts.tm_mday)) \(months[Int(parts.tm_mon)]) \(parts.tm_year + 1900) "
            + "\(two(parts.tm_hour)):\(two(parts.tm_min)):\(two(parts.tm_sec)) GMT"
    }
}
