import Dispatch

/// Splits elementwise and row-wise work across threads.
///
/// Only work whose every output element is computed by one thread from the same inputs runs
/// here, so results are bitwise the same for any thread count; reductions stay serial.
public enum Parallel {
  /// Threads for surgeon's own kernels (OpenBLAS has its own pool; `BLAS.setThreadCount` sets
  /// both).
  nonisolated(unsafe) public static var threadCount = 1

  /// Calls `body` on consecutive chunks of `0..<count`, each at least `grain` long, in parallel.
  @inline(__always)
  public static func forEachChunk(
    _ count: Int, grain: Int = 16_384, _ body: (Range<Int>) -> Void
  ) {
    let chunks = min(threadCount, max(1, count / max(1, grain)))
    if chunks <= 1 {
      body(0..<count)
      return
    }
    let size = (count + chunks - 1) / chunks
    withoutActuallyEscaping(body) { body in
      // The chunks touch disjoint outputs; the box only carries the closure across threads.
      let task = UncheckedSendable(body)
      DispatchQueue.concurrentPerform(iterations: chunks) { chunk in
        let start = chunk * size
        let end = min(count, start + size)
        if start < end { task.value(start..<end) }
      }
    }
  }
}

/// Carries a value the caller guarantees is used race-free across a concurrency boundary.
struct UncheckedSendable<Value>: @unchecked Sendable {
  let value: Value
  init(_ value: Value) { self.value = value }
}
