import VectorKernels

extension KernelSet {
  /// The same loops as `KernelSet.baseline`, compiled here for Haswell (AVX2, FMA, BMI): this
  /// module's build flags are the only difference (Package.swift). Run only on a processor
  /// with those features (`Tensor`'s `VectorKernelChoice` checks).
  public static let avx2 = KernelSet(
    name: "avx2",
    fillNormal: {
      Kernels.fillNormal($0, groups: $1, mean: $2, standardDeviation: $3, multiplyingInPairs: true)
    },
    fillUniform: {
      Kernels.fillUniform($0, groups: $1, low: $2, width: $3, multiplyingInPairs: true)
    },
    fillDropoutMask: {
      Kernels.fillDropoutMask($0, groups: $1, probability: $2, scale: $3, multiplyingInPairs: true)
    },
    gelu: { Kernels.gelu($0, count: $1) },
    geluBackward: { Kernels.geluBackward(input: $0, output: $1, gradient: $2, count: $3) },
    softmax: { Kernels.softmax($0, length: $1) },
    channelMoments: { Kernels.channelMoments($0) },
    channelGradientSums: { Kernels.channelGradientSums($0, gradient: $1, mean: $2, rstd: $3) })
}
