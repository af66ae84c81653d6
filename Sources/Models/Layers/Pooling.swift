import Tensor

#if canImport(Glibc)
  import Glibc
#elseif canImport(Darwin)
  import Darwin
#endif

/// Max pooling over `N × C × H × W` windows (padding counts as −∞; floor output size).
public struct MaxPool2d: Sendable {
  public var kernel: (Int, Int)
  public var stride: (Int, Int)
  public var padding: (Int, Int)

  public init(kernel: (Int, Int), stride: (Int, Int)? = nil, padding: (Int, Int) = (0, 0)) {
    self.kernel = kernel
    self.stride = stride ?? kernel
    self.padding = padding
  }

  public func outputSize(height: Int, width: Int) -> (Int, Int) {
    (
      (height + 2 * padding.0 - kernel.0) / stride.0 + 1,
      (width + 2 * padding.1 - kernel.1) / stride.1 + 1
    )
  }

  /// The output and, per output element, the flat input index of its maximum (for backward).
  public func forward(_ input: Tensor) -> (output: Tensor, argmax: [Int32]) {
    let (batch, channels, height, width) = (
      input.shape[0], input.shape[1], input.shape[2], input.shape[3]
    )
    let (outHeight, outWidth) = outputSize(height: height, width: width)
    // Every element is written below.
    var output = Tensor(uninitialized: [batch, channels, outHeight, outWidth])
    var argmax = [Int32](repeating: 0, count: output.count)
    let (kernel, stride, padding) = (kernel, stride, padding)
    let (planeSize, outPlaneSize) = (height * width, outHeight * outWidth)
    input.withUnsafeBufferPointer { xs in
      output.withUnsafeMutableBufferPointer { ys in
        argmax.withUnsafeMutableBufferPointer { indices in
          let (xBase, yBase, indexBase) = (xs.baseAddress!, ys.baseAddress!, indices.baseAddress!)
          // Planes are independent: any split gives the same values.
          Parallel.forEachChunk(batch * channels, grain: 8) { planes in
            for plane in planes {
              let x = xBase + plane * planeSize
              let y = yBase + plane * outPlaneSize
              let index = indexBase + plane * outPlaneSize
              for oh in 0..<outHeight {
                // The window's rows and columns inside the input (padding is skipped).
                let firstRow = Swift.max(0, padding.0 - oh * stride.0)
                let rows =
                  firstRow..<Swift.max(
                    firstRow, Swift.min(kernel.0, height + padding.0 - oh * stride.0))
                for ow in 0..<outWidth {
                  let firstColumn = Swift.max(0, padding.1 - ow * stride.1)
                  let columns =
                    firstColumn..<Swift.max(
                      firstColumn, Swift.min(kernel.1, width + padding.1 - ow * stride.1))
                  func start(_ i: Int) -> Int {
                    (oh * stride.0 - padding.0 + i) * width - padding.1 + ow * stride.1
                  }
                  guard !rows.isEmpty, !columns.isEmpty else {
                    (y[oh * outWidth + ow], index[oh * outWidth + ow]) = (-.infinity, -1)
                    continue
                  }
                  // Selects, not branches (which way a comparison goes is a coin flip here, and
                  // mispredicted branches made this pass 12% of a VGG step); a window holding a
                  // NaN is redone below with PyTorch's rule.
                  var bestIndex = start(rows.lowerBound) + columns.lowerBound
                  var best = x[bestIndex]
                  var sawNaN = false
                  for i in rows {
                    let rowStart = start(i)
                    for j in columns {
                      let value = x[rowStart + j]
                      let greater = value > best
                      best = greater ? value : best
                      bestIndex = greater ? rowStart + j : bestIndex
                      sawNaN = sawNaN || value.isNaN
                    }
                  }
                  if sawNaN {
                    bestIndex = -1
                    for i in rows {
                      let rowStart = start(i)
                      for j in columns {
                        let value = x[rowStart + j]
                        // PyTorch keeps the first maximum, and NaN wins.
                        if value > best || value.isNaN || bestIndex < 0 {
                          best = value
                          bestIndex = rowStart + j
                          if value.isNaN { break }
                        }
                      }
                    }
                  }
                  y[oh * outWidth + ow] = best
                  index[oh * outWidth + ow] = Int32(plane * planeSize + bestIndex)
                }
              }
            }
          }
        }
      }
    }
    return (output, argmax)
  }

