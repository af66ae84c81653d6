import Tensor

/// Batch normalisation over `N × C × H × W` per channel. Training normalises with the batch's
/// statistics and moves the running statistics (momentum 0.1, unbiased variance, as PyTorch);
/// evaluation uses the running statistics.
public struct BatchNorm2d: Sendable {
  public var name: String
  public var weight: Tensor
  public var bias: Tensor
  public var runningMean: Tensor
  public var runningVariance: Tensor
  /// PyTorch's `num_batches_tracked` buffer, kept so checkpoints round-trip.
  public var batchesTracked: Int64
  public var epsilon: Float
  public var momentum: Float

  public init(
    name: String, weight: Tensor, bias: Tensor, runningMean: Tensor, runningVariance: Tensor,
    batchesTracked: Int64 = 0, epsilon: Float = 1e-5, momentum: Float = 0.1
  ) {
    self.name = name
    self.weight = weight
    self.bias = bias
    self.runningMean = runningMean
    self.runningVariance = runningVariance
    self.batchesTracked = batchesTracked
    self.epsilon = epsilon
    self.momentum = momentum
  }

  public init(name: String, channels: Int) {
    self.init(
      name: name, weight: Tensor(shape: [channels], repeating: 1), bias: Tensor(zeros: [channels]),
      runningMean: Tensor(zeros: [channels]),
      runningVariance: Tensor(shape: [channels], repeating: 1))
  }

  public var channels: Int { weight.count }
  public var weightName: String { name + ".weight" }
  public var biasName: String { name + ".bias" }

  public struct Cache: Sendable {
    public var input: Tensor
    public var mean: [Float]
    public var reciprocalStandardDeviation: [Float]
    /// True when the statistics were the batch's (their gradient flows through them).
    public var usedBatchStatistics: Bool
  }

  /// In training the running statistics are updated in place.
  public mutating func forward(_ input: Tensor, mode: ForwardMode) -> (
    output: Tensor, cache: Cache
  ) {
    let (batch, height, width) = (input.shape[0], input.shape[2], input.shape[3])
    let pixels = height * width
    let perChannel = batch * pixels
    var means = [Float](repeating: 0, count: channels)
    var rstds = [Float](repeating: 0, count: channels)
    let training = mode == .training
    if training {
      // Each channel's mean and sum of squared deviations, in double precision. Channels are
      // independent and each is summed in one fixed order (`Kernels.channelMoments`): the same
      // bits on any split.
      var moments = [(mean: Double, squares: Double)](repeating: (0, 0), count: channels)
      let kernel = VectorKernelChoice.active.channelMoments
      input.withUnsafeBufferPointer { xs in
        moments.withUnsafeMutableBufferPointer { momentBuffer in
          let (x, out, channels) = (xs.baseAddress!, momentBuffer.baseAddress!, channels)
          Parallel.forEachChunk(channels, grain: 1) { chunk in
            for c in chunk {
              out[c] = kernel(
                ChannelPlanes(
                  base: x + c * pixels, count: batch, pixels: pixels, stride: channels * pixels))
            }
          }
        }
      }
      for (c, moment) in moments.enumerated() {
        let variance = moment.squares / Double(perChannel)
        let unbiased = perChannel > 1 ? moment.squares / Double(perChannel - 1) : variance
        means[c] = Float(moment.mean)
        rstds[c] = Float(1 / (variance + Double(epsilon)).squareRoot())
        runningMean[flat: c] = (1 - momentum) * runningMean[flat: c] + momentum * means[c]
        runningVariance[flat: c] =
          (1 - momentum) * runningVariance[flat: c] + momentum * Float(unbiased)
      }
    } else {
      for c in 0..<channels {
        means[c] = runningMean[flat: c]
        rstds[c] = 1 / (runningVariance[flat: c] + epsilon).squareRoot()
      }
    }
    if training { batchesTracked += 1 }
    // Every element is written below.
    var output = Tensor(uninitialized: input.shape)
    input.withUnsafeBufferPointer { xs in
      weight.withUnsafeBufferPointer { ws in
        bias.withUnsafeBufferPointer { bs in
          output.withUnsafeMutableBufferPointer { ys in
            let (x, y, w, b) = (xs.baseAddress!, ys.baseAddress!, ws.baseAddress!, bs.baseAddress!)
            let (channels, means, rstds) = (channels, means, rstds)
            Parallel.forEachChunk(batch * channels, grain: 4) { planes in
              for plane in planes {
                let c = plane % channels
                let offset = plane * pixels
                let scale = rstds[c] * w[c]
                let shift = b[c] - means[c] * scale
                for p in 0..<pixels { y[offset + p] = x[offset + p] * scale + shift }
              }
            }
          }
        }
      }
    }
    let cache = Cache(
      input: input, mean: means, reciprocalStandardDeviation: rstds, usedBatchStatistics: training)
    return (output, cache)
  }

