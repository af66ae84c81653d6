import Tensor

/// Zero padding of a convolution or pooling window, per side.
public struct Padding2D: Sendable, Equatable {
  public var top: Int
  public var bottom: Int
  public var left: Int
  public var right: Int

  public init(top: Int, bottom: Int, left: Int, right: Int) {
    self.top = top
    self.bottom = bottom
    self.left = left
    self.right = right
  }

  /// The same padding on every side.
  public init(_ amount: Int) {
    self.init(top: amount, bottom: amount, left: amount, right: amount)
  }

  /// PyTorch's `padding="same"` for stride 1: total `dilation·(k − 1)`, the odd pixel on the
  /// bottom/right.
  public static func same(kernel: (Int, Int), dilation: (Int, Int)) -> Padding2D {
    let vertical = dilation.0 * (kernel.0 - 1)
    let horizontal = dilation.1 * (kernel.1 - 1)
    return Padding2D(
      top: vertical / 2, bottom: vertical - vertical / 2, left: horizontal / 2,
      right: horizontal - horizontal / 2)
  }
}

/// A 2-D convolution over `N × C × H × W` (PyTorch layout; weight `out × in/groups × kh × kw`),
/// computed on oneDNN or per sample and group as one GEMM over an im2col buffer
/// (`ConvolutionBackend`). The frozen path comes from the adapter (`FrozenWeight`); the adapter's
/// two forms are in `Conv2dLowRank.swift` and `Conv2dLoRALib.swift`.
public struct Conv2d: Sendable {
  public var name: String
  public var weight: Tensor
  public var bias: Tensor?
  public var stride: (Int, Int)
  public var padding: Padding2D
  public var dilation: (Int, Int)
  public var groups: Int
  /// The LoRA adapter the rewriter attached, if any (`LowRankAdapter.convForm` says its shape).
  public var adapter: LowRankAdapter?

  public init(
    name: String, weight: Tensor, bias: Tensor?, stride: (Int, Int) = (1, 1),
    padding: Padding2D = Padding2D(0), dilation: (Int, Int) = (1, 1), groups: Int = 1
  ) {
    precondition(weight.shape.count == 4, "Conv2d weight must be 4-D")
    precondition(groups >= 1 && weight.shape[0] % groups == 0, "groups must divide out channels")
    self.name = name
    self.weight = weight
    self.bias = bias
    self.stride = stride
    self.padding = padding
    self.dilation = dilation
    self.groups = groups
  }

  public var outChannels: Int { weight.shape[0] }
  public var inChannels: Int { weight.shape[1] * groups }
  public var kernelSize: (Int, Int) { (weight.shape[2], weight.shape[3]) }
  public var weightName: String { name + ".weight" }
  public var biasName: String { name + ".bias" }

  /// The spatial output size for an input of `height × width` (0 or less: the window does not fit).
  public func outputSize(height: Int, width: Int) -> (Int, Int) {
    let (kh, kw) = kernelSize
    let h = (height + padding.top + padding.bottom - dilation.0 * (kh - 1) - 1) / stride.0 + 1
    let w = (width + padding.left + padding.right - dilation.1 * (kw - 1) - 1) / stride.1 + 1
    return (h, w)
  }

  struct Geometry {
    var channelsPerGroup: Int
    var outPerGroup: Int
    var height: Int
    var width: Int
    var outHeight: Int
    var outWidth: Int
    var kernelHeight: Int
    var kernelWidth: Int
    var patch: Int { channelsPerGroup * kernelHeight * kernelWidth }
    var pixels: Int { outHeight * outWidth }
  }

  func geometry(for input: Tensor) -> Geometry {
    precondition(
      input.shape.count == 4 && input.shape[1] == inChannels, "Conv2d \(name): input \(input.shape)"
    )
    let (outHeight, outWidth) = outputSize(height: input.shape[2], width: input.shape[3])
    return Geometry(
      channelsPerGroup: inChannels / groups, outPerGroup: outChannels / groups,
      height: input.shape[2], width: input.shape[3], outHeight: outHeight, outWidth: outWidth,
      kernelHeight: kernelSize.0, kernelWidth: kernelSize.1)
  }

