import Tensor

/// A VGG as docs/manifest.md's checkpoint format describes it (torchvision's layout): `cfg` lists
/// conv widths and `"M"` max-pools, each conv 3×3 padding 1 (+ BatchNorm) + ReLU.
public struct VGGConfiguration: Sendable, Equatable {
  /// One entry of `cfg`.
  public enum Stage: Sendable, Equatable {
    case convolution(channels: Int)
    case maxPool
  }

  public var stages: [Stage]
  public var batchNorm: Bool
  public var inChannels: Int
  public var imageSize: Int
  public var classCount: Int
  /// Hidden widths of the classifier (`[4096, 4096]` in torchvision); empty: one Linear.
  public var classifierHidden: [Int]
  /// The `AdaptiveAvgPool2d` output size; nil flattens the feature map as it is.
  public var averagePool: Int?
  public var dropout: Float

  public init(
    stages: [Stage], batchNorm: Bool, inChannels: Int, imageSize: Int, classCount: Int,
    classifierHidden: [Int], averagePool: Int?, dropout: Float
  ) {
    self.stages = stages
    self.batchNorm = batchNorm
    self.inChannels = inChannels
    self.imageSize = imageSize
    self.classCount = classCount
    self.classifierHidden = classifierHidden
    self.averagePool = averagePool
    self.dropout = dropout
  }

  /// The number of features entering the classifier.
  public var flattenedFeatures: Int {
    var channels = inChannels
    var size = imageSize
    for stage in stages {
      switch stage {
      case .convolution(let width): channels = width
      case .maxPool: size /= 2
      }
    }
    if let averagePool { return channels * averagePool * averagePool }
    return channels * size * size
  }

  /// `[C, H, W]` of every stage's feature map (see `VGGModel.stageEnds`).
  public var stageShapes: [[Int]] {
    var shapes: [[Int]] = []
    var channels = inChannels
    var size = imageSize
    for stage in stages {
      switch stage {
      case .convolution(let width): channels = width
      case .maxPool:
        size /= 2
        shapes.append([channels, size, size])
      }
    }
    if let last = stages.last, last != .maxPool { shapes.append([channels, size, size]) }
    return shapes
  }
}

/// One module of `features`, at its torchvision index.
public enum VGGFeature: Sendable {
  case convolution(Conv2d)
  case batchNorm(BatchNorm2d)
  case relu
  case maxPool(MaxPool2d)
}

/// What backward needs from a VGG forward pass.
public struct VGGTape: Sendable {
  var featureInputs: [Tensor]
  var convolutionCaches: [Int: Conv2d.Cache]
  var batchNormCaches: [Int: BatchNorm2d.Cache]
  var poolIndices: [Int: [Int32]]
  var averagePoolInput: Tensor?
  var featureOutputShape: [Int]
  var classifierCaches: [Linear.Cache]
  var hiddenOutputs: [Tensor]
  var dropoutMasks: [Tensor?]
  /// `∂loss/∂logits` (a distillation loss replaces it).
  public var logitsGradient: Tensor?
  /// An extra gradient for the feature map entering the classifier (`VGGOutputs.features`'s
  /// shape) that backward adds, e.g. a feature-distillation term; nil: none.
  public var featureGradient: Tensor?
  /// Extra gradients for `VGGOutputs.stages` (same count and shapes) that backward adds; nil:
  /// none.
  public var stagesGradient: [Tensor]?
}

/// The outputs of a VGG forward pass.
public struct VGGOutputs: Sendable {
  public var logits: Tensor
  public var loss: Float?
  /// The feature map the classifier reads (before the average pool), `batch × C × H × W`.
  public var features: Tensor? = nil
  /// With `.hiddenStates`: every stage's feature map, at `VGGModel.stageEnds`.
  public var stages: [Tensor]? = nil
}

/// torchvision's VGG: `features`, an optional adaptive average pool, flatten, and the
/// Linear–ReLU–Dropout classifier at indices 0, 3, 6, ….
public struct VGGModel: Sendable {
  public var configuration: VGGConfiguration
  public var features: [VGGFeature]
  public var classifier: [Linear]
  public var dropout: Dropout

