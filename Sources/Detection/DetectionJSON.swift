import Foundation
import JSON
import Models
import ZlibCodec

extension DetectionResult {
    /// The result as the JSON answer of `POST /detect` (openapi.yaml, `DetectionResult`): the model, the
    /// input, the parameters, the summary, and both arrays packed; the caller adds its own members
    /// (request id, timings) around them.
    public func json(modelName: String, modelSHA256: String, preprocessed: Bool) throws -> JSONObject {
        JSONObject([
            "model": .object(JSONObject(["name": .string(modelName), "sha256": .string(modelSHA256)])),
            "input": .object(JSONObject(["format": .string(input.format.rawValue), "slices": .integer(input.sliceCount)])),
            "parameters": .object(JSONObject([
                "method": .string(parameters.method.rawValue), "restorations": .integer(parameters.restorations),
                "steps": .integer(parameters.steps), "threshold": .float(parameters.methodThreshold),
                // The same kind of JSON value a parser reads back: Int while it fits.
                "seed": Int(exactly: parameters.seed).map { .integer($0) } ?? .unsignedInteger(parameters.seed),
                "combine": .string(parameters.combine.rawValue),
                "preprocessed": .bool(preprocessed),
            ])),
            "summary": .object(JSONObject([
                "max_score": .float(maximumScore), "mean_score": .float(meanScore),
                "anomalous_tokens": .integer(anomalousTokenCount), "tokens": .integer(sliceTokenScores.count),
                "steps_run": .integer(stepsRun),
            ])),
            "anomaly_map": try anomalyMap.packedJSON(),
            "token_heatmap": try tokenHeatmap.packedJSON(),
        ])
    }
}

extension FloatArray {
    /// The array as its shape, dtype and gzip-compressed, base64-encoded little-endian float32 bytes:
    /// `np.frombuffer(gzip.decompress(base64.b64decode(data)), "<f4").reshape(shape)`.
    public func packedJSON() throws -> JSONValue {
        let compressed = try Zlib.compress(littleEndianBytes, format: .gzip)
        return .object(JSONObject([
            "shape": .array(shape.map { .integer($0) }), "dtype": .string("float32"), "byte_order": .string("little"),
            "encoding": .string("gzip+base64"), "data": .string(Data(compressed).base64EncodedString()),
        ]))
    }
}

extension JSONValue {
    /// A Float as the shortest decimal that reads back as the same Float (not its Double expansion).
    public static func float(_ value: Float) -> JSONValue { .number(Double("\(value)") ?? .nan) }
}
