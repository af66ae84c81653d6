import Tensor

/// Layer normalisation over the last dimension, with an affine weight and bias.
public struct LayerNorm: Sendable {
  public var name: String
  public var weight: Tensor
  public var bias: Tensor
  public var epsilon: Float

  public init(name: String, weight: Tensor, bias: Tensor, epsilon: Float) {
    self.name = name
    self.weight = weight
    self.bias = bias
    self.epsilon = epsilon
  }

  public init(name: String, features: Int, epsilon: Float) {
    self.init(
      name: name, weight: Tensor(shape: [features], repeating: 1), bias: Tensor(zeros: [features]),
      epsilon: epsilon)
  }

  public var features: Int { weight.count }
  public var weightName: String { name + ".weight" }
  public var biasName: String { name + ".bias" }

  /// What backward needs: the input and each row's mean and reciprocal standard deviation.
  public struct Cache: Sendable {
    public var input: Tensor
    public var mean: [Float]
    public var reciprocalStandardDeviation: [Float]
  }

  public func forward(_ input: Tensor) -> (output: Tensor, cache: Cache) {
    let columns = features
    let rows = input.count / columns
    var output = Tensor(uninitialized: input.shape)
    var means = [Float](repeating: 0, count: rows)
    var rstds = [Float](repeating: 0, count: rows)
    input.withUnsafeBufferPointer { xs in
      weight.withUnsafeBufferPointer { ws in
        bias.withUnsafeBufferPointer { bs in
          output.withUnsafeMutableBufferPointer { ys in
            means.withUnsafeMutableBufferPointer { means in
              rstds.withUnsafeMutableBufferPointer { rstds in
                Parallel.forEachChunk(rows, grain: 32) { chunk in
                  for row in chunk {
                    let x = xs.baseAddress! + row * columns
                    let y = ys.baseAddress! + row * columns
                    // Eight-lane sums, reduced at the end (the same for any thread count).
                    var laneSum = VectorMath.Lanes()
                    var c = 0
                    while c + 8 <= columns {
                      laneSum += VectorMath.load(x + c)
                      c += 8
                    }
                    var sum = laneSum.sum()
                    for k in c..<columns { sum += x[k] }
                    let mean = sum / Float(columns)
                    let meanLanes = VectorMath.Lanes(repeating: mean)
                    var laneSquares = VectorMath.Lanes()
                    c = 0
                    while c + 8 <= columns {
                      let centred = VectorMath.load(x + c) - meanLanes
                      laneSquares += centred * centred
                      c += 8
                    }
                    var squares = laneSquares.sum()
                    for k in c..<columns { squares += (x[k] - mean) * (x[k] - mean) }
                    let rstd = 1 / (squares / Float(columns) + epsilon).squareRoot()
                    let rstdLanes = VectorMath.Lanes(repeating: rstd)
                    c = 0
                    while c < columns {
                      let n = Swift.min(8, columns - c)
                      let normalized = (VectorMath.load(x + c, count: n) - meanLanes) * rstdLanes
                      let scaled =
                        normalized * VectorMath.load(ws.baseAddress! + c, count: n)
                        + VectorMath.load(bs.baseAddress! + c, count: n)
                      VectorMath.store(scaled, to: y + c, count: n)
                      c += 8
                    }
                    means[row] = mean
                    rstds[row] = rstd
                  }
                }
              }
            }
          }
        }
      }
    }
    return (output, Cache(input: input, mean: means, reciprocalStandardDeviation: rstds))
  }

  public func backward(cache: Cache, outputGradient: Tensor, gradients: inout GradientSet)
    -> Tensor
  {
    let columns = features
    let rows = cache.input.count / columns
    var inputGradient = Tensor(zeros: cache.input.shape)
    var weightGradient = Tensor(zeros: [columns])
    var biasGradient = Tensor(zeros: [columns])
    cache.input.withUnsafeBufferPointer { xs in
      outputGradient.withUnsafeBufferPointer { dys in
        weight.withUnsafeBufferPointer { ws in
          inputGradient.withUnsafeMutableBufferPointer { dxs in
            // dx row by row in parallel; each row's output is written by one thread.
            Parallel.forEachChunk(rows, grain: 32) { chunk in
              for row in chunk {
                let x = xs.baseAddress! + row * columns
                let dy = dys.baseAddress! + row * columns
                let dx = dxs.baseAddress! + row * columns
                let mean = cache.mean[row]
                let rstd = cache.reciprocalStandardDeviation[row]
                var meanGradient: Float = 0
                var meanGradientNorm: Float = 0
                for c in 0..<columns {
                  let normGradient = dy[c] * ws[c]
                  meanGradient += normGradient
                  meanGradientNorm += normGradient * (x[c] - mean) * rstd
                }
                meanGradient /= Float(columns)
                meanGradientNorm /= Float(columns)
                for c in 0..<columns {
                  let norm = (x[c] - mean) * rstd
                  dx[c] = rstd * (dy[c] * ws[c] - meanGradient - norm * meanGradientNorm)
                }
              }
            }
          }
        }
        // dγ and dβ sum over rows: serial, in row order, so they do not depend on threads.
        guard gradients.wants(weightName) || gradients.wants(biasName) else { return }
        weightGradient.withUnsafeMutableBufferPointer { dw in
          biasGradient.withUnsafeMutableBufferPointer { db in
            for row in 0..<rows {
              let x = xs.baseAddress! + row * columns
              let dy = dys.baseAddress! + row * columns
              let mean = cache.mean[row]
              let rstd = cache.reciprocalStandardDeviation[row]
              for c in 0..<columns {
                dw[c] += dy[c] * (x[c] - mean) * rstd
                db[c] += dy[c]
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
