import Models
import Tensor

/// A lora rule's settings resolved for one node.
public struct WrapSettings: Sendable, Equatable {
  /// Raw values are the manifest's spellings.
  public enum Initialization: String, Sendable {
    case lora, svd
    /// The SVD start, with the frozen part holding only the residual (see `wrap`).
    case svdResidual = "svd_residual"
    /// The factors of the layer's output on calibration inputs (`WhitenedSVD`), the inputs'
    /// mean in C, and the frozen part the residual.
    case svdWhitened = "svd_whitened"
  }
  public enum BiasC: String, Sendable { case zeros, copy, none }

  public var rank: Int
  /// Scale `s = alpha / rank`.
  public var alpha: Double
  public var initialization: Initialization
  public var biasC: BiasC
  public var convForm: ConvAdapterForm
  /// The noise's statistics and std multiplier, when the rule asks for noise.
  public var noise: (statistics: NoiseModel.Statistics, scale: Double, spectralCap: Double?)?

  public init(
    rank: Int, alpha: Double? = nil, initialization: Initialization = .lora, biasC: BiasC = .none,
    convForm: ConvAdapterForm = .lowrank,
    noise: (statistics: NoiseModel.Statistics, scale: Double, spectralCap: Double?)? = nil
  ) {
    self.rank = rank
    self.alpha = alpha ?? Double(rank)
    self.initialization = initialization
    self.biasC = biasC
    self.convForm = convForm
    self.noise = noise
  }

  public static func == (lhs: WrapSettings, rhs: WrapSettings) -> Bool {
    lhs.rank == rhs.rank && lhs.alpha == rhs.alpha && lhs.initialization == rhs.initialization
      && lhs.biasC == rhs.biasC && lhs.convForm == rhs.convForm
      && lhs.noise?.statistics == rhs.noise?.statistics && lhs.noise?.scale == rhs.noise?.scale
      && lhs.noise?.spectralCap == rhs.noise?.spectralCap
  }

  public var scale: Float { Float(alpha / Double(rank)) }
}

/// Why a node cannot take the adapter a rule asks for; the message names the node and the fix.
public struct WrapError: Error, CustomStringConvertible, Sendable {
  public var message: String
  public var fix: String
  /// For a rank that is too large: the node's `min(fan_in, out)`.
  public var rankBound: Int?
  public var description: String { "\(message); \(fix)" }

  init(message: String, fix: String, rankBound: Int? = nil) {
    self.message = message
    self.fix = fix
    self.rankBound = rankBound
  }
}

/// Attaches adapters to Linear and Conv2d nodes.
extension WrapSettings.Initialization {
  /// The starts whose frozen part becomes the residual `W − s·B·A`, `b − C`.
  var freezesResidual: Bool { self == .svdResidual || self == .svdWhitened }
}

public enum Wrapper {
  /// Ranks must stay below `min(fan_in, out)`: at that rank the factors are no smaller than W.
  static func rankBound(fanIn: Int, out: Int) -> Int { min(fanIn, out) }

  static func checkRank(_ rank: Int, fanIn: Int, out: Int, node: String) throws(WrapError) {
    let bound = rankBound(fanIn: fanIn, out: out)
    guard rank >= 1, rank < bound else {
      throw WrapError(
        message: "rank \(rank) is not below min(in, out) = \(bound) for \(node)",
        fix: "use rank < \(bound)", rankBound: bound)
    }
  }

  /// Wraps a Linear: `A` (`r × in`) Kaiming-uniform and `B = 0`, or the rank-r SVD of `W`
  /// (`s·B·A = U_r Σ_r V_rᵀ`); `C` zeros, a copy of `b`, or none. With `initializes` false the
  /// adapter is zero (shapes and counts only, for validate and summary).
  public static func wrap(
    _ layer: inout Linear, settings: WrapSettings, initializes: Bool, random: inout RandomStream,
    whitening: Whitening? = nil
  ) throws(WrapError) {
    let (fanIn, out, r) = (layer.inFeatures, layer.outFeatures, settings.rank)
    try checkRank(r, fanIn: fanIn, out: out, node: layer.name)
    var down = Tensor(zeros: [r, fanIn])
    var up = Tensor(zeros: [out, r])
    if initializes {
      (down, up) = try initialFactors(
        weight: layer.weight.reshaped([out, fanIn]), rank: r, fanIn: fanIn, settings: settings,
        node: layer.name, random: &random, whitening: whitening)
    }
    var adapter = LowRankAdapter(
      node: layer.name, rank: r, down: down, up: up,
      bias: try biasC(settings, out: out, bias: layer.bias, node: layer.name), scale: settings.scale
    )
    if initializes, let whitening {
      adapter.bias = whitenedBias(
        adapter, weight: layer.weight.reshaped([out, fanIn]), bias: layer.bias,
        whitening: whitening)
    }
    if initializes && settings.initialization.freezesResidual {
      removeAdapter(adapter, fromWeight: &layer.weight, bias: &layer.bias)
    }
    if let noise = settings.noise {
      adapter.noise = NoiseModel(
        weight: layer.weight, statistics: noise.statistics, scale: Float(noise.scale),
        spectralCap: noise.spectralCap.map(Float.init))
    }
    layer.adapter = adapter
  }

