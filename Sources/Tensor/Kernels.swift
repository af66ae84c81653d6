/// Elementwise and reduction kernels on whole tensors. Each takes its buffer pointers once,
/// outside the loop, so the loops compile to plain vector code in release builds.
extension Tensor {
  /// `self + other`, same shape.
  public static func + (lhs: Tensor, rhs: Tensor) -> Tensor {
    precondition(lhs.shape == rhs.shape, "add: shapes \(lhs.shape) and \(rhs.shape) differ")
    var result = lhs
    result.add(rhs)
    return result
  }

  /// `self += scale · other`, same element count.
  public mutating func add(_ other: Tensor, scaledBy scale: Float = 1) {
    precondition(count == other.count, "add: \(count) and \(other.count) elements")
    other.withUnsafeBufferPointer { source in
      withUnsafeMutableBufferPointer { target in
        let s = source.baseAddress!
        let t = target.baseAddress!
        Parallel.forEachChunk(target.count) { range in
          if scale == 1 {
            for i in range { t[i] += s[i] }
          } else {
            for i in range { t[i] += scale * s[i] }
          }
        }
      }
    }
  }

  /// `self *= other` elementwise, same element count.
  public mutating func multiply(by other: Tensor) {
    precondition(count == other.count, "multiply: \(count) and \(other.count) elements")
    other.withUnsafeBufferPointer { source in
      withUnsafeMutableBufferPointer { target in
        let s = source.baseAddress!
        let t = target.baseAddress!
        Parallel.forEachChunk(target.count) { range in
          for i in range { t[i] *= s[i] }
        }
      }
    }
  }

  /// The elementwise product `a ⊙ b`, shaped like `a`, in one pass (no copy of `a` first).
  public static func product(_ a: Tensor, _ b: Tensor) -> Tensor {
    precondition(a.count == b.count, "product: \(a.count) and \(b.count) elements")
    var result = Tensor(uninitialized: a.shape)
    a.withUnsafeBufferPointer { first in
      b.withUnsafeBufferPointer { second in
        result.withUnsafeMutableBufferPointer { target in
          let (x, y, t) = (first.baseAddress!, second.baseAddress!, target.baseAddress!)
          Parallel.forEachChunk(target.count) { range in
            for i in range { t[i] = x[i] * y[i] }
          }
        }
      }
    }
    return result
  }

  /// `self *= factor`.
  public mutating func scale(by factor: Float) {
    withUnsafeMutableBufferPointer { target in
      let t = target.baseAddress!
      Parallel.forEachChunk(target.count) { range in
        for i in range { t[i] *= factor }
      }
    }
  }

  /// A tensor of `shape` whose every row (the last dimension) is `row`.
  public init(shape: [Int], repeatingRow row: Tensor) {
    let columns = row.count
    self.init(uninitialized: shape)
    precondition(columns > 0 && count % columns == 0, "row of \(columns) does not fit \(shape)")
    row.withUnsafeBufferPointer { source in
      withUnsafeMutableBufferPointer { target in
        let (s, t) = (source.baseAddress!, target.baseAddress!)
        Parallel.forEachChunk(target.count / columns, grain: max(1, 16_384 / columns)) { chunk in
          for index in chunk { (t + index * columns).update(from: s, count: columns) }
        }
      }
    }
  }

  /// Adds `bias` (length = last dimension) to every row.
  public mutating func addRowBias(_ bias: Tensor) {
    let columns = bias.count
    precondition(columns > 0 && count % columns == 0, "bias of \(columns) does not fit \(shape)")
    bias.withUnsafeBufferPointer { b in
      withUnsafeMutableBufferPointer { target in
        let rows = target.count / columns
        let t = target.baseAddress!
        let bb = b.baseAddress!
        Parallel.forEachChunk(rows, grain: max(1, 16_384 / columns)) { chunk in
          for row in chunk {
            let r = t + row * columns
            for column in 0..<columns { r[column] += bb[column] }
          }
        }
      }
    }
  }

  /// The sum over rows of a tensor viewed as `rows × columns` (the gradient of a row bias).
  public func columnSums(columns: Int) -> Tensor {
    precondition(columns > 0 && count % columns == 0, "\(columns) columns do not fit \(shape)")
    var result = Tensor(zeros: [columns])
    withUnsafeBufferPointer { source in
      result.withUnsafeMutableBufferPointer { target in
        let s = source.baseAddress!
        let t = target.baseAddress!
        for row in 0..<(source.count / columns) {
          let r = s + row * columns
          for column in 0..<columns { t[column] += r[column] }
        }
      }
    }
    return result
  }

  /// The sum of all elements, accumulated in double precision.
  public var sum: Double {
    withUnsafeBufferPointer { values in
      var total = 0.0
      for value in values { total += Double(value) }
      return total
    }
  }

  /// The dot product with a tensor of the same element count, accumulated in double precision.
  public func dot(_ other: Tensor) -> Double {
    precondition(count == other.count, "dot: \(count) and \(other.count) elements")
    return withUnsafeBufferPointer { a in
      other.withUnsafeBufferPointer { b in
        var total = 0.0
        for i in 0..<a.count { total += Double(a[i]) * Double(b[i]) }
        return total
      }
    }
  }

  /// Every element passed through `transform` (for set-up code, not hot loops).
  public func map(_ transform: (Float) -> Float) -> Tensor {
    var result = self
    result.withUnsafeMutableBufferPointer { values in
      for i in 0..<values.count { values[i] = transform(values[i]) }
    }
    return result
  }

  /// True when no element is NaN or infinite.
  public var isFinite: Bool {
    withUnsafeBufferPointer { values in values.allSatisfy { $0.isFinite } }
  }
}
