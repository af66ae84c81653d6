import Tensor

/// The moments a layer's noise matches: the mean and variance of its frozen weight, over the
/// whole matrix (`global`) or per output unit (`perOutput`, one pair per row of `out × fan_in`).
public struct NoiseModel: Sendable, Equatable {
  public enum Statistics: String, Sendable {
    case global
    case perOutput = "per_output"
  }

  public var statistics: Statistics
  /// One entry (global) or one per output unit.
  public var mean: [Float]
  public var variance: [Float]
  /// Multiplies the noise's standard deviation (1: exact moment matching).
  public var scale: Float
  /// When set, the noise's spectral norm is kept at most this times `‖d·W‖₂`.
  public var spectralCap: Float?
  /// `‖W‖₂`, the largest singular value of `W` viewed `out × fan_in` (0 without a cap).
  public var weightSpectralNorm: Float = 0

  /// The moments of `weight` viewed as `out × (count / out)`.
  public init(weight: Tensor, statistics: Statistics, scale: Float, spectralCap: Float? = nil) {
    self.statistics = statistics
    self.scale = scale
    self.spectralCap = spectralCap
    let rows = weight.shape[0]
    let groups = statistics == .global ? 1 : rows
    let perGroup = weight.count / groups
    var means = [Float](repeating: 0, count: groups)
    var variances = [Float](repeating: 0, count: groups)
    weight.withUnsafeBufferPointer { w in
      for group in 0..<groups {
        let values = w.baseAddress! + group * perGroup
        var sum = 0.0
        for i in 0..<perGroup { sum += Double(values[i]) }
        let mean = sum / Double(perGroup)
        var squares = 0.0
        for i in 0..<perGroup {
          let centred = Double(values[i]) - mean
          squares += centred * centred
        }
        means[group] = Float(mean)
        variances[group] = Float(squares / Double(perGroup))
      }
    }
    mean = means
    variance = variances
    if spectralCap != nil {
      weightSpectralNorm = Self.spectralNorm(weight.reshaped([rows, weight.count / rows]))
    }
  }

  /// The largest singular value of an `m × n` matrix, by power iteration on `WᵀW` (deterministic
  /// start; 60 rounds leave well under 1% error for the gaps of trained weights).
  static func spectralNorm(_ matrix: Tensor) -> Float {
    let columns = matrix.shape[1]
    var vector = Tensor(shape: [columns, 1], repeating: 1 / Float(columns).squareRoot())
    var norm: Float = 0
    for _ in 0..<60 {
      let image = matrix.matmul(vector)
      norm = Float(image.dot(image).squareRoot())
      var back = matrix.matmul(image, transposeSelf: true)
      let length = Float(back.dot(back).squareRoot())
      guard length > 0 else { return 0 }
      back.scale(by: 1 / length)
      vector = back
    }
    return norm
  }

  /// The factor the noise's standard deviations take at decay `d` so that its spectral norm,
  /// estimated as `rms(σ_row)·(√out + √fan_in)` (Bai–Yin, for Gaussian entries), stays at most
  /// `spectralCap·d·‖W‖₂`; 1 without a cap or when the noise is below it already.
  public func capFactor(decay d: Float, rows: Int, perRow: Int) -> Float {
    guard let spectralCap else { return 1 }
    var squares: Float = 0
    for group in 0..<variance.count { squares += variance[group] }
    let rms = (max(0, 1 - d * d) * squares / Float(variance.count)).squareRoot() * scale
    let estimate = rms * (Float(rows).squareRoot() + Float(perRow).squareRoot())
    guard estimate > 0 else { return 1 }
    return min(1, spectralCap * d * weightSpectralNorm / estimate)
  }

  /// `d·W + N` with `N ~ Normal((1 − d)·m, (1 − d²)·σ²·scale²)` drawn from `random`: the
  /// effective weight of the training forward pass, built in one sweep.
  public func effectiveWeight(weight: Tensor, decay d: Float, random: inout RandomStream) -> Tensor
  {
    var result = Tensor(uninitialized: weight.shape)
    let rows = weight.shape[0]
    let perRow = weight.count / rows
    let cap = capFactor(decay: d, rows: rows, perRow: perRow)
    result.withUnsafeMutableBufferPointer { out in
      random.fillNormal(out, mean: 0, standardDeviation: 1)
      weight.withUnsafeBufferPointer { w in
        Parallel.forEachChunk(rows, grain: max(1, 16_384 / max(1, perRow))) { chunk in
          for row in chunk {
            let group = statistics == .global ? 0 : row
            let shift = (1 - d) * mean[group]
            let spread = (max(0, 1 - d * d) * variance[group]).squareRoot() * scale * cap
            let o = out.baseAddress! + row * perRow
            let source = w.baseAddress! + row * perRow
            for i in 0..<perRow { o[i] = d * source[i] + shift + spread * o[i] }
          }
        }
      }
    }
    return result
  }
}

/// A layer's frozen path for one forward pass: `d·W (+ N)` and `d·b`, whatever the layer
/// (Linear and Conv2d ask the adapter for it, so the decay and the noise live in one place).
public enum FrozenWeight: Sendable {
  /// `d = 0` and no noise: the frozen path contributes nothing and is skipped.
  case skipped
  /// `d·W`, as `W` and the factor `d` (1 for a plain layer): Linear folds `d` into its GEMM.
  case scaled(Float)
  /// `d·W + N`, the noise drawn this step (backward multiplies by the same sample).
  case sampled(Tensor)

