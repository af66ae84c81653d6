#if canImport(Glibc)
  import Glibc
#elseif canImport(Darwin)
  import Darwin
#endif

/// The heap buffer behind a `Tensor`: `count` float32 values, zero-initialised.
///
/// A class so that tensors can share a buffer cheaply; `Tensor` copies it on the first write to a
/// shared buffer (copy-on-write), checked once per kernel call, never per element.
public final class TensorStorage: @unchecked Sendable {
  public let count: Int
  public let base: UnsafeMutablePointer<Float>

  public init(count: Int, zeroed: Bool = true) {
    precondition(count >= 0, "negative element count")
    self.count = count
    // calloc: zero pages are mapped lazily, so a large zero tensor costs nothing until written;
    // a reused heap block, though, is zero-filled, which a buffer that will be overwritten in
    // full does not need.
    let bytes = Swift.max(count, 1) * MemoryLayout<Float>.stride
    guard let memory = zeroed ? calloc(1, bytes) : malloc(bytes) else {
      preconditionFailure("out of memory allocating \(count) floats")
    }
    base = memory.bindMemory(to: Float.self, capacity: Swift.max(count, 1))
  }

  deinit { free(base) }

  func copy() -> TensorStorage {
    let result = TensorStorage(count: count)
    result.base.update(from: base, count: count)
    return result
  }
}

/// A dense float32 tensor in row-major order.
///
/// A value type: assigning a tensor shares its buffer, and writing through
/// `withUnsafeMutableBufferPointer` copies it first when it is shared.
public struct Tensor: Sendable {
  public private(set) var shape: [Int]
  private var storage: TensorStorage

  /// The number of elements (the product of `shape`).
  public var count: Int { storage.count }

  /// A tensor of zeros.
  public init(zeros shape: [Int]) {
    self.shape = shape
    storage = TensorStorage(count: Tensor.elementCount(of: shape))
  }

  /// A tensor whose elements are unspecified: only for an output that is overwritten in full
  /// before anything reads it (a GEMM with β = 0, a random fill), so it is not zero-filled first.
  public init(uninitialized shape: [Int]) {
    self.shape = shape
    storage = TensorStorage(count: Tensor.elementCount(of: shape), zeroed: false)
  }

  /// A tensor filled with `value`.
  public init(shape: [Int], repeating value: Float) {
    self.init(zeros: shape)
    if value != 0 { storage.base.update(repeating: value, count: count) }
  }

  /// A tensor holding `scalars` in row-major order; their count must match `shape`.
  public init(shape: [Int], scalars: [Float]) {
    precondition(
      Tensor.elementCount(of: shape) == scalars.count,
      "\(scalars.count) values do not fill shape \(shape)")
    self.init(zeros: shape)
    scalars.withUnsafeBufferPointer { storage.base.update(from: $0.baseAddress!, count: count) }
  }

  /// A tensor of `shape` filled by copying `count` values from `source`.
  public init(shape: [Int], copying source: UnsafePointer<Float>) {
    self.init(zeros: shape)
    storage.base.update(from: source, count: count)
  }

  /// The product of the dimensions; 1 for a scalar shape `[]`.
  public static func elementCount(of shape: [Int]) -> Int {
    shape.reduce(1, *)
  }

  /// All elements, row-major.
  public var scalars: [Float] {
    Array(UnsafeBufferPointer(start: storage.base, count: count))
  }

  /// The same elements under another shape with the same element count (shares the buffer).
  public func reshaped(_ newShape: [Int]) -> Tensor {
    precondition(
      Tensor.elementCount(of: newShape) == count, "cannot reshape \(shape) to \(newShape)")
    var result = self
    result.shape = newShape
    return result
  }

  /// Reads the elements.
  public func withUnsafeBufferPointer<Result>(
    _ body: (UnsafeBufferPointer<Float>) throws -> Result
  ) rethrows -> Result {
    try body(UnsafeBufferPointer(start: storage.base, count: count))
  }

  /// Writes the elements; copies the buffer first when another tensor shares it.
  public mutating func withUnsafeMutableBufferPointer<Result>(
    _ body: (UnsafeMutableBufferPointer<Float>) throws -> Result
  ) rethrows -> Result {
    if !isKnownUniquelyReferenced(&storage) { storage = storage.copy() }
    return try body(UnsafeMutableBufferPointer(start: storage.base, count: count))
  }

  /// One element by its row-major index (for tests and small bookkeeping, not hot loops).
  public subscript(flat index: Int) -> Float {
    get {
      precondition(index >= 0 && index < count, "index \(index) out of range 0..<\(count)")
      return storage.base[index]
    }
    set {
      precondition(index >= 0 && index < count, "index \(index) out of range 0..<\(count)")
      withUnsafeMutableBufferPointer { $0[index] = newValue }
    }
  }

  /// True when both tensors have the same shape and bitwise-identical elements.
  public func isBitwiseEqual(to other: Tensor) -> Bool {
    guard shape == other.shape else { return false }
    return withUnsafeBufferPointer { a in
      other.withUnsafeBufferPointer { b in
        for index in 0..<a.count where a[index].bitPattern != b[index].bitPattern {
          return false
        }
        return true
      }
    }
  }

  /// The largest absolute element (0 for an empty tensor).
  public var maxAbsolute: Float {
    withUnsafeBufferPointer { values in
      var result: Float = 0
      for value in values { result = Swift.max(result, Swift.abs(value)) }
      return result
    }
  }

  /// The largest absolute difference to a tensor of the same shape.
  public func maxAbsoluteDifference(to other: Tensor) -> Float {
    precondition(shape == other.shape, "shapes \(shape) and \(other.shape) differ")
    return withUnsafeBufferPointer { a in
      other.withUnsafeBufferPointer { b in
        var result: Float = 0
        for index in 0..<a.count { result = Swift.max(result, Swift.abs(a[index] - b[index])) }
        return result
      }
    }
  }
}