  /// A new model: torchvision's init from a seed (conv Kaiming-normal, fan out, ReLU; Linear
  /// normal(0, 0.01); zero biases; unit batch norms), or zero weights (for shapes and counts).
  public init(configuration: VGGConfiguration, initialization: Initialization) {
    var random = RandomStream(seed: initialization.seed ?? 0)
    func normal(_ shape: [Int], _ standardDeviation: Float) -> Tensor {
      guard initialization.seed != nil else { return Tensor(zeros: shape) }
      return Tensor.normal(shape: shape, standardDeviation: standardDeviation, random: &random)
    }
    self.configuration = configuration
    features = []
    var channels = configuration.inChannels
    for stage in configuration.stages {
      switch stage {
      case .maxPool:
        features.append(.maxPool(MaxPool2d(kernel: (2, 2))))
      case .convolution(let width):
        let standardDeviation = (2 / Float(width * 9)).squareRoot()
        let weight = normal([width, channels, 3, 3], standardDeviation)
        features.append(
          .convolution(
            Conv2d(
              name: "features.\(features.count)", weight: weight, bias: Tensor(zeros: [width]),
              padding: Padding2D(1))))
        if configuration.batchNorm {
          features.append(
            .batchNorm(BatchNorm2d(name: "features.\(features.count)", channels: width)))
        }
        features.append(.relu)
        channels = width
      }
    }
    classifier = []
    var inFeatures = configuration.flattenedFeatures
    for (index, width) in (configuration.classifierHidden + [configuration.classCount]).enumerated()
    {
      classifier.append(
        Linear(
          name: "classifier.\(index * 3)",
          weight: normal([width, inFeatures], 0.01),
          bias: Tensor(zeros: [width])))
      inFeatures = width
    }
    dropout = Dropout(probability: configuration.dropout)
  }

  /// A model from checkpoint tensors (torchvision names), shapes checked against the config.
  public init(configuration: VGGConfiguration, loading source: WeightSource) throws(WeightError) {
    self.init(configuration: configuration, initialization: .zeros)
    for index in features.indices {
      switch features[index] {
      case .convolution(var conv):
        conv.weight = try source.require(conv.weightName, shape: conv.weight.shape)
        conv.bias = try source.optional(conv.biasName, shape: [conv.outChannels])
        features[index] = .convolution(conv)
      case .batchNorm(var norm):
        let shape = [norm.channels]
        norm.weight = try source.require(norm.weightName, shape: shape)
        norm.bias = try source.require(norm.biasName, shape: shape)
        norm.runningMean = try source.require(norm.name + ".running_mean", shape: shape)
        norm.runningVariance = try source.require(norm.name + ".running_var", shape: shape)
        features[index] = .batchNorm(norm)
      case .relu, .maxPool:
        break
      }
    }
    for index in classifier.indices {
      let linear = classifier[index]
      classifier[index] = try Linear(
        loading: linear.name, inFeatures: linear.inFeatures, outFeatures: linear.outFeatures,
        from: source)
    }
  }

  public var classCount: Int { classifier.last!.outFeatures }

  /// The `features` indices whose outputs end a stage: every max-pool, and the last module when
  /// the features do not end with one (so the map the classifier reads is always a stage).
  public var stageEnds: [Int] {
    var ends = features.indices.filter {
      if case .maxPool = features[$0] { true } else { false }
    }
    if let last = features.indices.last, ends.last != last { ends.append(last) }
    return ends
  }

