import Tensor

/// `y = x Wᵀ + b` on the last dimension; `W` is `out × in` (the PyTorch layout). With an
/// adapter: `y = d·(x Wᵀ + b) + x Nᵀ + s·(x Aᵀ) Bᵀ + C`, the frozen path as one GEMM on `d·W + N`.
public struct Linear: Sendable {
  /// The node name: the checkpoint prefix of `weight` and `bias`.
  public var name: String
  public var weight: Tensor
  public var bias: Tensor?
  /// The LoRA adapter the rewriter attached, if any.
  public var adapter: LowRankAdapter?

  public init(name: String, weight: Tensor, bias: Tensor?) {
    precondition(weight.shape.count == 2, "Linear weight must be 2-D")
    self.name = name
    self.weight = weight
    self.bias = bias
  }

  /// PyTorch's default init (Kaiming-uniform weight, uniform bias in ±1/√in).
  public init(name: String, inFeatures: Int, outFeatures: Int, random: inout RandomStream) {
    let weight = Tensor.kaimingUniform(
      shape: [outFeatures, inFeatures], fanIn: inFeatures, random: &random)
    let bound = 1 / Float(inFeatures).squareRoot()
    let bias = Tensor.uniform(shape: [outFeatures], low: -bound, high: bound, random: &random)
    self.init(name: name, weight: weight, bias: bias)
  }

  public var inFeatures: Int { weight.shape[1] }
  public var outFeatures: Int { weight.shape[0] }
  public var weightName: String { name + ".weight" }
  public var biasName: String { name + ".bias" }

  /// What backward needs.
  public struct Cache: Sendable {
    public var input: Tensor
    /// `d·W + N` when this step drew noise (backward multiplies by the same sample).
    var effectiveWeight: Tensor?
    /// `x Aᵀ`, with an adapter.
    var adapterHidden: Tensor?
  }

  /// Evaluation forward (no noise): `input` is `[rows..., in]`, the result `[rows..., out]`.
  public func forward(_ input: Tensor) -> Tensor {
    var random = RandomStream(seed: 0)
    return forward(input, mode: .evaluation, random: &random).output
  }

  /// The forward pass; a training step with active noise draws `N` from `random`.
  public func forward(_ input: Tensor, mode: ForwardMode, random: inout RandomStream) -> (
    output: Tensor, cache: Cache
  ) {
    precondition(input.shape.last == inFeatures, "Linear \(name): input \(input.shape)")
    let rows = input.count / inFeatures
    var outputShape = input.shape
    outputShape[outputShape.count - 1] = outFeatures
    let frozen = FrozenWeight(weight, under: adapter, mode: mode, random: &random)
    let frozenPathRuns = frozen.runs
    // The output starts as its row bias (d·b and C) and every GEMM accumulates into it (β = 1):
    // OpenBLAS then never zeroes C first, and no separate pass adds the bias (zeroing was 11% of
    // the compressed forward in `perf`). Without a bias the first GEMM has β = 0 and writes every
    // element.
    var rowBias =
      frozenPathRuns ? bias.map { LowRankAdapter.decayed($0, by: adapter?.decay ?? 1) } : nil
    if let c = adapter?.bias {
      if rowBias == nil { rowBias = c } else { rowBias!.add(c) }
    }
    var output =
      rowBias.map { Tensor(shape: outputShape, repeatingRow: $0) }
      ?? Tensor(uninitialized: outputShape)
    var written = rowBias != nil
    var cache = Cache(input: input)
    // One GEMM for the frozen path: on d·W + N with noise, else on W scaled by d.
    switch frozen {
    case .skipped:
      break
    case .scaled(let decay):
      Linear.multiply(input, weight, into: &output, rows: rows, alpha: decay, accumulate: written)
      written = true
    case .sampled(let effective):
      cache.effectiveWeight = effective
      Linear.multiply(input, effective, into: &output, rows: rows, alpha: 1, accumulate: written)
      written = true
    }
    if let adapter {
      var hidden = Tensor(uninitialized: [rows, adapter.rank])
      Linear.multiply(input, adapter.down, into: &hidden, rows: rows, alpha: 1, accumulate: false)
      Linear.multiply(
        hidden, adapter.up, into: &output, rows: rows, alpha: adapter.scale, accumulate: written)
      cache.adapterHidden = hidden
    }
    return (output, cache)
  }

  /// `output (+)= alpha · x · Wᵀ` for `x` of `rows × in` and `W` of `out × in`.
  static func multiply(
    _ x: Tensor, _ w: Tensor, into output: inout Tensor, rows: Int, alpha: Float,
    accumulate: Bool
  ) {
    let (out, inner) = (w.shape[0], w.shape[1])
    x.withUnsafeBufferPointer { xs in
      w.withUnsafeBufferPointer { ws in
        output.withUnsafeMutableBufferPointer { ys in
          BLAS.gemm(
            transposeA: false, transposeB: true, m: rows, n: out, k: inner, alpha: alpha,
            a: xs.baseAddress!, lda: inner, b: ws.baseAddress!, ldb: inner,
            beta: accumulate ? 1 : 0, c: ys.baseAddress!, ldc: out)
        }
      }
    }
  }