  public func backward(cache: Cache, outputGradient: Tensor, gradients: inout GradientSet)
    -> Tensor
  {
    let input = cache.input
    let (batch, pixels) = (input.shape[0], input.shape[2] * input.shape[3])
    let perChannel = Float(batch * pixels)
    // Every element is written below.
    var inputGradient = Tensor(uninitialized: input.shape)
    var weightGradient = Tensor(zeros: [channels])
    var biasGradient = Tensor(zeros: [channels])
    let (channels, usedBatchStatistics) = (channels, cache.usedBatchStatistics)
    let gradientSums = VectorKernelChoice.active.channelGradientSums
    input.withUnsafeBufferPointer { xs in
      outputGradient.withUnsafeBufferPointer { dys in
        inputGradient.withUnsafeMutableBufferPointer { dxs in
          weightGradient.withUnsafeMutableBufferPointer { weightGradients in
            biasGradient.withUnsafeMutableBufferPointer { biasGradients in
              weight.withUnsafeBufferPointer { weights in
                let (x, dy, dx) = (xs.baseAddress!, dys.baseAddress!, dxs.baseAddress!)
                let (dw, db, w) = (
                  weightGradients.baseAddress!, biasGradients.baseAddress!, weights.baseAddress!
                )
                // Channels are independent and each is summed in one fixed order
                // (`Kernels.channelGradientSums`): the same bits on any split.
                Parallel.forEachChunk(channels, grain: 1) { chunk in
                  for c in chunk {
                    let mean = cache.mean[c]
                    let rstd = cache.reciprocalStandardDeviation[c]
                    let (sumGradient, sumGradientNorm) = gradientSums(
                      ChannelPlanes(
                        base: x + c * pixels, count: batch, pixels: pixels,
                        stride: channels * pixels),
                      dy + c * pixels, mean, rstd)
                    dw[c] = sumGradientNorm
                    db[c] = sumGradient
                    let scale = w[c] * rstd
                    // The per-channel means hoisted out of the loop, so it vectorises.
                    let (meanGradient, meanGradientNorm) = (
                      sumGradient / perChannel, sumGradientNorm / perChannel
                    )
                    for n in 0..<batch {
                      let offset = (n * channels + c) * pixels
                      if usedBatchStatistics {
                        for p in 0..<pixels {
                          let norm = (x[offset + p] - mean) * rstd
                          dx[offset + p] =
                            scale * (dy[offset + p] - meanGradient - norm * meanGradientNorm)
                        }
                      } else {
                        for p in 0..<pixels { dx[offset + p] = scale * dy[offset + p] }
                      }
                    }
                  }
                }
              }
            }
          }
        }
      }
    }
    if gradients.wants(weightName) { gradients.accumulate(weightName, weightGradient) }
    if gradients.wants(biasName) { gradients.accumulate(biasName, biasGradient) }
    return inputGradient
  }
}
