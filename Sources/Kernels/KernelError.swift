/// The error every kernel throws for arguments it cannot work on: shapes that do not fit together,
/// indices out of range, parameters outside their domain. The message names the kernel and the problem.
public struct KernelError: Error, Equatable, CustomStringConvertible {
    public let description: String

    public init(_ description: String) {
        self.description = description
    }
}

/// Throws `KernelError(message)` unless `condition` holds.
@inline(__always)
func require(_ condition: Bool, _ message: @autoclosure () -> String) throws {
    if !condition { throw KernelError(message()) }
}