  /// Every node in execution order, with its role. A conv's block is its ordinal among the
  /// convolutions (`blocks: 0-3` selects the first four); its batch norm shares it.
  public var nodes: [GraphNode] {
    var result: [GraphNode] = []
    var convolutions = -1
    for feature in features {
      switch feature {
      case .convolution(let conv):
        convolutions += 1
        result.append(conv.node(role: .conv, block: convolutions))
      case .batchNorm(let norm):
        let shape = [norm.channels]
        result.append(
          GraphNode(
            name: norm.name, kind: .batchNorm2d, role: .batchNorm, block: convolutions,
            parameters: [
              TensorInfo(name: norm.weightName, shape: shape),
              TensorInfo(name: norm.biasName, shape: shape),
            ],
            buffers: [
              TensorInfo(name: norm.name + ".running_mean", shape: shape),
              TensorInfo(name: norm.name + ".running_var", shape: shape),
              TensorInfo(name: norm.name + ".num_batches_tracked", shape: []),
            ]))
      case .relu, .maxPool:
        break
      }
    }
    for (index, linear) in classifier.enumerated() {
      result.append(linear.node(role: index == classifier.count - 1 ? .head : .fc, block: nil))
    }
    return result
  }

  /// Every parameter by checkpoint name, in node order.
  public var namedParameters: [(String, Tensor)] {
    var result: [(String, Tensor)] = []
    for feature in features {
      switch feature {
      case .convolution(let conv):
        result += conv.namedParameters
      case .batchNorm(let norm):
        result += [(norm.weightName, norm.weight), (norm.biasName, norm.bias)]
      case .relu, .maxPool:
        break
      }
    }
    for linear in classifier { result += linear.namedParameters }
    return result
  }

  /// Checks the images and labels against the configuration.
  public func validate(pixels: Tensor, labels: [Int32]?) throws(ModelInputError) {
    let c = configuration
    guard pixels.shape.count == 4, pixels.shape[1] == c.inChannels,
      pixels.shape[2] == c.imageSize, pixels.shape[3] == c.imageSize
    else {
      throw ModelInputError(
        "pixel_values has shape \(pixels.shape); this VGG takes N×\(c.inChannels)×\(c.imageSize)×\(c.imageSize)"
      )
    }
    if let labels {
      guard labels.count == pixels.shape[0] else {
        throw ModelInputError("labels has \(labels.count) entries for \(pixels.shape[0]) images")
      }
      if let bad = labels.first(where: { $0 < 0 || Int($0) >= classCount }) {
        throw ModelInputError("labels holds \(bad), outside 0..<\(classCount)")
      }
    }
  }

  /// Runs the model; training mode updates batch-norm running statistics and draws dropout
  /// from `random`. The tape for `backward` is kept when `recordsTape` (by default: in training).
  /// With `.hiddenStates` in `intermediates` the outputs carry every stage's feature map.
  public mutating func forward(
    pixels: Tensor, labels: [Int32]?, mode: ForwardMode, recordsTape: Bool? = nil,
    exposing intermediates: Intermediates = [], random: inout RandomStream
  ) throws(ModelInputError) -> (outputs: VGGOutputs, tape: VGGTape?) {
    try validate(pixels: pixels, labels: labels)
    let recording = recordsTape ?? (mode == .training)
    var tape = VGGTape(
      featureInputs: [], convolutionCaches: [:], batchNormCaches: [:], poolIndices: [:],
      averagePoolInput: nil,
      featureOutputShape: [], classifierCaches: [], hiddenOutputs: [], dropoutMasks: [],
      logitsGradient: nil)
    let stageEnds = intermediates.contains(.hiddenStates) ? Set(self.stageEnds) : []
    var stages: [Tensor] = []
    var x = pixels
    for index in features.indices {
      if recording { tape.featureInputs.append(x) }
      switch features[index] {
      case .convolution(let conv):
        let (output, cache) = conv.forward(x, mode: mode, random: &random)
        if recording { tape.convolutionCaches[index] = cache }
        x = output
      case .batchNorm(var norm):
        let (output, cache) = norm.forward(x, mode: mode)
        features[index] = .batchNorm(norm)
        if recording { tape.batchNormCaches[index] = cache }
        x = output
      case .relu:
        x = Activation.relu.forward(x)
      case .maxPool(let pool):
        let (output, indices) = pool.forward(x)
        if recording { tape.poolIndices[index] = indices }
        x = output
      }
      if stageEnds.contains(index) { stages.append(x) }
    }
    tape.featureOutputShape = x.shape
    let featureMap = x
    if let size = configuration.averagePool {
      if recording { tape.averagePoolInput = x }
      x = AdaptiveAvgPool2d(outputHeight: size, outputWidth: size).forward(x)
    }
    let batch = pixels.shape[0]
    x = x.reshaped([batch, x.count / batch])
    for (index, linear) in classifier.enumerated() {
      let (output, cache) = linear.forward(x, mode: mode, random: &random)
      if recording { tape.classifierCaches.append(cache) }
      x = output
      if index < classifier.count - 1 {
        x = Activation.relu.forward(x)
        if recording { tape.hiddenOutputs.append(x) }
        let (dropped, mask) = dropout.forward(x, mode: mode, random: &random)
        if recording { tape.dropoutMasks.append(mask) }
        x = dropped
      }
    }
    var outputs = VGGOutputs(logits: x, loss: nil, features: featureMap)
    if intermediates.contains(.hiddenStates) { outputs.stages = stages }
    if let labels {
      let (loss, gradient) = CrossEntropy.lossAndGradient(logits: x, labels: labels)
      outputs.loss = loss
      tape.logitsGradient = gradient
    }
    return (outputs, recording ? tape : nil)
  }