  /// Wraps a Conv2d: lowrank (`A` a `k×k` conv `in → r` with the base geometry and groups, `B`
  /// a `1×1` conv `r → out`) or loralib (`A` `r·k × in·k`, `B` `out·k × r·k`, merged kernel).
  public static func wrap(
    _ layer: inout Conv2d, settings: WrapSettings, initializes: Bool, random: inout RandomStream,
    whitening: Whitening? = nil
  ) throws(WrapError) {
    let (kh, kw) = layer.kernelSize
    let perGroup = layer.inChannels / layer.groups
    let fanIn = perGroup * kh * kw
    let (out, r) = (layer.outChannels, settings.rank)
    // loralib does not factor W (its B·A is a full kernel), so the bound that makes a
    // factorisation smaller does not apply; the original research notes use r 32 on a 3-channel first conv.
    if settings.convForm == .lowrank {
      try checkRank(r, fanIn: fanIn, out: out, node: layer.name)
    }
    var down: Tensor
    var up: Tensor
    switch settings.convForm {
    case .lowrank:
      guard r % layer.groups == 0 else {
        throw WrapError(
          message: "rank \(r) is not a multiple of groups = \(layer.groups) for \(layer.name)",
          fix: "use a rank divisible by \(layer.groups) (the A convolution keeps the groups)")
      }
      // A's groups: each of the `groups` slices maps in/groups channels to r/groups.
      down = Tensor(zeros: [r, perGroup, kh, kw])
      up = Tensor(zeros: [out, r, 1, 1])
      // Whitening reads one group's patches: refused even without weights (validate).
      if initializes || settings.initialization == .svdWhitened {
        if settings.initialization != .lora && layer.groups > 1 {
          throw WrapError(
            message:
              "init \(settings.initialization.rawValue) is not defined for the grouped convolution \(layer.name)",
            fix: "use init: lora, or exclude it")
        }
      }
      if initializes {
        let (a, b) = try initialFactors(
          weight: layer.weight.reshaped([out, fanIn]), rank: r, fanIn: fanIn, settings: settings,
          node: layer.name, random: &random, whitening: whitening)
        down = a.reshaped([r, perGroup, kh, kw])
        up = b.reshaped([out, r, 1, 1])
      }
    case .loralib:
      guard layer.groups == 1, kh == kw else {
        throw WrapError(
          message:
            "conv_form loralib needs a square kernel and groups = 1; \(layer.name) has \(kh)×\(kw), groups \(layer.groups)",
          fix: "use conv_form: lowrank")
      }
      guard settings.initialization == .lora else {
        throw WrapError(
          message:
            "init \(settings.initialization.rawValue) is not defined for conv_form loralib (\(layer.name))",
          fix: "use init: lora, or conv_form: lowrank")
      }
      let k = kh
      down = Tensor(zeros: [r * k, layer.inChannels * k])
      up = Tensor(zeros: [out * k, r * k])
      if initializes {
        // loralib: kaiming_uniform_(A, a=√5) over its own fan-in (in·k); B = 0.
        down = Tensor.kaimingUniform(
          shape: down.shape, fanIn: layer.inChannels * k, random: &random)
      }
    }
    var adapter = LowRankAdapter(
      node: layer.name, rank: r, down: down, up: up,
      bias: try biasC(settings, out: out, bias: layer.bias, node: layer.name), scale: settings.scale
    )
    adapter.convForm = settings.convForm
    // loralib refused svd starts above, so the factors here are a lowrank A and B.
    if initializes, let whitening {
      adapter.bias = whitenedBias(
        adapter, weight: layer.weight.reshaped([out, fanIn]), bias: layer.bias,
        whitening: whitening)
    }
    if initializes && settings.initialization.freezesResidual {
      removeAdapter(adapter, fromWeight: &layer.weight, bias: &layer.bias)
    }
    if let noise = settings.noise {
      adapter.noise = NoiseModel(
        weight: layer.weight, statistics: noise.statistics, scale: Float(noise.scale),
        spectralCap: noise.spectralCap.map(Float.init))
    }
    layer.adapter = adapter
  }

  /// `W ← W − s·B·A` and `b ← b − C` (init svd_residual), with W viewed `out × fan_in` and A,
  /// B as `r × fan_in`, `out × r`: the layer's output at d = 1 stays the loaded model's, and
  /// what decays is only what the rank-r factors do not already hold.
  private static func removeAdapter(
    _ adapter: LowRankAdapter, fromWeight weight: inout Tensor, bias: inout Tensor?
  ) {
    let (out, r) = (weight.shape[0], adapter.rank)
    var product = adapter.up.reshaped([out, r]).matmul(
      adapter.down.reshaped([r, adapter.down.count / r]))
    product.scale(by: adapter.scale)
    weight.add(product.reshaped(weight.shape), scaledBy: -1)
    if let c = adapter.bias, var b = bias {
      b.add(c, scaledBy: -1)
      bias = b
    }
  }

