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
/// computed per sample and group as one GEMM over an im2col buffer.
public struct Conv2d: Sendable {
  public var name: String
  public var weight: Tensor
  public var bias: Tensor?
  public var stride: (Int, Int)
  public var padding: Padding2D
  public var dilation: (Int, Int)
  public var groups: Int

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

  private struct Geometry {
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

  private func geometry(for input: Tensor) -> Geometry {
    precondition(
      input.shape.count == 4 && input.shape[1] == inChannels, "Conv2d \(name): input \(input.shape)"
    )
    let (outHeight, outWidth) = outputSize(height: input.shape[2], width: input.shape[3])
    return Geometry(
      channelsPerGroup: inChannels / groups, outPerGroup: outChannels / groups,
      height: input.shape[2], width: input.shape[3], outHeight: outHeight, outWidth: outWidth,
      kernelHeight: kernelSize.0, kernelWidth: kernelSize.1)
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
          for oh in 0..<g.outHeight {
            let ih = oh * stride.0 - padding.top + i * dilation.0
            let target = row + oh * g.outWidth
            if ih < 0 || ih >= g.height {
              target.update(repeating: 0, count: g.outWidth)
              continue
            }
            let line = plane + ih * g.width
            for ow in 0..<g.outWidth {
              let iw = ow * stride.1 - padding.left + j * dilation.1
              target[ow] = iw >= 0 && iw < g.width ? line[iw] : 0
            }
          }
        }
      }
    }
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
          for oh in 0..<g.outHeight {
            let ih = oh * stride.0 - padding.top + i * dilation.0
            if ih < 0 || ih >= g.height { continue }
            let line = plane + ih * g.width
            let source = row + oh * g.outWidth
            for ow in 0..<g.outWidth {
              let iw = ow * stride.1 - padding.left + j * dilation.1
              if iw >= 0 && iw < g.width { line[iw] += source[ow] }
            }
          }
        }
      }
    }
  }

  public func forward(_ input: Tensor) -> Tensor {
    let g = geometry(for: input)
    let batch = input.shape[0]
    var output = Tensor(zeros: [batch, outChannels, g.outHeight, g.outWidth])
    var columns = [Float](repeating: 0, count: g.patch * g.pixels)
    input.withUnsafeBufferPointer { xs in
      weight.withUnsafeBufferPointer { ws in
        output.withUnsafeMutableBufferPointer { ys in
          columns.withUnsafeMutableBufferPointer { cols in
            for n in 0..<batch {
              for group in 0..<groups {
                let image =
                  xs.baseAddress! + (n * inChannels + group * g.channelsPerGroup) * g.height
                  * g.width
                im2col(image, cols.baseAddress!, g)
                BLAS.gemm(
                  transposeA: false, transposeB: false, m: g.outPerGroup, n: g.pixels, k: g.patch,
                  a: ws.baseAddress! + group * g.outPerGroup * g.patch, lda: g.patch,
                  b: cols.baseAddress!, ldb: g.pixels,
                  c: ys.baseAddress! + (n * outChannels + group * g.outPerGroup) * g.pixels,
                  ldc: g.pixels)
              }
            }
          }
          if let bias {
            bias.withUnsafeBufferPointer { bs in
              for n in 0..<batch {
                for o in 0..<outChannels {
                  let plane = ys.baseAddress! + (n * outChannels + o) * g.pixels
                  for p in 0..<g.pixels { plane[p] += bs[o] }
                }
              }
            }
          }
        }
      }
    }
    return output
  }

  public func backward(
    input: Tensor, outputGradient: Tensor, gradients: inout GradientSet,
    needsInputGradient: Bool = true
  ) -> Tensor? {
    let g = geometry(for: input)
    let batch = input.shape[0]
    let wantsWeight = gradients.wants(weightName)
    var weightGradient = Tensor(zeros: weight.shape)
    var inputGradient = Tensor(zeros: needsInputGradient ? input.shape : [0])
    var columns = [Float](repeating: 0, count: g.patch * g.pixels)
    input.withUnsafeBufferPointer { xs in
      outputGradient.withUnsafeBufferPointer { dys in
        weight.withUnsafeBufferPointer { ws in
          weightGradient.withUnsafeMutableBufferPointer { dws in
            inputGradient.withUnsafeMutableBufferPointer { dxs in
              columns.withUnsafeMutableBufferPointer { cols in
                for n in 0..<batch {
                  for group in 0..<groups {
                    let imageOffset =
                      (n * inChannels + group * g.channelsPerGroup) * g.height * g.width
                    let dy = dys.baseAddress! + (n * outChannels + group * g.outPerGroup) * g.pixels
                    let groupWeight = group * g.outPerGroup * g.patch
                    if wantsWeight {
                      im2col(xs.baseAddress! + imageOffset, cols.baseAddress!, g)
                      BLAS.gemm(
                        transposeA: false, transposeB: true, m: g.outPerGroup, n: g.patch,
                        k: g.pixels, a: dy, lda: g.pixels, b: cols.baseAddress!, ldb: g.pixels,
                        beta: 1, c: dws.baseAddress! + groupWeight, ldc: g.patch)
                    }
                    if needsInputGradient {
                      BLAS.gemm(
                        transposeA: true, transposeB: false, m: g.patch, n: g.pixels,
                        k: g.outPerGroup, a: ws.baseAddress! + groupWeight, lda: g.patch, b: dy,
                        ldb: g.pixels, c: cols.baseAddress!, ldc: g.pixels)
                      col2im(cols.baseAddress!, dxs.baseAddress! + imageOffset, g)
                    }
                  }
                }
              }
            }
          }
        }
      }
    }
    if wantsWeight { gradients.accumulate(weightName, weightGradient) }
    if bias != nil, gradients.wants(biasName) {
      var biasGradient = Tensor(zeros: [outChannels])
      outputGradient.withUnsafeBufferPointer { dys in
        biasGradient.withUnsafeMutableBufferPointer { db in
          for n in 0..<batch {
            for o in 0..<outChannels {
              let plane = dys.baseAddress! + (n * outChannels + o) * g.pixels
              var sum: Float = 0
              for p in 0..<g.pixels { sum += plane[p] }
              db[o] += sum
            }
          }
        }
      }
      gradients.accumulate(biasName, biasGradient)
    }
    return needsInputGradient ? inputGradient : nil
  }
}
