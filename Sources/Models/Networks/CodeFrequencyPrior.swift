import Kernels

/// The positional code-frequency prior (checkpoint component `prior`, Training/mimood_train/token_prior.py):
/// log p(code | grid position) counted on healthy training tokens. Not a network: a baseline token scorer
/// that any learned detector must beat.
public struct CodeFrequencyPrior: Sendable {
    public let config: TokenPriorConfig
    /// [nPositions · nCodes], row-major: position n's log-probabilities start at n · nCodes.
    let logProbabilities: [Float]

    /// The prior of a loaded `prior` component.
    public init(_ component: LoadedComponent) {
        guard case .tokenPrior(let config) = component.architecture else {
            preconditionFailure("component '\(component.component.rawValue)' is not a token prior")
        }
        var binding = ParameterBinding(component: component)
        self.config = config
        logProbabilities = TokenPriorWeights(config, &binding).logProb.scalars
    }

    /// −log p(code | position) of every token of row-major grids of `config.nPositions` tokens.
    public func scores(_ grids: [[Int]]) -> [[Float]] {
        grids.map { tokens in tokens.enumerated().map { position, code in -logProbabilities[position * config.nCodes + code] } }
    }
}

/// The prior's one tensor.
struct TokenPriorWeights<Parameter: Sendable>: Sendable {
    /// `log_prob` [n_positions, n_codes].
    let logProb: Parameter

    init(_ config: TokenPriorConfig, _ source: inout some ParameterSource<Parameter>) {
        logProb = source.parameter("log_prob", shape: [config.nPositions, config.nCodes])
    }
}
