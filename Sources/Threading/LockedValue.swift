import Glibc

/// A value behind a pthread mutex. `Synchronization.Mutex` would be the first choice, but on Linux Thread
/// Sanitizer does not see its synchronization (the standard library is not instrumented) and reports false
/// races, while `pthread_mutex_lock` is intercepted, so our TSan runs stay meaningful.
public final class LockedValue<Value: Sendable>: @unchecked Sendable {
    private var value: Value
    private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)

    public init(_ value: Value) {
        self.value = value
        pthread_mutex_init(mutex, nil)
    }

    deinit {
        pthread_mutex_destroy(mutex)
        mutex.deallocate()
    }

    public func withLock<Result>(_ body: (inout Value) throws -> Result) rethrows -> Result {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return try body(&value)
    }
}
