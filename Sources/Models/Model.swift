import Tensor

/// Inner tensors a forward pass can expose beside its outputs (distillation reads them); none by
/// default, so the usual pass keeps nothing extra.
public struct Intermediates: OptionSet, Sendable {
  public let rawValue: Int
  public init(rawValue: Int) { self.rawValue = rawValue }

  /// BERT: the embedding output and every block's output; VGG: every stage's feature map.
  public static let hiddenStates = Intermediates(rawValue: 1)
  /// BERT: every block's pre-softmax attention scores (a VGG has none).
  public static let attentionScores = Intermediates(rawValue: 2)
}

/// A loaded graph of either family: what `summary`, `forward` and later the rewriter work on.
public enum Model: Sendable {
  case bert(BertModel)
  case vgg(VGGModel)

  /// A new model of `architecture`.
  public init(architecture: Architecture, initialization: Initialization, bertPrefix: String = "") {
    switch architecture {
    case .bert(let configuration, let classes):
      self = .bert(
        BertModel(
          configuration: configuration, prefix: bertPrefix, classes: classes,
          initialization: initialization))
    case .vgg(let configuration):
      self = .vgg(VGGModel(configuration: configuration, initialization: initialization))
    }
  }

  public var family: String {
    switch self {
    case .bert: return "bert"
    case .vgg: return "vgg"
    }
  }

  public var nodes: [GraphNode] {
    switch self {
    case .bert(let model): return model.nodes
    case .vgg(let model): return model.nodes
    }
  }

  public var namedParameters: [(String, Tensor)] {
    switch self {
    case .bert(let model): return model.namedParameters
    case .vgg(let model): return model.namedParameters
    }
  }

  /// The number of classes of the head, nil when the model has none.
  public var classCount: Int? {
    switch self {
    case .bert(let model): return model.classCount
    case .vgg(let model): return model.classCount
    }
  }

  /// The parameter count: buffers (running statistics, `position_ids`) are not parameters.
  public var parameterCount: Int {
    nodes.reduce(0) { $0 + $1.parameterCount }
  }
}

extension Model {
  /// The model with a fresh `classes`-way head in place of any it had (the reference library's
  /// init for a new classifier, from `seed`).
  public func replacingHead(classes: Int, seed: UInt64) -> Model {
    var random = RandomStream(seed: seed, stream: 1)
    switch self {
    case .bert(let model):
      return .bert(model.replacingClassifier(classes: classes, random: &random))
    case .vgg(var model):
      let last = model.classifier[model.classifier.count - 1]
      model.classifier[model.classifier.count - 1] = Linear(
        name: last.name,
        weight: Tensor.normal(
          shape: [classes, last.inFeatures], standardDeviation: 0.01, random: &random),
        bias: Tensor(zeros: [classes]))
      model.configuration.classCount = classes
      return .vgg(model)
    }
  }
}