  /// The geometry oneDNN's primitives are keyed by, for a batch of `batch` samples.
  private func convolutionGeometry(batch: Int, _ g: Geometry) -> ConvolutionGeometry {
    ConvolutionGeometry(
      batch: batch, inChannels: inChannels, outChannels: outChannels, height: g.height,
      width: g.width, kernel: kernelSize, stride: stride,
      padding: (padding.top, padding.bottom, padding.left, padding.right), dilation: dilation,
      groups: groups)
  }

  /// Copies one sample's group into `columns` (`patch × pixels`), zero outside the image.
  private func im2col(
    _ image: UnsafePointer<Float>, _ columns: UnsafeMutablePointer<Float>, _ g: Geometry
  ) {
    for c in 0..<g.channelsPerGroup {
      let plane = image + c * g.height * g.width
      for i in 0..<g.kernelHeight {
        for j in 0..<g.kernelWidth {
          let row = columns + ((c * g.kernelHeight + i) * g.kernelWidth + j) * g.pixels
          let offset = j * dilation.1 - padding.left
          let (first, end) = validOutputColumns(offset: offset, g)
          for oh in 0..<g.outHeight {
            let ih = oh * stride.0 - padding.top + i * dilation.0
            let target = row + oh * g.outWidth
            if ih < 0 || ih >= g.height || first >= end {
              target.update(repeating: 0, count: g.outWidth)
              continue
            }
            // Zeros left and right of the image, the pixels in between (one copy at stride 1).
            let line = plane + ih * g.width
            target.update(repeating: 0, count: first)
            if stride.1 == 1 {
              target.advanced(by: first).update(from: line + first + offset, count: end - first)
            } else {
              for ow in first..<end { target[ow] = line[ow * stride.1 + offset] }
            }
            target.advanced(by: end).update(repeating: 0, count: g.outWidth - end)
          }
        }
      }
    }
  }

  /// The output columns `first..<end` whose input column `ow·stride + offset` is inside the
  /// image.
  @inline(__always)
  private func validOutputColumns(offset: Int, _ g: Geometry) -> (first: Int, end: Int) {
    let s = stride.1
    // Smallest ow with ow·s + offset ≥ 0, and smallest with ow·s + offset ≥ width.
    let first = offset >= 0 ? 0 : (-offset + s - 1) / s
    let limit = g.width - offset
    let end = limit <= 0 ? 0 : (limit + s - 1) / s
    return (Swift.min(first, g.outWidth), Swift.min(end, g.outWidth))
  }

  /// Adds `columns` back onto the pixels they were read from (the adjoint of im2col).
  private func col2im(
    _ columns: UnsafePointer<Float>, _ image: UnsafeMutablePointer<Float>, _ g: Geometry
  ) {
    for c in 0..<g.channelsPerGroup {
      let plane = image + c * g.height * g.width
      for i in 0..<g.kernelHeight {
        for j in 0..<g.kernelWidth {
          let row = columns + ((c * g.kernelHeight + i) * g.kernelWidth + j) * g.pixels
          let offset = j * dilation.1 - padding.left
          let (first, end) = validOutputColumns(offset: offset, g)
          guard first < end else { continue }
          for oh in 0..<g.outHeight {
            let ih = oh * stride.0 - padding.top + i * dilation.0
            if ih < 0 || ih >= g.height { continue }
            let line = plane + ih * g.width
            let source = row + oh * g.outWidth
            if stride.1 == 1 {
              let target = line + offset
              for ow in first..<end { target[ow] += source[ow] }
            } else {
              for ow in first..<end { line[ow * stride.1 + offset] += source[ow] }
            }
          }
        }
      }
    }
  }

  /// Evaluation forward (no noise).
  public func forward(_ input: Tensor) -> Tensor {
    var random = RandomStream(seed: 0)
    return forward(input, mode: .evaluation, random: &random).output
  }

  /// What backward needs.
  public struct Cache: Sendable {
    public var input: Tensor
    /// The kernel the frozen path convolved with (`d·W`, `d·W + N`, plus `s·ΔW` for loralib);
    /// nil when the frozen path was skipped.
    var kernel: Tensor?
    /// The lowrank adapter's `A`-conv output (`N × r × H' × W'`).
    var adapterHidden: Tensor?
  }

