import Tensor

/// loralib's form of a wrapped convolution's adapter (`ConvAdapterForm.loralib`, its
/// ConvLoRA): `B·A` (`out·k × r·k` · `r·k × in·k`) reshaped into a full kernel and added to the
/// frozen one, so the layer runs one convolution with `d·W (+ N) + s·reshape(B·A)`.
extension Conv2d {
  /// The merged kernel: the frozen path's kernel (zero when it is skipped) plus `s·ΔW`.
  func loralibKernel(frozen kernel: Tensor?, _ adapter: LowRankAdapter) -> Tensor {
    var merged = kernel ?? Tensor(zeros: weight.shape)
    merged.add(adapter.up.matmul(adapter.down).reshaped(weight.shape), scaledBy: adapter.scale)
    return merged
  }

  /// `∂/∂B` and `∂/∂A` from the gradient of a unit kernel (`kernelGradient`).
  func accumulateLoRALibGradients(
    unitKernelGradient unit: Tensor, _ adapter: LowRankAdapter, into gradients: inout GradientSet
  ) {
    // ΔW = s·B·A viewed as out·k × in·k: dB = s·G Aᵀ, dA = s·Bᵀ G.
    var merged = unit.reshaped([adapter.up.shape[0], adapter.down.shape[1]])
    merged.scale(by: adapter.scale)
    if gradients.wants(adapter.upName) {
      gradients.accumulate(adapter.upName, merged.matmul(adapter.down, transposeOther: true))
    }
    if gradients.wants(adapter.downName) {
      gradients.accumulate(adapter.downName, adapter.up.matmul(merged, transposeSelf: true))
    }
  }
}