  public func backward(argmax: [Int32], inputShape: [Int], outputGradient: Tensor) -> Tensor {
    var inputGradient = Tensor(zeros: inputShape)
    outputGradient.withUnsafeBufferPointer { dys in
      inputGradient.withUnsafeMutableBufferPointer { dxs in
        // Each output's maximum lies in its own plane: planes in parallel, in order within one.
        let planes = inputShape[0] * inputShape[1]
        guard planes > 0, argmax.count % planes == 0 else {
          for (out, index) in argmax.enumerated() { dxs[Int(index)] += dys[out] }
          return
        }
        let perPlane = argmax.count / planes
        let (dyBase, dxBase) = (dys.baseAddress!, dxs.baseAddress!)
        argmax.withUnsafeBufferPointer { indices in
          let indexBase = indices.baseAddress!
          Parallel.forEachChunk(planes, grain: 8) { chunk in
            for out in (chunk.lowerBound * perPlane)..<(chunk.upperBound * perPlane) {
              dxBase[Int(indexBase[out])] += dyBase[out]
            }
          }
        }
      }
    }
    return inputGradient
  }
}

/// PyTorch's `AdaptiveAvgPool2d`: output cell `i` averages input rows
/// `floor(i·H/out) ..< ceil((i+1)·H/out)` (and likewise columns).
public struct AdaptiveAvgPool2d: Sendable {
  public var outputHeight: Int
  public var outputWidth: Int

  public init(outputHeight: Int, outputWidth: Int) {
    self.outputHeight = outputHeight
    self.outputWidth = outputWidth
  }

  private func window(_ index: Int, _ inputSize: Int, _ outputSize: Int) -> Range<Int> {
    let start = index * inputSize / outputSize
    let end = ((index + 1) * inputSize + outputSize - 1) / outputSize
    return start..<end
  }

  public func forward(_ input: Tensor) -> Tensor {
    let (batch, channels, height, width) = (
      input.shape[0], input.shape[1], input.shape[2], input.shape[3]
    )
    var output = Tensor(zeros: [batch, channels, outputHeight, outputWidth])
    input.withUnsafeBufferPointer { xs in
      output.withUnsafeMutableBufferPointer { ys in
        for plane in 0..<(batch * channels) {
          let x = xs.baseAddress! + plane * height * width
          for oh in 0..<outputHeight {
            let rows = window(oh, height, outputHeight)
            for ow in 0..<outputWidth {
              let columns = window(ow, width, outputWidth)
              var sum: Float = 0
              for ih in rows { for iw in columns { sum += x[ih * width + iw] } }
              ys[(plane * outputHeight + oh) * outputWidth + ow] =
                sum / Float(rows.count * columns.count)
            }
          }
        }
      }
    }
    return output
  }

  public func backward(inputShape: [Int], outputGradient: Tensor) -> Tensor {
    let (batch, channels, height, width) = (
      inputShape[0], inputShape[1], inputShape[2], inputShape[3]
    )
    var inputGradient = Tensor(zeros: inputShape)
    outputGradient.withUnsafeBufferPointer { dys in
      inputGradient.withUnsafeMutableBufferPointer { dxs in
        for plane in 0..<(batch * channels) {
          let dx = dxs.baseAddress! + plane * height * width
          for oh in 0..<outputHeight {
            let rows = window(oh, height, outputHeight)
            for ow in 0..<outputWidth {
              let columns = window(ow, width, outputWidth)
              let share =
                dys[(plane * outputHeight + oh) * outputWidth + ow]
                / Float(rows.count * columns.count)
              for ih in rows { for iw in columns { dx[ih * width + iw] += share } }
            }
          }
        }
      }
    }
    return inputGradient
  }
}