  /// The forward pass; a training step with active noise draws `N` from `random`.
  public func forward(_ input: Tensor, mode: ForwardMode, random: inout RandomStream) -> (
    output: Tensor, cache: Cache
  ) {
    let g = geometry(for: input)
    var cache = Cache(input: input)
    let frozen = FrozenWeight(weight, under: adapter, mode: mode, random: &random)
    var kernel = frozen.tensor(of: weight)
    if let adapter, adapter.convForm == .loralib {
      kernel = loralibKernel(frozen: kernel, adapter)
    }
    var output = Tensor(zeros: [input.shape[0], outChannels, g.outHeight, g.outWidth])
    if let kernel {
      convolve(input, kernel: kernel, into: &output, g)
      if frozen.runs, let bias {
        Conv2d.addChannelBias(LowRankAdapter.decayed(bias, by: adapter?.decay ?? 1), to: &output)
      }
    }
    cache.kernel = kernel
    if let adapter {
      if adapter.convForm == .lowrank {
        cache.adapterHidden = addLowRank(adapter, input: input, into: &output)
      }
      if let c = adapter.bias { Conv2d.addChannelBias(c, to: &output) }
    }
    return (output, cache)
  }

  static func addChannelBias(_ bias: Tensor, to output: inout Tensor) {
    let (batch, channels) = (output.shape[0], output.shape[1])
    let pixels = output.count / Swift.max(1, batch * channels)
    bias.withUnsafeBufferPointer { bs in
      output.withUnsafeMutableBufferPointer { ys in
        for n in 0..<batch {
          for o in 0..<channels {
            let plane = ys.baseAddress! + (n * channels + o) * pixels
            for p in 0..<pixels { plane[p] += bs[o] }
          }
        }
      }
    }
  }

  static func channelSums(_ gradient: Tensor) -> Tensor {
    let (batch, channels) = (gradient.shape[0], gradient.shape[1])
    let pixels = gradient.count / Swift.max(1, batch * channels)
    var result = Tensor(zeros: [channels])
    gradient.withUnsafeBufferPointer { gs in
      result.withUnsafeMutableBufferPointer { rs in
        for n in 0..<batch {
          for o in 0..<channels {
            let plane = gs.baseAddress! + (n * channels + o) * pixels
            var sum: Float = 0
            for p in 0..<pixels { sum += plane[p] }
            rs[o] += sum
          }
        }
      }
    }
    return result
  }

  /// Calls `body(sample, group, columns)` with each sample's group copied into im2col columns
  /// (`patch × pixels`), for the samples in `samples`: the loop the forward pass and the weight
  /// gradient share.
  private func forEachColumns(
    of input: Tensor, samples: Range<Int>, _ g: Geometry,
    _ body: (Int, Int, UnsafePointer<Float>) -> Void
  ) {
    let columns = UnsafeMutablePointer<Float>.allocate(capacity: Swift.max(1, g.patch * g.pixels))
    defer { columns.deallocate() }
    input.withUnsafeBufferPointer { xs in
      for n in samples {
        for group in 0..<groups {
          let image =
            xs.baseAddress! + (n * inChannels + group * g.channelsPerGroup) * g.height * g.width
          im2col(image, columns, g)
          body(n, group, columns)
        }
      }
    }
  }

  /// Calls `body` with each sample's im2col columns (`fan_in × pixels`, row-major) of a
  /// convolution with one group: the input patches its kernel sees (calibration statistics).
  public func forEachPatchMatrix(
    of input: Tensor, _ body: (_ columns: UnsafePointer<Float>, _ pixels: Int) -> Void
  ) {
    precondition(groups == 1, "Conv2d \(name): patch matrices of a grouped convolution")
    let g = geometry(for: input)
    forEachColumns(of: input, samples: 0..<input.shape[0], g) { _, _, columns in
      body(columns, g.pixels)
    }
  }

  /// The number of fixed sample ranges a weight gradient is summed over: partial sums run in
  /// parallel and are added in a fixed order, so the bits do not depend on the thread count.
  static let partialSums = 4

