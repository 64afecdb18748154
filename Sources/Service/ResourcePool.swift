import Dispatch
import Threading

/// A capacity that requests share — the bytes of the memory budget, or the decode slots — handed out as
/// reservations that give their amount back when released (deinit), whatever becomes of the request.
/// Waiters are served in arrival order; a caller that does not wait may take what is free meanwhile.
public final class ResourcePool: Sendable {
    public let capacity: Int

    private struct Waiter {
        let id: Int
        let amount: Int
        let continuation: CheckedContinuation<Void, any Error>
    }

    private struct State {
        var held = 0
        var waiters: [Waiter] = []
        var nextWaiterID = 0
    }

    private let state = LockedValue(State())

    public init(capacity: Int) {
        self.capacity = capacity
    }

    /// The amount reserved now.
    public var held: Int { state.withLock { $0.held } }

    /// `amount` at once, or nil when it does not fit now.
    public func reserve(_ amount: Int) -> PoolReservation? {
        let granted = state.withLock { state in
            guard state.held + amount <= capacity else { return false }
            state.held += amount
            return true
        }
        return granted ? PoolReservation(pool: self, amount: amount) : nil
    }

    /// `amount` once it fits, waiting in line behind earlier waiters. Throws `QueueError.deadlineExceeded` at
    /// `deadline` and `.cancelled` when the calling task is cancelled. `amount` must not exceed `capacity`.
    public func reserve(_ amount: Int, waitingUntil deadline: ContinuousClock.Instant) async throws -> PoolReservation {
        precondition(amount <= capacity, "a reservation of \(amount) can never fit in \(capacity)")
        let id = state.withLock { state in
            defer { state.nextWaiterID += 1 }
            return state.nextWaiterID
        }
        let timer = DispatchSource.makeTimerSource(queue: .global())
        timer.schedule(deadline: .now() + max(.zero, deadline - .now).dispatchInterval)
        timer.setEventHandler { [weak self] in self?.abandonWait(id, .deadlineExceeded) }
        // Active before anything can release it: Dispatch traps when an inactive source is released.
        timer.activate()
        defer { timer.cancel() }
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { continuation in
                let admitted = state.withLock { state in
                    if Task.isCancelled { return false }
                    state.waiters.append(Waiter(id: id, amount: amount, continuation: continuation))
                    return true
                }
                if admitted { admitWaiters() } else { continuation.resume(throwing: QueueError.cancelled) }
            }
        } onCancel: {
            abandonWait(id, .cancelled)
        }
        return PoolReservation(pool: self, amount: amount)
    }

    /// Grants waiters from the front of the line for as long as they fit.
    private func admitWaiters() {
        let admitted = state.withLock { state in
            var admitted: [Waiter] = []
            while let first = state.waiters.first, state.held + first.amount <= capacity {
                state.held += first.amount
                admitted.append(state.waiters.removeFirst())
            }
            return admitted
        }
        for waiter in admitted { waiter.continuation.resume() }
    }

    private func abandonWait(_ id: Int, _ error: QueueError) {
        let waiter = state.withLock { state in
            state.waiters.firstIndex { $0.id == id }.map { state.waiters.remove(at: $0) }
        }
        waiter?.continuation.resume(throwing: error)
        // The line may move now that its head has left.
        admitWaiters()
    }

    fileprivate func grow(by amount: Int) -> Bool {
        state.withLock { state in
            guard state.held + amount <= capacity else { return false }
            state.held += amount
            return true
        }
    }

    fileprivate func release(_ amount: Int) {
        state.withLock { $0.held -= amount }
        admitWaiters()
    }
}

/// An amount held in a `ResourcePool` until this is released (deinit).
public final class PoolReservation: Sendable {
    private let pool: ResourcePool
    private let held: LockedValue<Int>

    fileprivate init(pool: ResourcePool, amount: Int) {
        self.pool = pool
        held = LockedValue(amount)
    }

    public var amount: Int { held.withLock { $0 } }

    /// Holds `total` in all from now on; false, holding what it held, when the pool lacks the difference.
    public func grow(to total: Int) -> Bool {
        held.withLock { held in
            guard total > held else { return true }
            guard pool.grow(by: total - held) else { return false }
            held = total
            return true
        }
    }

    /// Holds `total` in all from now on when that is less than it holds: the rest goes back to the pool at
    /// once, and the waiters it now fits are let in. Holding `total` or less already, it keeps what it holds.
    public func shrink(to total: Int) {
        precondition(total >= 0, "a reservation cannot hold \(total)")
        let returned = held.withLock { held in
            guard total < held else { return 0 }
            defer { held = total }
            return held - total
        }
        if returned > 0 { pool.release(returned) }
    }

    deinit { pool.release(held.withLock { $0 }) }
}