  /// The frozen path of `weight` under `adapter` (nil: a plain layer) this pass: a training
  /// pass with active noise draws `N` from `random`.
  public init(
    _ weight: Tensor, under adapter: LowRankAdapter?, mode: ForwardMode,
    random: inout RandomStream
  ) {
    guard let adapter else {
      self = .scaled(1)
      return
    }
    if adapter.skipsFrozenPath {
      self = .skipped
    } else if adapter.drawsNoise(mode), let noise = adapter.noise {
      self = .sampled(noise.effectiveWeight(weight: weight, decay: adapter.decay, random: &random))
    } else {
      self = .scaled(adapter.decay)
    }
  }

  public var runs: Bool {
    if case .skipped = self { return false }
    return true
  }

  /// The frozen path's weight as one tensor (`d·W` materialised when `d ≠ 1`), nil when
  /// skipped: what a convolution convolves with.
  public func tensor(of weight: Tensor) -> Tensor? {
    switch self {
    case .skipped: return nil
    case .scaled(let decay): return LowRankAdapter.decayed(weight, by: decay)
    case .sampled(let effective): return effective
    }
  }
}

/// How a wrapped convolution's adapter is shaped.
public enum ConvAdapterForm: String, Sendable {
  /// A `k×k` conv `in → r` with the base geometry, then a `1×1` conv `r → out`: what ships is
  /// really smaller and cheaper.
  case lowrank
  /// loralib's ConvLoRA: `B·A` (`out·k × r·k` · `r·k × in·k`) reshaped into a full kernel; it
  /// compresses nothing, and is here to reproduce the original research notes' numbers.
  case loralib
}

/// A LoRA adapter beside a frozen layer, with the decay state the trainer sets every step:
/// `y = d·(W x + b) + N x + s·B A x + C` (docs/method.md).
public struct LowRankAdapter: Sendable {
  /// The wrapped node's name; the adapter's tensors are `<node>.lora_A`, `.lora_B`, `.lora_C`.
  public var node: String
  /// `A`: `r × in` (Linear), `r × in/groups × k × k` (conv lowrank), `r·k × in·k` (loralib).
  public var down: Tensor
  /// `B`: `out × r` (Linear), `out × r × 1 × 1` (conv lowrank), `out·k × r·k` (loralib).
  public var up: Tensor
  /// `C`: `out`, or nil (`bias_c: none`).
  public var bias: Tensor?
  /// `s = alpha / r`.
  public var scale: Float
  /// The decay factor `d ∈ [0, 1]` of the frozen path (1: plain LoRA).
  public var decay: Float = 1
  /// The noise's moments, when the manifest asked for noise.
  public var noise: NoiseModel?
  /// Whether the noise is drawn this step (the schedule turns it off below `clear_below`).
  public var noiseActive: Bool = false
  /// The conv form (ignored for Linear).
  public var convForm: ConvAdapterForm = .lowrank
  /// True once exported: the base weight is gone, `scale` is folded into `up` (so it is 1), and
  /// the tensors are named as a plain two-layer factorisation (`<node>.down.weight`,
  /// `<node>.up.weight`, `<node>.up.bias`) that PyTorch loads without surgeon.
  public var isExported = false

  /// The adapter's rank `r`.
  public var rank: Int

  public init(node: String, rank: Int, down: Tensor, up: Tensor, bias: Tensor?, scale: Float) {
    self.node = node
    self.rank = rank
    self.down = down
    self.up = up
    self.bias = bias
    self.scale = scale
  }

  public var downName: String { node + (isExported ? ".down.weight" : ".lora_A") }
  public var upName: String { node + (isExported ? ".up.weight" : ".lora_B") }
  public var biasName: String { node + (isExported ? ".up.bias" : ".lora_C") }

  /// The exported form of this adapter: `down = A`, `up = s·B`, `C` as the up bias; `d = 0`,
  /// no noise.
  public func exported() -> LowRankAdapter {
    var result = self
    result.up.scale(by: scale)
    result.scale = 1
    result.decay = 0
    result.noise = nil
    result.noiseActive = false
    result.isExported = true
    return result
  }

  /// True when the frozen path contributes nothing this step (d = 0 and no noise), so it is
  /// skipped.
  public var skipsFrozenPath: Bool { decay == 0 && !(noiseActive && noise != nil) }

  /// `d·tensor`: the frozen bias in the forward pass and the frozen weight's and bias's
  /// gradients (the noise is a fresh sample, not a function of `W`); `d = 1` leaves it as is.
  public static func decayed(_ tensor: Tensor, by decay: Float) -> Tensor {
    guard decay != 1 else { return tensor }
    var result = tensor
    result.scale(by: decay)
    return result
  }

  /// True when a noise sample is drawn in a training forward pass.
  func drawsNoise(_ mode: ForwardMode) -> Bool { mode == .training && noiseActive && noise != nil }

  public var namedParameters: [(String, Tensor)] {
    var result = [(downName, down), (upName, up)]
    if let bias { result.append((biasName, bias)) }
    return result
  }

  var tensorInfos: [TensorInfo] {
    namedParameters.map { TensorInfo(name: $0.0, shape: $0.1.shape) }
  }
}
