// Core ML adapter for "coreml" artifacts (.mlpackage bundles). NOT COMPILED in edgeyard's CI.

#if canImport(CoreML)
import CoreML
import Foundation

public struct CoreMLEngineFactory: EngineFactory {
    public let format = "coreml"
    public var computeUnits: MLComputeUnits = .all

    public init() {}

    public func load(_ artifact: URL, inputs: [String], outputs: [String]) throws -> Engine {
        // an .mlpackage must be compiled on the device once (cache the result in a real app)
        let compiled = try MLModel.compileModel(at: artifact)
        let config = MLModelConfiguration()
        config.computeUnits = computeUnits
        return CoreMLEngine(try MLModel(contentsOf: compiled, configuration: config), inputs, outputs)
    }
}

final class CoreMLEngine: Engine {
    let model: MLModel, inputs: [String], outputs: [String]

    init(_ model: MLModel, _ inputs: [String], _ outputs: [String]) {
        self.model = model; self.inputs = inputs; self.outputs = outputs
    }

    func predict(_ x: [[Float]]) throws -> [[Float]] {
        var feed: [String: MLFeatureValue] = [:]
        for (i, name) in inputs.enumerated() {
            guard let c = model.modelDescription.inputDescriptionsByName[name]?.multiArrayConstraint
            else { throw ShimError.manifest("model has no multi-array input \(name)") }
            let a = try MLMultiArray(shape: c.shape, dataType: .float32)
            guard a.count == x[i].count else {
                throw ShimError.manifest("input \(name) holds \(a.count) values, got \(x[i].count)")
            }
            x[i].withUnsafeBytes { src in a.dataPointer.copyMemory(from: src.baseAddress!, byteCount: src.count) }
            feed[name] = MLFeatureValue(multiArray: a)
        }
        let out = try model.prediction(from: MLDictionaryFeatureProvider(dictionary: feed))
        return try outputs.map { name in
            guard let a = out.featureValue(for: name)?.multiArrayValue else {
                throw ShimError.manifest("model produced no multi-array output \(name)")
            }
            // outputs may be float16/float64: go through NSNumber (slow, but dtype-agnostic)
            return (0..<a.count).map { a[$0].floatValue }
        }
    }
}
#endif