  /// `C = b + (W − s·B·A)·μ` (init svd_whitened): at d = 0 the factors then reproduce the
  /// layer's mean output on the calibration inputs, not just its centred part. After
  /// `refit: sequential`, `C = b + W·μ_t − s·B·A·μ`: the loaded layer's mean output from the
  /// mean of the inputs the factors now read.
  private static func whitenedBias(
    _ adapter: LowRankAdapter, weight: Tensor, bias: Tensor?, whitening: Whitening
  ) -> Tensor? {
    guard let bias else { return adapter.bias }
    let (out, r) = (weight.shape[0], adapter.rank)
    var product = adapter.up.reshaped([out, r]).matmul(
      adapter.down.reshaped([r, adapter.down.count / r]))
    product.scale(by: adapter.scale)
    let fanIn = weight.shape[1]
    var c = bias.scalars
    let mean = whitening.mean
    if let target = whitening.targetMean {
      weight.withUnsafeBufferPointer { w in
        product.withUnsafeBufferPointer { p in
          for row in 0..<out {
            var total = 0.0
            for column in 0..<fanIn {
              total +=
                Double(w[row * fanIn + column]) * target[column]
                - Double(p[row * fanIn + column]) * mean[column]
            }
            c[row] = Float(Double(c[row]) + total)
          }
        }
      }
      return Tensor(shape: [out], scalars: c)
    }
    var residual = weight
    residual.add(product, scaledBy: -1)
    residual.withUnsafeBufferPointer { w in
      for row in 0..<out {
        var total = 0.0
        for column in 0..<fanIn { total += Double(w[row * fanIn + column]) * mean[column] }
        c[row] = Float(Double(c[row]) + total)
      }
    }
    return Tensor(shape: [out], scalars: c)
  }

  private static func biasC(_ settings: WrapSettings, out: Int, bias: Tensor?, node: String)
    throws(WrapError) -> Tensor?
  {
    if settings.initialization == .svdWhitened && bias == nil {
      throw WrapError(
        message:
          "init svd_whitened folds the inputs' mean into the bias, and \(node) has no bias",
        fix: "use init: svd_residual for it, or exclude it")
    }
    switch settings.biasC {
    case .none: return nil
    case .zeros: return Tensor(zeros: [out])
    case .copy:
      guard let bias else {
        throw WrapError(
          message: "bias_c copy needs a bias, and \(node) has none", fix: "use bias_c: zeros")
      }
      return bias
    }
  }

  /// `(A, B)` for a weight viewed as `out × fanIn`.
  private static func initialFactors(
    weight: Tensor, rank r: Int, fanIn: Int, settings: WrapSettings, node: String,
    random: inout RandomStream, whitening: Whitening?
  ) throws(WrapError) -> (Tensor, Tensor) {
    let out = weight.shape[0]
    switch settings.initialization {
    case .svdWhitened:
      guard let whitening, whitening.decomposition.inputs == fanIn,
        whitening.decomposition.outputs == out
      else {
        throw WrapError(
          message: "init svd_whitened has no calibration statistics for \(node)",
          fix: "run with training data (train.data), or use init: svd_residual")
      }
      guard r <= whitening.decomposition.singularValues.count else {
        throw WrapError(
          message:
            "rank \(r) exceeds \(node)'s \(whitening.decomposition.singularValues.count) whitened directions",
          fix: "lower the rank")
      }
      return whitening.decomposition.factors(rank: r, scale: settings.scale)
    case .lora:
      return (
        Tensor.kaimingUniform(shape: [r, fanIn], fanIn: fanIn, random: &random),
        Tensor(zeros: [out, r])
      )
    case .svd, .svdResidual:
      let factors: (u: Tensor, singularValues: [Float], vt: Tensor)
      do {
        factors = try weight.truncatedSVD(rank: r)
      } catch {
        throw WrapError(message: "the SVD of \(node) failed: \(error)", fix: "use init: lora")
      }
      // s·B·A = U Σ Vᵀ with A = √Σ Vᵀ and B = U √Σ / s.
      let roots = factors.singularValues.map { $0.squareRoot() }
      var down = factors.vt
      down.withUnsafeMutableBufferPointer { a in
        for row in 0..<r {
          for column in 0..<fanIn { a[row * fanIn + column] *= roots[row] }
        }
      }
      var up = factors.u
      let inverseScale = 1 / settings.scale
      up.withUnsafeMutableBufferPointer { b in
        for row in 0..<out {
          for column in 0..<r { b[row * r + column] *= roots[column] * inverseScale }
        }
      }
      return (down, up)
    }
  }
}