  /// The gradients of the mean cross-entropy for every wanted parameter.
  public func backward(tape: VGGTape, gradients: inout GradientSet) {
    guard var gradient = tape.logitsGradient else {
      preconditionFailure("backward needs a training forward pass with labels")
    }
    for index in classifier.indices.reversed() {
      if index < classifier.count - 1 {
        gradient = dropout.backward(mask: tape.dropoutMasks[index], outputGradient: gradient)
        let output = tape.hiddenOutputs[index]
        gradient = Activation.relu.backward(input: output, output: output, outputGradient: gradient)
      }
      gradient = classifier[index].backward(
        cache: tape.classifierCaches[index], outputGradient: gradient, gradients: &gradients)!
    }
    if let input = tape.averagePoolInput, let size = configuration.averagePool {
      gradient = AdaptiveAvgPool2d(outputHeight: size, outputWidth: size).backward(
        inputShape: input.shape,
        outputGradient: gradient.reshaped([input.shape[0], input.shape[1], size, size]))
    }
    gradient = gradient.reshaped(tape.featureOutputShape)
    if let extra = tape.featureGradient { gradient.add(extra.reshaped(tape.featureOutputShape)) }
    // Backward stops below the lowest feature layer that has a trained tensor.
    let lowest =
      features.indices.first { index in
        switch features[index] {
        case .convolution(let conv): return gradients.wantsAny(withPrefix: conv.name + ".")
        case .batchNorm(let norm): return gradients.wantsAny(withPrefix: norm.name + ".")
        case .relu, .maxPool: return false
        }
      } ?? features.count
    let stageEnds = tape.stagesGradient == nil ? [] : self.stageEnds
    for index in features.indices.reversed() {
      if index < lowest { return }
      if let extras = tape.stagesGradient, let stage = stageEnds.firstIndex(of: index) {
        gradient.add(extras[stage].reshaped(gradient.shape))
      }
      let input = tape.featureInputs[index]
      switch features[index] {
      case .convolution(let conv):
        guard
          let inputGradient = conv.backward(
            cache: tape.convolutionCaches[index]!, outputGradient: gradient,
            gradients: &gradients, needsInputGradient: index > lowest)
        else { return }
        gradient = inputGradient
      case .batchNorm(let norm):
        gradient = norm.backward(
          cache: tape.batchNormCaches[index]!, outputGradient: gradient, gradients: &gradients)
      case .relu:
        gradient = Activation.relu.backward(input: input, output: input, outputGradient: gradient)
      case .maxPool(let pool):
        gradient = pool.backward(
          argmax: tape.poolIndices[index]!, inputShape: input.shape, outputGradient: gradient)
      }
    }
  }
}
