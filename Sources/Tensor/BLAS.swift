import CBLAS
import Synchronization

#if canImport(Glibc)
  import Glibc
#endif

/// The OpenBLAS calls surgeon uses, with Swift argument labels.
public enum BLAS {
  /// Sets the number of threads surgeon's kernels and GEMMs use for every later call
  /// (process-wide).
  ///
  /// OpenBLAS itself always runs single-threaded: a large GEMM is split into one block of `C`
  /// per thread on surgeon's own pool (`Parallel`), so there is one set of worker threads, not
  /// two contending for the same cores (measured on a MiniLM training step with noise: 1.29 s
  /// with OpenBLAS's threads, 1.08 s split; docs/performance.md).
  public static func setThreadCount(_ count: Int) {
    openblas_set_num_threads(1)
    Parallel.threadCount = Swift.max(1, count)
  }

  /// The threads surgeon's GEMMs and kernels use.
  public static var threadCount: Int { Parallel.threadCount }

  /// OpenBLAS's build description, including the kernel family it picked for this CPU.
  public static var configuration: String {
    guard let text = openblas_get_config() else { return "unknown" }
    return String(cString: text)
  }

  /// `C = alpha · op(A) · op(B) + beta · C` on row-major matrices: `op(A)` is `m × k`,
  /// `op(B)` is `k × n`, `C` is `m × n`; `lda`, `ldb`, `ldc` are the row strides as stored.
  @inline(__always)
  public static func gemm(
    transposeA: Bool, transposeB: Bool, m: Int, n: Int, k: Int, alpha: Float = 1,
    a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int, beta: Float = 0,
    c: UnsafeMutablePointer<Float>, ldc: Int
  ) {
    if m == 0 || n == 0 { return }
    if let recorder = GEMMRecorder.active {
      recorder.record(
        GEMMCall(transposeA: transposeA, transposeB: transposeB, m: m, n: n, k: k, beta: beta))
    }
    let blocks = GEMMBlocks(m: m, n: n, k: k)
    if blocks.count > 1 {
      // Each block is one single-threaded sgemm on surgeon's pool; which thread runs it is the
      // only thing the thread count changes.
      Parallel.forEachChunk(blocks.count, grain: 1) { parts in
        for part in parts {
          let range = blocks.range(part)
          if blocks.alongRows {
            cblas_sgemm(
              CblasRowMajor, transposeA ? CblasTrans : CblasNoTrans,
              transposeB ? CblasTrans : CblasNoTrans, Int32(range.count), Int32(n), Int32(k),
              alpha, a + (transposeA ? range.lowerBound : range.lowerBound * lda), Int32(lda), b,
              Int32(ldb), beta, c + range.lowerBound * ldc, Int32(ldc))
          } else {
            cblas_sgemm(
              CblasRowMajor, transposeA ? CblasTrans : CblasNoTrans,
              transposeB ? CblasTrans : CblasNoTrans, Int32(m), Int32(range.count), Int32(k),
              alpha, a, Int32(lda), b + (transposeB ? range.lowerBound * ldb : range.lowerBound),
              Int32(ldb), beta, c + range.lowerBound, Int32(ldc))
          }
        }
      }
      return
    }
    cblas_sgemm(
      CblasRowMajor, transposeA ? CblasTrans : CblasNoTrans, transposeB ? CblasTrans : CblasNoTrans,
      Int32(m), Int32(n), Int32(k), alpha, a, Int32(lda), b, Int32(ldb), beta, c, Int32(ldc))
  }
}

extension Tensor {
  /// The matrix product of two 2-D tensors, `op(self) · op(other)`.
  public func matmul(_ other: Tensor, transposeSelf: Bool = false, transposeOther: Bool = false)
    -> Tensor
  {
    precondition(shape.count == 2 && other.shape.count == 2, "matmul takes 2-D tensors")
    let m = transposeSelf ? shape[1] : shape[0]
    let k = transposeSelf ? shape[0] : shape[1]
    let otherK = transposeOther ? other.shape[1] : other.shape[0]
    let n = transposeOther ? other.shape[0] : other.shape[1]
    precondition(k == otherK, "matmul: inner dimensions \(k) and \(otherK) differ")
    var result = Tensor(uninitialized: [m, n])
    withUnsafeBufferPointer { a in
      other.withUnsafeBufferPointer { b in
        result.withUnsafeMutableBufferPointer { c in
          BLAS.gemm(
            transposeA: transposeSelf, transposeB: transposeOther, m: m, n: n, k: k,
            a: a.baseAddress!, lda: shape[1], b: b.baseAddress!, ldb: other.shape[1],
            c: c.baseAddress!, ldc: n)
        }
      }
    }
    return result
  }
}