  /// `alpha · gᵀ · x` (`out × in`) for `g` of `rows × out` and `x` of `rows × in`.
  static func weightGradient(_ g: Tensor, _ x: Tensor, rows: Int, alpha: Float) -> Tensor {
    let (out, inner) = (g.count / rows, x.count / rows)
    var result = Tensor(uninitialized: [out, inner])
    g.withUnsafeBufferPointer { gs in
      x.withUnsafeBufferPointer { xs in
        result.withUnsafeMutableBufferPointer { rs in
          BLAS.gemm(
            transposeA: true, transposeB: false, m: out, n: inner, k: rows, alpha: alpha,
            a: gs.baseAddress!, lda: out, b: xs.baseAddress!, ldb: inner, c: rs.baseAddress!,
            ldc: inner)
        }
      }
    }
    return result
  }

  /// `result (+)= alpha · g · W` (`rows × in`) for `g` of `rows × out` and `W` of `out × in`.
  static func inputGradient(
    _ g: Tensor, _ w: Tensor, into result: inout Tensor, rows: Int, alpha: Float,
    accumulate: Bool
  ) {
    let (out, inner) = (w.shape[0], w.shape[1])
    g.withUnsafeBufferPointer { gs in
      w.withUnsafeBufferPointer { ws in
        result.withUnsafeMutableBufferPointer { rs in
          BLAS.gemm(
            transposeA: false, transposeB: false, m: rows, n: inner, k: out, alpha: alpha,
            a: gs.baseAddress!, lda: out, b: ws.baseAddress!, ldb: inner,
            beta: accumulate ? 1 : 0, c: rs.baseAddress!, ldc: inner)
        }
      }
    }
  }

  /// Backward from the input alone (no noise was drawn): see `backward(cache:…)`.
  public func backward(
    input: Tensor, outputGradient: Tensor, gradients: inout GradientSet,
    needsInputGradient: Bool = true
  ) -> Tensor? {
    var cache = Cache(input: input)
    if let adapter {
      var hidden = Tensor(zeros: [input.count / inFeatures, adapter.rank])
      Linear.multiply(
        input, adapter.down, into: &hidden, rows: input.count / inFeatures, alpha: 1,
        accumulate: false)
      cache.adapterHidden = hidden
    }
    return backward(
      cache: cache, outputGradient: outputGradient, gradients: &gradients,
      needsInputGradient: needsInputGradient)
  }

  /// Accumulates the gradients of the trained parameters (`W`, `b`, `A`, `B`, `C`) and returns
  /// `dx` when asked. Frozen parameters cost no GEMM.
  public func backward(
    cache: Cache, outputGradient g: Tensor, gradients: inout GradientSet,
    needsInputGradient: Bool = true
  ) -> Tensor? {
    let input = cache.input
    let rows = input.count / inFeatures
    let decay = adapter?.decay ?? 1
    let frozenPathRan = adapter?.skipsFrozenPath != true
    if frozenPathRan, gradients.wants(weightName) {
      // ∂/∂W of d·W x: the noise is a fresh sample, not a function of W.
      gradients.accumulate(weightName, Linear.weightGradient(g, input, rows: rows, alpha: decay))
    }
    if frozenPathRan, bias != nil, gradients.wants(biasName) {
      gradients.accumulate(
        biasName, LowRankAdapter.decayed(g.columnSums(columns: outFeatures), by: decay))
    }
    // With the frozen path the first GEMM into it has β = 0 and writes every element.
    var inputGradient =
      frozenPathRan
      ? Tensor(uninitialized: needsInputGradient ? input.shape : [0])
      : Tensor(zeros: needsInputGradient ? input.shape : [0])
    var wroteInput = false
    if needsInputGradient && frozenPathRan {
      if let effective = cache.effectiveWeight {
        Linear.inputGradient(
          g, effective, into: &inputGradient, rows: rows, alpha: 1, accumulate: false)
      } else {
        Linear.inputGradient(
          g, weight, into: &inputGradient, rows: rows, alpha: decay, accumulate: false)
      }
      wroteInput = true
    }
    if let adapter, let hidden = cache.adapterHidden {
      if gradients.wants(adapter.upName) {
        gradients.accumulate(
          adapter.upName, Linear.weightGradient(g, hidden, rows: rows, alpha: adapter.scale))
      }
      if adapter.bias != nil, gradients.wants(adapter.biasName) {
        gradients.accumulate(adapter.biasName, g.columnSums(columns: outFeatures))
      }
      let wantsDown = gradients.wants(adapter.downName)
      if wantsDown || needsInputGradient {
        var hiddenGradient = Tensor(uninitialized: [rows, adapter.rank])
        Linear.inputGradient(
          g, adapter.up, into: &hiddenGradient, rows: rows, alpha: adapter.scale,
          accumulate: false)
        if wantsDown {
          gradients.accumulate(
            adapter.downName, Linear.weightGradient(hiddenGradient, input, rows: rows, alpha: 1))
        }
        if needsInputGradient {
          Linear.inputGradient(
            hiddenGradient, adapter.down, into: &inputGradient, rows: rows, alpha: 1,
            accumulate: wroteInput)
        }
      }
    }
    return needsInputGradient ? inputGradient : nil
  }
}
