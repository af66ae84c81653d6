import Tensor

#if canImport(Glibc)
  import Glibc
#elseif canImport(Darwin)
  import Darwin
#endif

/// The pointwise nonlinearities of BERT (`hidden_act`), the pooler and VGG.
public enum Activation: String, Sendable, CaseIterable {
  /// Exact GELU, `x · Φ(x)` with the error function (Hugging Face `gelu`).
  case gelu
  /// The tanh approximation (Hugging Face `gelu_new`).
  case geluTanh = "gelu_new"
  case relu
  case tanh

  public func forward(_ input: Tensor) -> Tensor {
    var output = input
    output.withUnsafeMutableBufferPointer { values in
      let base = values.baseAddress!
      Parallel.forEachChunk(values.count) { range in
        let v = base + range.lowerBound
        let n = range.count
        switch self {
        case .gelu:
          VectorKernelChoice.active.gelu(v, n)
        case .geluTanh:
          let c = (2 / Float.pi).squareRoot()
          for i in 0..<n {
            let x = v[i]
            v[i] = 0.5 * x * (1 + tanhf(c * (x + 0.044715 * x * x * x)))
          }
        case .relu:
          // Eight lanes at a time (NaN maps to 0, as `x > 0 ? x : 0`).
          VectorMath.transform(v, count: n) { x in
            VectorMath.select(x, otherwise: VectorMath.Lanes(), mask: Activation.positiveMask(x))
          }
        case .tanh:
          for i in 0..<n { v[i] = tanhf(v[i]) }
        }
      }
    }
    return output
  }

  /// All ones in lanes where `x > 0` (NaN and ±0 excluded), else 0: the bits of a positive
  /// float less one lie in `0 ..< 0x7F80_0000`. Bit operations, because a mask select ran lane
  /// by lane.
  @inline(__always)
  static func positiveMask(_ x: VectorMath.Lanes) -> SIMD8<Int32> {
    let belowOne = unsafeBitCast(x, to: SIMD8<Int32>.self) &- 1
    return ((belowOne &- 0x7F80_0000) &>> 31) & ~(belowOne &>> 31)
  }

  /// `dx` from the forward input `x`, its output `y` and `dy`.
  public func backward(input: Tensor, output: Tensor, outputGradient: Tensor) -> Tensor {
    var result = outputGradient
    input.withUnsafeBufferPointer { xs in
      output.withUnsafeBufferPointer { ys in
        result.withUnsafeMutableBufferPointer { gs in
          let (xBase, yBase, gBase) = (xs.baseAddress!, ys.baseAddress!, gs.baseAddress!)
          Parallel.forEachChunk(gs.count) { range in
            let x = xBase + range.lowerBound
            let y = yBase + range.lowerBound
            let g = gBase + range.lowerBound
            let n = range.count
            switch self {
            case .gelu:
              VectorKernelChoice.active.geluBackward(x, y, g, n)
            case .geluTanh:
              let c = (2 / Float.pi).squareRoot()
              for i in 0..<n {
                let u = x[i]
                let t = tanhf(c * (u + 0.044715 * u * u * u))
                let dInner = c * (1 + 3 * 0.044715 * u * u)
                g[i] *= 0.5 * (1 + t) + 0.5 * u * (1 - t * t) * dInner
              }
            case .relu:
              var i = 0
              while i < n {
                let count = min(8, n - i)
                let positive = Activation.positiveMask(VectorMath.load(x + i, count: count))
                let kept = VectorMath.select(
                  VectorMath.load(g + i, count: count), otherwise: VectorMath.Lanes(),
                  mask: positive)
                VectorMath.store(kept, to: g + i, count: count)
                i += 8
              }
            case .tanh:
              for i in 0..<n { g[i] *= 1 - y[i] * y[i] }
            }
          }
        }
      }
    }
    return result
  }
}
