import Tensor

/// The lowrank form of a wrapped convolution's adapter (`ConvAdapterForm.lowrank`): a `k×k`
/// conv `in → r` with the layer's geometry (`A`), then a `1×1` conv `r → out` (`B`), beside the
/// frozen convolution: `y = d·(W ∗ x + b) + N ∗ x + s·B ∗ (A ∗ x) + C`.
extension Conv2d {
  /// `output += s·B ∗ (A ∗ x)`; returns `A ∗ x` (`N × r × H' × W'`) for backward.
  func addLowRank(_ adapter: LowRankAdapter, input: Tensor, into output: inout Tensor) -> Tensor {
    let down = lowRankDown(adapter)
    let hidden = down.forward(input)
    Conv2d.pointwise(adapter.up, hidden, into: &output, alpha: adapter.scale)
    return hidden
  }

  /// The lowrank adapter's `A` (`r × in/groups × k × k`) as a convolution with this layer's
  /// geometry, groups included (the rewriter keeps `r` a multiple of `groups`).
  private func lowRankDown(_ adapter: LowRankAdapter) -> Conv2d {
    Conv2d(
      name: adapter.node + ".lora_A", weight: adapter.down, bias: nil, stride: stride,
      padding: padding, dilation: dilation, groups: groups)
  }

  /// `output += alpha · B · h` per sample: the `1×1` conv `r → out` of a lowrank adapter.
  static func pointwise(_ b: Tensor, _ hidden: Tensor, into output: inout Tensor, alpha: Float) {
    let (batch, rank, pixels) = (
      hidden.shape[0], hidden.shape[1], hidden.shape[2] * hidden.shape[3]
    )
    let out = b.shape[0]
    let geometry = pointwiseGeometry(up: b, hidden: hidden)
    if ConvolutionBackend.choice(for: geometry) == .onednn {
      var product = Tensor(uninitialized: output.shape)
      b.withUnsafeBufferPointer { bs in
        hidden.withUnsafeBufferPointer { hs in
          product.withUnsafeMutableBufferPointer { ps in
            OneDNN.forward(
              geometry, input: hs.baseAddress!, weights: bs.baseAddress!, output: ps.baseAddress!)
          }
        }
      }
      output.add(product, scaledBy: alpha)
      return
    }
    b.withUnsafeBufferPointer { bs in
      hidden.withUnsafeBufferPointer { hs in
        output.withUnsafeMutableBufferPointer { ys in
          Parallel.forEachChunk(batch, grain: 1) { samples in
            for n in samples {
              BLAS.gemm(
                transposeA: false, transposeB: false, m: out, n: pixels, k: rank, alpha: alpha,
                a: bs.baseAddress!, lda: rank, b: hs.baseAddress! + n * rank * pixels, ldb: pixels,
                beta: 1, c: ys.baseAddress! + n * out * pixels, ldc: pixels)
            }
          }
        }
      }
    }
  }

  /// The `1×1` convolution `r → out` of a lowrank adapter's `B` over `hidden`.
  static func pointwiseGeometry(up: Tensor, hidden: Tensor) -> ConvolutionGeometry {
    ConvolutionGeometry(
      batch: hidden.shape[0], inChannels: hidden.shape[1], outChannels: up.shape[0],
      height: hidden.shape[2], width: hidden.shape[3], kernel: (1, 1), stride: (1, 1),
      padding: (0, 0, 0, 0), dilation: (1, 1), groups: 1)
  }

  /// Accumulates `∂/∂B` and `∂/∂A` and adds the adapter's share of `dx` when
  /// `needsInputGradient`.
  func addLowRankGradients(
    _ adapter: LowRankAdapter, input: Tensor, hidden: Tensor, outputGradient: Tensor,
    gradients: inout GradientSet, inputGradient: inout Tensor, needsInputGradient: Bool
  ) {
    let (batch, rank) = (hidden.shape[0], hidden.shape[1])
    let pixels = hidden.shape[2] * hidden.shape[3]
    let pointwise = Conv2d.pointwiseGeometry(up: adapter.up, hidden: hidden)
    let onDNN = ConvolutionBackend.choice(for: pointwise) == .onednn
    if gradients.wants(adapter.upName), onDNN {
      var upGradient = Tensor(uninitialized: adapter.up.shape)
      hidden.withUnsafeBufferPointer { hs in
        outputGradient.withUnsafeBufferPointer { dys in
          upGradient.withUnsafeMutableBufferPointer { db in
            OneDNN.backwardWeights(
              pointwise, input: hs.baseAddress!, outputGradient: dys.baseAddress!,
              weightGradient: db.baseAddress!)
          }
        }
      }
      upGradient.scale(by: adapter.scale)
      gradients.accumulate(adapter.upName, upGradient)
    } else if gradients.wants(adapter.upName) {
      // dB = s·Σ_n dy_n · h_nᵀ
      let upGradient = outputGradient.withUnsafeBufferPointer { dys in
        hidden.withUnsafeBufferPointer { hs in
          let (dyBase, hBase) = (dys.baseAddress!, hs.baseAddress!)
          return Conv2d.sumOverSamples(batch: batch, shape: adapter.up.shape) { samples, db in
            for n in samples {
              BLAS.gemm(
                transposeA: false, transposeB: true, m: outChannels, n: rank, k: pixels,
                alpha: adapter.scale, a: dyBase + n * outChannels * pixels,
                lda: pixels, b: hBase + n * rank * pixels, ldb: pixels, beta: 1,
                c: db, ldc: rank)
            }
          }
        }
      }
      gradients.accumulate(adapter.upName, upGradient)
    }
    if gradients.wants(adapter.downName) || needsInputGradient {
      // dh_n = s·Bᵀ dy_n, then back through the A convolution.
      var hiddenGradient = Tensor(zeros: hidden.shape)
      if onDNN {
        outputGradient.withUnsafeBufferPointer { dys in
          adapter.up.withUnsafeBufferPointer { bs in
            hiddenGradient.withUnsafeMutableBufferPointer { dh in
              OneDNN.backwardData(
                pointwise, outputGradient: dys.baseAddress!, weights: bs.baseAddress!,
                inputGradient: dh.baseAddress!)
            }
          }
        }
        hiddenGradient.scale(by: adapter.scale)
      } else {
        outputGradient.withUnsafeBufferPointer { dys in
          adapter.up.withUnsafeBufferPointer { bs in
            hiddenGradient.withUnsafeMutableBufferPointer { dh in
              let (bBase, dyBase, dhBase) = (bs.baseAddress!, dys.baseAddress!, dh.baseAddress!)
              Parallel.forEachChunk(batch, grain: 1) { samples in
                for n in samples {
                  BLAS.gemm(
                    transposeA: true, transposeB: false, m: rank, n: pixels, k: outChannels,
                    alpha: adapter.scale, a: bBase, lda: rank,
                    b: dyBase + n * outChannels * pixels, ldb: pixels,
                    c: dhBase + n * rank * pixels, ldc: pixels)
                }
              }
            }
          }
        }
      }
      let down = lowRankDown(adapter)
      let downGeometry = down.geometry(for: input)
      if gradients.wants(adapter.downName) {
        gradients.accumulate(
          adapter.downName,
          down.kernelGradient(input: input, outputGradient: hiddenGradient, downGeometry))
      }
      if needsInputGradient {
        down.addInputGradient(
          hiddenGradient, kernel: adapter.down, into: &inputGradient, downGeometry)
      }
    }
  }
}
