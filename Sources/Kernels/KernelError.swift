/// What `sampleCategorical` throws for logits it cannot draw from (empty, NaN, no finite maximum): those
/// come from the weights' arithmetic, not from the caller, so they are reported rather than trapped on.
/// Every other kernel `precondition`s its arguments: shapes that do not fit together are a bug in the
/// caller, whose weights the checkpoint loader verified and whose inputs the engine validated.
public struct KernelError: Error, Equatable, CustomStringConvertible {
    public let description: String

    public init(_ description: String) {
        self.description = description
    }
}
