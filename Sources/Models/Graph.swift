import Tensor

/// What a node is for, as manifests select it (docs/manifest.md's role list).
public enum NodeRole: String, Sendable, CaseIterable, Codable {
  case query, key, value
  case attentionOutput = "attention_output"
  case attentionNorm = "attention_norm"
  case ffnIntermediate = "ffn_intermediate"
  case ffnOutput = "ffn_output"
  case ffnNorm = "ffn_norm"
  case embeddings, pooler, classifier
  case conv
  case batchNorm = "batch_norm"
  /// A VGG classifier Linear other than the last.
  case fc
  /// The last Linear of a VGG classifier.
  case head
}

/// The layer type of a node, as summaries print it.
public enum NodeKind: String, Sendable, Codable {
  case linear = "Linear"
  case embedding = "Embedding"
  case layerNorm = "LayerNorm"
  case conv2d = "Conv2d"
  case batchNorm2d = "BatchNorm2d"
}

/// A named tensor of a node and its shape.
public struct TensorInfo: Sendable, Equatable, Codable {
  public var name: String
  public var shape: [Int]
  public var count: Int { Tensor.elementCount(of: shape) }
}

/// A node of a loaded graph: its checkpoint prefix, type, role, the transformer block or
/// feature index it sits in, its parameters and its buffers (running statistics: not parameters).
public struct GraphNode: Sendable, Equatable {
  public var name: String
  public var kind: NodeKind
  public var role: NodeRole
  public var block: Int?
  /// Base parameters first, then the adapter's (`lora_A`, `lora_B`, `lora_C`) when wrapped.
  public var parameters: [TensorInfo]
  public var buffers: [TensorInfo]
  /// What the wrapped layer costs before and after compression; nil when not wrapped.
  public var adapter: AdapterInfo?
  /// Multiply-adds per token (Linear) or output pixel (Conv2d) of the plain layer.
  public var multiplyAdds: Int = 0

  public init(
    name: String, kind: NodeKind, role: NodeRole, block: Int?, parameters: [TensorInfo],
    buffers: [TensorInfo], adapter: AdapterInfo? = nil, multiplyAdds: Int = 0
  ) {
    self.name = name
    self.kind = kind
    self.role = role
    self.block = block
    self.parameters = parameters
    self.buffers = buffers
    self.adapter = adapter
    self.multiplyAdds = multiplyAdds
  }

  public var parameterCount: Int { parameters.reduce(0) { $0 + $1.count } }
}

/// A wrapped layer's cost: the frozen base, the adapter, and the compressed layer that replaces
/// both at export.
public struct AdapterInfo: Sendable, Equatable {
  public var rank: Int
  public var form: String
  /// `W` and `b`.
  public var baseParameters: Int
  /// `A`, `B`, `C`.
  public var adapterParameters: Int
  /// The exported layer: lowrank keeps `A`, `s·B`, `C`; loralib merges back into a full kernel.
  public var compressedParameters: Int
  public var multiplyAddsBefore: Int
  public var multiplyAddsAfter: Int
}

/// A weight that a checkpoint lacks or holds in the wrong shape.
public struct WeightError: Error, CustomStringConvertible, Sendable {
  public var description: String
  public init(_ description: String) { self.description = description }
}

/// Looks up checkpoint tensors by name and checks their shapes.
public struct WeightSource: Sendable {
  public var tensors: [String: Tensor]

  public init(tensors: [String: Tensor]) {
    self.tensors = tensors
  }

  public func require(_ name: String, shape: [Int]) throws(WeightError) -> Tensor {
    guard let tensor = tensors[name] else {
      throw WeightError("missing tensor '\(name)' (expected shape \(shape))")
    }
    guard tensor.shape == shape else {
      throw WeightError(
        "tensor '\(name)' has shape \(tensor.shape) but config.json implies \(shape)")
    }
    return tensor
  }

  public func optional(_ name: String, shape: [Int]) throws(WeightError) -> Tensor? {
    guard tensors[name] != nil else { return nil }
    return try require(name, shape: shape)
  }
}

extension Linear {
  func node(role: NodeRole, block: Int?) -> GraphNode {
    if let adapter, adapter.isExported {
      return GraphNode(
        name: name, kind: .linear, role: role, block: block, parameters: adapter.tensorInfos,
        buffers: [], multiplyAdds: adapter.rank * (inFeatures + outFeatures))
    }
    var parameters = [TensorInfo(name: weightName, shape: weight.shape)]
    if let bias { parameters.append(TensorInfo(name: biasName, shape: bias.shape)) }
    let base = parameters.reduce(0) { $0 + $1.count }
    var info: AdapterInfo?
    if let adapter {
      parameters += adapter.tensorInfos
      let adapterCount = adapter.tensorInfos.reduce(0) { $0 + $1.count }
      info = AdapterInfo(
        rank: adapter.rank, form: "lora", baseParameters: base,
        adapterParameters: adapterCount, compressedParameters: adapterCount,
        multiplyAddsBefore: inFeatures * outFeatures,
        multiplyAddsAfter: adapter.rank * (inFeatures + outFeatures))
    }
    return GraphNode(
      name: name, kind: .linear, role: role, block: block, parameters: parameters, buffers: [],
      adapter: info, multiplyAdds: inFeatures * outFeatures)
  }