  /// `Σ_n` of per-sample GEMMs into a `count`-float result: `body(samples, partial)` accumulates
  /// its samples into `partial` (zeroed), over `partialSums` fixed ranges in parallel.
  static func sumOverSamples(
    batch: Int, shape: [Int], _ body: (Range<Int>, UnsafeMutablePointer<Float>) -> Void
  ) -> Tensor {
    let parts = Swift.max(1, Swift.min(partialSums, batch))
    let count = Tensor.elementCount(of: shape)
    var partials = Tensor(zeros: [parts, count])
    partials.withUnsafeMutableBufferPointer { ps in
      let base = ps.baseAddress!
      Parallel.forEachChunk(parts, grain: 1) { range in
        for part in range {
          let samples = (part * batch / parts)..<((part + 1) * batch / parts)
          body(samples, base + part * count)
        }
      }
    }
    var result = Tensor(zeros: shape)
    result.withUnsafeMutableBufferPointer { rs in
      partials.withUnsafeBufferPointer { ps in
        for part in 0..<parts {
          let partial = ps.baseAddress! + part * count
          for i in 0..<count { rs[i] += partial[i] }
        }
      }
    }
    return result
  }

  /// `output = conv(input, kernel)` per sample and group, one GEMM each over im2col columns.
  func convolve(_ input: Tensor, kernel: Tensor, into output: inout Tensor, _ g: Geometry) {
    let geometry = convolutionGeometry(batch: input.shape[0], g)
    if ConvolutionBackend.choice(for: geometry) == .onednn {
      input.withUnsafeBufferPointer { xs in
        kernel.withUnsafeBufferPointer { ws in
          output.withUnsafeMutableBufferPointer { ys in
            OneDNN.forward(
              geometry, input: xs.baseAddress!, weights: ws.baseAddress!, output: ys.baseAddress!)
          }
        }
      }
      return
    }
    kernel.withUnsafeBufferPointer { ws in
      output.withUnsafeMutableBufferPointer { ys in
        // Each sample writes its own output planes: split across threads.
        let (wBase, yBase) = (ws.baseAddress!, ys.baseAddress!)
        Parallel.forEachChunk(input.shape[0], grain: 1) { samples in
          forEachColumns(of: input, samples: samples, g) { n, group, columns in
            BLAS.gemm(
              transposeA: false, transposeB: false, m: g.outPerGroup, n: g.pixels, k: g.patch,
              a: wBase + group * g.outPerGroup * g.patch, lda: g.patch,
              b: columns, ldb: g.pixels,
              c: yBase + (n * outChannels + group * g.outPerGroup) * g.pixels,
              ldc: g.pixels)
          }
        }
      }
    }
  }

  /// `∂loss/∂kernel` for a unit kernel: `Σ_n dy_n · colsᵀ` (independent of the kernel's values).
  func kernelGradient(input: Tensor, outputGradient: Tensor, _ g: Geometry) -> Tensor {
    let geometry = convolutionGeometry(batch: input.shape[0], g)
    if ConvolutionBackend.choice(for: geometry) == .onednn {
      var result = Tensor(uninitialized: weight.shape)
      input.withUnsafeBufferPointer { xs in
        outputGradient.withUnsafeBufferPointer { dys in
          result.withUnsafeMutableBufferPointer { dws in
            OneDNN.backwardWeights(
              geometry, input: xs.baseAddress!, outputGradient: dys.baseAddress!,
              weightGradient: dws.baseAddress!)
          }
        }
      }
      return result
    }
    return outputGradient.withUnsafeBufferPointer { dys in
      let dyBase = dys.baseAddress!
      return Conv2d.sumOverSamples(batch: input.shape[0], shape: weight.shape) { samples, dws in
        forEachColumns(of: input, samples: samples, g) { n, group, columns in
          BLAS.gemm(
            transposeA: false, transposeB: true, m: g.outPerGroup, n: g.patch, k: g.pixels,
            a: dyBase + (n * outChannels + group * g.outPerGroup) * g.pixels,
            lda: g.pixels, b: columns, ldb: g.pixels, beta: 1,
            c: dws + group * g.outPerGroup * g.patch, ldc: g.patch)
        }
      }
    }
  }

