import Tensor

/// `y = x Wᵀ + b` on the last dimension; `W` is `out × in` (the PyTorch layout).
public struct Linear: Sendable {
  /// The node name: the checkpoint prefix of `weight` and `bias`.
  public var name: String
  public var weight: Tensor
  public var bias: Tensor?

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

  /// `input` is `[rows..., in]`; the result is `[rows..., out]`.
  public func forward(_ input: Tensor) -> Tensor {
    let rows = input.count / inFeatures
    precondition(input.shape.last == inFeatures, "Linear \(name): input \(input.shape)")
    var outputShape = input.shape
    outputShape[outputShape.count - 1] = outFeatures
    var output = Tensor(zeros: outputShape)
    input.withUnsafeBufferPointer { x in
      weight.withUnsafeBufferPointer { w in
        output.withUnsafeMutableBufferPointer { y in
          BLAS.gemm(
            transposeA: false, transposeB: true, m: rows, n: outFeatures, k: inFeatures,
            a: x.baseAddress!, lda: inFeatures, b: w.baseAddress!, ldb: inFeatures,
            c: y.baseAddress!, ldc: outFeatures)
        }
      }
    }
    if let bias { output.addRowBias(bias) }
    return output
  }

  /// Accumulates `dW = dyᵀ x` and `db = Σ dy` for the trained parameters; returns `dx = dy W`
  /// when asked.
  public func backward(
    input: Tensor, outputGradient: Tensor, gradients: inout GradientSet,
    needsInputGradient: Bool = true
  ) -> Tensor? {
    let rows = input.count / inFeatures
    if gradients.wants(weightName) {
      var weightGradient = Tensor(zeros: weight.shape)
      outputGradient.withUnsafeBufferPointer { dy in
        input.withUnsafeBufferPointer { x in
          weightGradient.withUnsafeMutableBufferPointer { dw in
            BLAS.gemm(
              transposeA: true, transposeB: false, m: outFeatures, n: inFeatures, k: rows,
              a: dy.baseAddress!, lda: outFeatures, b: x.baseAddress!, ldb: inFeatures,
              c: dw.baseAddress!, ldc: inFeatures)
          }
        }
      }
      gradients.accumulate(weightName, weightGradient)
    }
    if bias != nil, gradients.wants(biasName) {
      gradients.accumulate(biasName, outputGradient.columnSums(columns: outFeatures))
    }
    guard needsInputGradient else { return nil }
    var inputGradient = Tensor(zeros: input.shape)
    outputGradient.withUnsafeBufferPointer { dy in
      weight.withUnsafeBufferPointer { w in
        inputGradient.withUnsafeMutableBufferPointer { dx in
          BLAS.gemm(
            transposeA: false, transposeB: false, m: rows, n: inFeatures, k: outFeatures,
            a: dy.baseAddress!, lda: outFeatures, b: w.baseAddress!, ldb: inFeatures,
            c: dx.baseAddress!, ldc: inFeatures)
        }
      }
    }
    return inputGradient
  }
}
