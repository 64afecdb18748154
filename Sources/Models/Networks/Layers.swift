import Kernels

// The networks' parameters are declared once, layer by layer in state_dict order, by initialisers that
// take a `ParameterSource`. Walked with `ParameterDeclarations`, they list every expected tensor's name
// and shape (what the checkpoint verifier checks a file against); walked with `ParameterBinding`, they
// take the loaded tensors, so that a forward pass reads fields (`block.attn.qkv`), never names. Linear
// weights are turned there, once per load, into the form the matrix product reads.
//
//   struct Linear<Parameter> { let weight: LinearWeight?; let bias: Parameter }   // Parameter: [Int] (a shape) or Tensor

/// Hands out one parameter per state_dict name, in the order the layers ask for them.
protocol ParameterSource<Parameter> {
    associatedtype Parameter: Sendable
    mutating func parameter(_ name: String, shape: [Int]) -> Parameter
    /// A Linear layer's weight in the form the product reads (`LinearWeight`), for loaded tensors.
    func linearWeight(_ weight: Parameter) -> LinearWeight?
}

/// Records the name and shape of every parameter asked for: the tensors a checkpoint must hold.
struct ParameterDeclarations: ParameterSource {
    private(set) var declared: [(name: String, shape: [Int])] = []

    mutating func parameter(_ name: String, shape: [Int]) -> [Int] {
        declared.append((name, shape))
        return shape
    }

    func linearWeight(_ weight: [Int]) -> LinearWeight? { nil }
}

/// The tensors of a loaded component, which the loader has verified against the same declarations:
/// a name it lacks or a shape that differs is a bug in the declarations' walk, not in the file.
struct ParameterBinding: ParameterSource {
    let component: LoadedComponent

    func parameter(_ name: String, shape: [Int]) -> Tensor {
        let tensor = component[name]
        precondition(tensor.shape == shape, "\(component.component.rawValue): \(name) is \(tensor.shape), its layer declares \(shape)")
        return tensor
    }

    func linearWeight(_ weight: Tensor) -> LinearWeight? { LinearWeight(weight) }
}

extension Tensor {
    /// `add`, so that residual connections read as the model's `x + f(x)`.
    static func + (x: Tensor, residual: Tensor) -> Tensor { add(x, residual) }
}

// MARK: - Layers

/// nn.Linear: `weight` [out, in], kept only in the form the product reads (nil while declaring), and
/// `bias` [out].
struct Linear<Parameter: Sendable>: Sendable {
    let weight: LinearWeight?
    let bias: Parameter

    init(_ source: inout some ParameterSource<Parameter>, _ name: String, in inputs: Int, out outputs: Int) {
        weight = source.linearWeight(source.parameter(name + ".weight", shape: [outputs, inputs]))
        bias = source.parameter(name + ".bias", shape: [outputs])
    }
}

extension Linear<Tensor> {
    func callAsFunction(_ x: Tensor, activation: Activation = .identity, adding residual: Tensor? = nil) -> Tensor {
        guard let weight else { preconditionFailure("Linear: bound tensors always have their weight") }
        return linear(x, weight: weight, bias: bias, activation: activation, adding: residual)
    }
}

/// nn.Embedding: `weight` [count, dim], row t the vector of token t.
struct Embedding<Parameter: Sendable>: Sendable {
    let weight: Parameter

    init(_ source: inout some ParameterSource<Parameter>, _ name: String, count: Int, dim: Int) {
        weight = source.parameter(name + ".weight", shape: [count, dim])
    }
}

extension Embedding<Tensor> {
    /// The rows of `ids`: [ids.count, dim].
    func callAsFunction(_ ids: [Int]) -> Tensor { embedding(ids, weight: weight) }
}

/// nn.LayerNorm over the last dimension: `weight`, `bias` [dim].
struct LayerNorm<Parameter: Sendable>: Sendable {
    let weight: Parameter
    let bias: Parameter
    let eps: Float

    init(_ source: inout some ParameterSource<Parameter>, _ name: String, dim: Int, eps: Float) {
        weight = source.parameter(name + ".weight", shape: [dim])
        bias = source.parameter(name + ".bias", shape: [dim])
        self.eps = eps
    }
}

extension LayerNorm<Tensor> {
    func callAsFunction(_ x: Tensor) -> Tensor { layerNorm(x, weight: weight, bias: bias, eps: eps) }
}

/// The VQ-VAE's nn.GroupNorm: 32 groups, ε = 1e-6, `weight`, `bias` [channels].
struct GroupNorm<Parameter: Sendable>: Sendable {
    let weight: Parameter
    let bias: Parameter

    init(_ source: inout some ParameterSource<Parameter>, _ name: String, channels: Int) {
        weight = source.parameter(name + ".weight", shape: [channels])
        bias = source.parameter(name + ".bias", shape: [channels])
    }
}

extension GroupNorm<Tensor> {
    func callAsFunction(_ x: Tensor, activation: Activation = .identity) -> Tensor {
        groupNorm(x, groups: VQVAEConfig.groups, weight: weight, bias: bias, eps: 1e-6, activation: activation)
    }
}

/// nn.Conv2d: `weight` [out, in, k, k], `bias` [out]; by default stride 1 and the padding that keeps
/// the size (1 for 3×3 kernels, none for 1×1).
struct Conv2d<Parameter: Sendable>: Sendable {
    let weight: Parameter
    let bias: Parameter
    let stride: Int
    let padding: Padding

    init(_ source: inout some ParameterSource<Parameter>, _ name: String, in inputs: Int, out outputs: Int, kernel: Int,
         stride: Int = 1, padding: Padding? = nil) {
        weight = source.parameter(name + ".weight", shape: [outputs, inputs, kernel, kernel])
        bias = source.parameter(name + ".bias", shape: [outputs])
        self.stride = stride
        self.padding = padding ?? Padding(integerLiteral: kernel / 2)
    }
}

extension Conv2d<Tensor> {
    func callAsFunction(_ x: Tensor) -> Tensor { conv2d(x, weight: weight, bias: bias, stride: stride, padding: padding) }
}