  /// `dx += conv_transpose(dy, kernel)`: a GEMM per sample and group, then col2im.
  func addInputGradient(
    _ outputGradient: Tensor, kernel: Tensor, into inputGradient: inout Tensor, _ g: Geometry
  ) {
    let batch = inputGradient.shape[0]
    let geometry = convolutionGeometry(batch: batch, g)
    if ConvolutionBackend.choice(for: geometry) == .onednn {
      var gradient = Tensor(uninitialized: inputGradient.shape)
      outputGradient.withUnsafeBufferPointer { dys in
        kernel.withUnsafeBufferPointer { ws in
          gradient.withUnsafeMutableBufferPointer { dxs in
            OneDNN.backwardData(
              geometry, outputGradient: dys.baseAddress!, weights: ws.baseAddress!,
              inputGradient: dxs.baseAddress!)
          }
        }
      }
      inputGradient.add(gradient)
      return
    }
    outputGradient.withUnsafeBufferPointer { dys in
      kernel.withUnsafeBufferPointer { ws in
        inputGradient.withUnsafeMutableBufferPointer { dxs in
          let (dyBase, wBase, dxBase) = (dys.baseAddress!, ws.baseAddress!, dxs.baseAddress!)
          // Each sample adds into its own input planes: split across threads.
          Parallel.forEachChunk(batch, grain: 1) { samples in
            let columns = UnsafeMutablePointer<Float>.allocate(
              capacity: Swift.max(1, g.patch * g.pixels))
            defer { columns.deallocate() }
            for n in samples {
              for group in 0..<groups {
                BLAS.gemm(
                  transposeA: true, transposeB: false, m: g.patch, n: g.pixels, k: g.outPerGroup,
                  a: wBase + group * g.outPerGroup * g.patch, lda: g.patch,
                  b: dyBase + (n * outChannels + group * g.outPerGroup) * g.pixels,
                  ldb: g.pixels, c: columns, ldc: g.pixels)
                col2im(
                  columns,
                  dxBase + (n * inChannels + group * g.channelsPerGroup) * g.height * g.width, g)
              }
            }
          }
        }
      }
    }
  }

  /// Backward from the input alone (a plain layer, or no noise drawn).
  public func backward(
    input: Tensor, outputGradient: Tensor, gradients: inout GradientSet,
    needsInputGradient: Bool = true
  ) -> Tensor? {
    var random = RandomStream(seed: 0)
    // Recomputing the forward only rebuilds the cache's kernel and hidden state.
    let cache = forward(input, mode: .evaluation, random: &random).cache
    return backward(
      cache: cache, outputGradient: outputGradient, gradients: &gradients,
      needsInputGradient: needsInputGradient)
  }

  /// Accumulates the gradients of the trained parameters and returns `dx` when asked.
  public func backward(
    cache: Cache, outputGradient: Tensor, gradients: inout GradientSet,
    needsInputGradient: Bool = true
  ) -> Tensor? {
    let input = cache.input
    let g = geometry(for: input)
    let decay = adapter?.decay ?? 1
    let frozenPathRan = adapter?.skipsFrozenPath != true
    let loralib = adapter?.convForm == .loralib
    let wantsWeight = frozenPathRan && gradients.wants(weightName)
    let wantsMerged =
      loralib
      && (gradients.wants(adapter!.downName) || gradients.wants(adapter!.upName))
    if wantsWeight || wantsMerged {
      let unit = kernelGradient(input: input, outputGradient: outputGradient, g)
      if wantsWeight {
        gradients.accumulate(weightName, LowRankAdapter.decayed(unit, by: decay))
      }
      if wantsMerged, let adapter {
        accumulateLoRALibGradients(unitKernelGradient: unit, adapter, into: &gradients)
      }
    }
    if frozenPathRan, bias != nil, gradients.wants(biasName) {
      gradients.accumulate(
        biasName, LowRankAdapter.decayed(Conv2d.channelSums(outputGradient), by: decay))
    }
    if let adapter, adapter.bias != nil, gradients.wants(adapter.biasName) {
      gradients.accumulate(adapter.biasName, Conv2d.channelSums(outputGradient))
    }
    var inputGradient = Tensor(zeros: needsInputGradient ? input.shape : [0])
    if needsInputGradient, let kernel = cache.kernel {
      addInputGradient(outputGradient, kernel: kernel, into: &inputGradient, g)
    }
    if let adapter, adapter.convForm == .lowrank, let hidden = cache.adapterHidden {
      addLowRankGradients(
        adapter, input: input, hidden: hidden, outputGradient: outputGradient,
        gradients: &gradients, inputGradient: &inputGradient,
        needsInputGradient: needsInputGradient)
    }
    return needsInputGradient ? inputGradient : nil
  }
}