  init(loading name: String, inFeatures: Int, outFeatures: Int, from source: WeightSource)
    throws(WeightError)
  {
    let weight = try source.require(name + ".weight", shape: [outFeatures, inFeatures])
    let bias = try source.optional(name + ".bias", shape: [outFeatures])
    self.init(name: name, weight: weight, bias: bias)
  }
}

extension LayerNorm {
  func node(role: NodeRole, block: Int?) -> GraphNode {
    GraphNode(
      name: name, kind: .layerNorm, role: role, block: block,
      parameters: [
        TensorInfo(name: weightName, shape: weight.shape),
        TensorInfo(name: biasName, shape: bias.shape),
      ], buffers: [])
  }

  var namedParameters: [(String, Tensor)] { [(weightName, weight), (biasName, bias)] }

  init(loading name: String, features: Int, epsilon: Float, from source: WeightSource)
    throws(WeightError)
  {
    self.init(
      name: name, weight: try source.require(name + ".weight", shape: [features]),
      bias: try source.require(name + ".bias", shape: [features]), epsilon: epsilon)
  }
}

extension Embedding {
  func node(role: NodeRole) -> GraphNode {
    GraphNode(
      name: name, kind: .embedding, role: role, block: nil,
      parameters: [TensorInfo(name: weightName, shape: weight.shape)], buffers: [])
  }
}

/// How a new model's parameters are filled.
public enum Initialization: Sendable, Equatable {
  /// All zeros: the shapes and counts of a model without paying for random numbers.
  case zeros
  /// The reference library's init scheme from this seed.
  case seeded(UInt64)

  var seed: UInt64? {
    if case .seeded(let seed) = self { return seed }
    return nil
  }
}

/// A layer a LoRA adapter can wrap: a weight, an optional bias, an optional adapter.
protocol WrappableLayer {
  var weight: Tensor { get set }
  var bias: Tensor? { get set }
  var adapter: LowRankAdapter? { get set }
  var weightName: String { get }
  var biasName: String { get }
}

extension Linear: WrappableLayer {}
extension Conv2d: WrappableLayer {}

extension WrappableLayer {
  /// Base parameters and the adapter's; an exported layer has only its factors.
  var namedParameters: [(String, Tensor)] {
    if let adapter, adapter.isExported { return adapter.namedParameters }
    var result = [(weightName, weight)]
    if let bias { result.append((biasName, bias)) }
    if let adapter { result += adapter.namedParameters }
    return result
  }

  /// Every parameter of the node (base and adapter) by tensor name, writable.
  mutating func visitParameters(_ body: (String, inout Tensor) -> Void) {
    if adapter?.isExported == true {
      adapter?.visitParameters(body)
      return
    }
    body(weightName, &weight)
    if bias != nil { body(biasName, &bias!) }
    adapter?.visitParameters(body)
  }
}

extension Conv2d {
  func node(role: NodeRole, block: Int?) -> GraphNode {
    if let adapter, adapter.isExported {
      return GraphNode(
        name: name, kind: .conv2d, role: role, block: block, parameters: adapter.tensorInfos,
        buffers: [], multiplyAdds: adapter.down.count + outChannels * adapter.rank)
    }
    var parameters = [TensorInfo(name: weightName, shape: weight.shape)]
    if let bias { parameters.append(TensorInfo(name: biasName, shape: bias.shape)) }
    let base = parameters.reduce(0) { $0 + $1.count }
    let perPixel = weight.count  // out · in/groups · k · k multiply-adds per output pixel
    var info: AdapterInfo?
    if let adapter {
      parameters += adapter.tensorInfos
      let adapterCount = adapter.tensorInfos.reduce(0) { $0 + $1.count }
      let lowrank = adapter.convForm == .lowrank
      info = AdapterInfo(
        rank: adapter.rank, form: adapter.convForm.rawValue, baseParameters: base,
        adapterParameters: adapterCount,
        compressedParameters: lowrank
          ? adapterCount : weight.count + (adapter.bias?.count ?? bias?.count ?? 0),
        multiplyAddsBefore: perPixel,
        multiplyAddsAfter: lowrank ? adapter.down.count + outChannels * adapter.rank : perPixel)
    }
    return GraphNode(
      name: name, kind: .conv2d, role: role, block: block, parameters: parameters, buffers: [],
      adapter: info, multiplyAdds: perPixel)
  }

}