/// Process-wide allocator tuning.
public enum Memory {
  /// Keeps freed tensor buffers (up to 32 MB each) in the heap for reuse instead of returning
  /// them to the kernel.
  ///
  /// By default glibc maps large blocks afresh and unmaps them when freed, so every training
  /// step page-faulted in and zeroed its activations again (`clear_page_erms` was 6% of a MiniLM
  /// step). Call once at start-up.
  public static func keepFreedBuffersMapped() {
    _ = mallopt(M_MMAP_THRESHOLD, 32 << 20)
    _ = mallopt(M_TRIM_THRESHOLD, 1 << 30)
  }
}

/// The blocks of `C` a large GEMM is computed in, one `cblas_sgemm` call each.
///
/// They are a function of the shape alone, never of the thread count: every element of `C` comes
/// from the same call (same sizes, same pointers, same `k` loop) however many threads share the
/// blocks, so the result is bitwise the same for any thread count under any kernel. Splitting
/// per thread instead is not: OpenBLAS's kernels handle the rows or columns left over after their
/// register tiles with other code, in another summation order (Prescott's SSE3 kernels do), and a
/// per-thread split moves which rows are left over.
public struct GEMMBlocks: Equatable, Sendable {
  /// True: blocks of rows of `C` (when `m ≥ n`); false: blocks of columns.
  public let alongRows: Bool
  /// Rows (or columns) per block; the last block may be shorter.
  public let size: Int
  public let count: Int
  let extent: Int

  public init(m: Int, n: Int, k: Int) {
    alongRows = m >= n
    extent = alongRows ? m : n
    // Below ~4 MFLOP a split costs more than it saves.
    guard 2 * m * n * k >= 4 << 20, extent >= 32 else {
      (size, count) = (Swift.max(1, extent), 1)
      return
    }
    // Blocks of about 192 or more rows (each call repacks the other operand, so fewer, larger
    // blocks cost less), a power of two of them so 2, 4, 8 … threads share them evenly, at most 32.
    var blocks = 2
    while blocks * 2 <= Swift.min(32, extent / 192) { blocks *= 2 }
    // Multiples of 16 rows keep most kernels' register tiles (4, 8 or 16 rows) whole.
    let size = ((extent + blocks - 1) / blocks + 15) / 16 * 16
    self.size = size
    count = (extent + size - 1) / size
  }

  /// The rows (or columns) of block `index`.
  public func range(_ index: Int) -> Range<Int> {
    index * size..<Swift.min(extent, (index + 1) * size)
  }
}

/// The shape of one `BLAS.gemm` call.
public struct GEMMCall: Hashable, Sendable {
  public var transposeA: Bool
  public var transposeB: Bool
  public var m: Int
  public var n: Int
  public var k: Int
  public var beta: Float

  public init(transposeA: Bool, transposeB: Bool, m: Int, n: Int, k: Int, beta: Float) {
    (self.transposeA, self.transposeB) = (transposeA, transposeB)
    (self.m, self.n, self.k, self.beta) = (m, n, k, beta)
  }

  /// Multiply–adds count twice.
  public var flops: Double { 2 * Double(m) * Double(n) * Double(k) }
}

/// Records the shape of every `BLAS.gemm` call made inside `record(_:)`, so a benchmark can time
/// `cblas_sgemm` alone on exactly the GEMMs a workload makes.
public final class GEMMRecorder: Sendable {
  nonisolated(unsafe) static var active: GEMMRecorder?
  private let calls = Mutex<[GEMMCall]>([])

  private init() {}

  func record(_ call: GEMMCall) {
    calls.withLock { $0.append(call) }
  }

  /// The GEMMs `body` made, in call order. Not reentrant; meant for benchmarks.
  public static func record(_ body: () throws -> Void) rethrows -> [GEMMCall] {
    let recorder = GEMMRecorder()
    active = recorder
    defer { active = nil }
    try body()
    return recorder.calls.withLock { $0 }
  }
}
