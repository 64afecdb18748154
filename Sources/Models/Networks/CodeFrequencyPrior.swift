/// The positional code-frequency prior (checkpoint component `prior`, Training/mimood_train/token_prior.py):
/// log p(code | grid position) counted on healthy training tokens. Not a network: a baseline token scorer
/// that any learned detector must beat.
public struct CodeFrequencyPrior: Sendable {
    public let config: TokenPriorConfig
    /// [nPositions · nCodes], row-major: position n's log-probabilities start at n · nCodes.
    let logProbabilities: [Float]

    public init(_ component: LoadedComponent) throws {
        guard case .tokenPrior(let config) = component.architecture else {
            throw InferenceError("component '\(component.component.rawValue)' is not a token prior")
        }
        self.config = config
        logProbabilities = component["log_prob"].scalars
    }

    /// −log p(code | position) of every token of row-major grids of `config.nPositions` tokens.
    public func scores(_ grids: [[Int]]) -> [[Float]] {
        grids.map { tokens in tokens.enumerated().map { position, code in -logProbabilities[position * config.nCodes + code] } }
    }
}
