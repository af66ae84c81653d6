import XCTest

@testable import Tensor

/// Large GEMMs are computed in blocks of C shared by the threads; the result must not depend on
/// the thread count.
final class GEMMSplitTests: XCTestCase {
  override func tearDown() {
    BLAS.setThreadCount(1)
    super.tearDown()
  }

  private func product(
    threads: Int, m: Int, n: Int, k: Int, transposeA: Bool, transposeB: Bool, beta: Float
  ) -> [Float] {
    BLAS.setThreadCount(threads)
    var random = RandomStream(seed: UInt64(m * 31 + n))
    let a = Tensor.uniform(shape: [m * k], low: -1, high: 1, random: &random)
    let b = Tensor.uniform(shape: [k * n], low: -1, high: 1, random: &random)
    var c = Tensor.uniform(shape: [m * n], low: -1, high: 1, random: &random)
    a.withUnsafeBufferPointer { a in
      b.withUnsafeBufferPointer { b in
        c.withUnsafeMutableBufferPointer { c in
          BLAS.gemm(
            transposeA: transposeA, transposeB: transposeB, m: m, n: n, k: k, alpha: 0.5,
            a: a.baseAddress!, lda: transposeA ? m : k, b: b.baseAddress!,
            ldb: transposeB ? k : n, beta: beta, c: c.baseAddress!, ldc: n)
        }
      }
    }
    return c.scalars
  }

  func testSplitGEMMsAreBitwiseEqualToOneThread() {
    // Row splits (m ≥ n), column splits (m < n), odd sizes, every transpose, with and without
    // accumulation; all above the split threshold.
    let cases: [(Int, Int, Int)] = [(517, 96, 130), (40, 1031, 70), (257, 257, 64)]
    for (m, n, k) in cases {
      for transposeA in [false, true] {
        for transposeB in [false, true] {
          for beta: Float in [0, 1] {
            let one = product(
              threads: 1, m: m, n: n, k: k, transposeA: transposeA, transposeB: transposeB,
              beta: beta)
            let two = product(
              threads: 2, m: m, n: n, k: k, transposeA: transposeA, transposeB: transposeB,
              beta: beta)
            XCTAssertEqual(one, two, "\(m)×\(n)×\(k) tA \(transposeA) tB \(transposeB) β \(beta)")
          }
        }
      }
    }
  }

  /// Three and four threads too (uneven shares of the blocks).
  func testSplitGEMMsAreBitwiseEqualForEveryThreadCount() {
    for (m, n, k) in [(517, 96, 130), (40, 1031, 70), (2048, 384, 64)] {
      let one = product(threads: 1, m: m, n: n, k: k, transposeA: false, transposeB: true, beta: 1)
      for threads in [3, 4] {
        let many = product(
          threads: threads, m: m, n: n, k: k, transposeA: false, transposeB: true, beta: 1)
        XCTAssertEqual(one, many, "\(m)×\(n)×\(k) on \(threads) threads")
      }
    }
  }

  /// The blocks tile C exactly, in multiples of 16, a power-of-two count where possible.
  func testBlocksTileTheProduct() {
    for (m, n, k) in [(257, 257, 64), (517, 96, 130), (40, 1031, 70), (2048, 1536, 384)] {
      let blocks = GEMMBlocks(m: m, n: n, k: k)
      let extent = blocks.alongRows ? m : n
      XCTAssertGreaterThan(blocks.count, 1, "\(m)×\(n)×\(k)")
      XCTAssertEqual(blocks.range(0).lowerBound, 0)
      XCTAssertEqual(blocks.range(blocks.count - 1).upperBound, extent)
      for index in 1..<blocks.count {
        XCTAssertEqual(blocks.range(index).lowerBound, blocks.range(index - 1).upperBound)
        XCTAssertEqual(blocks.range(index).lowerBound % 16, 0)
      }
    }
    XCTAssertEqual(GEMMBlocks(m: 2048, n: 1536, k: 384).count, 8)
    XCTAssertEqual(GEMMBlocks(m: 64, n: 64, k: 64).count, 1)  // Too small to split.
  }

  /// The split product equals a plain triple loop (so the blocks land in the right places).
  func testSplitGEMMMatchesNaiveProduct() {
    let (m, n, k) = (300, 200, 40)
    let result = product(threads: 2, m: m, n: n, k: k, transposeA: true, transposeB: false, beta: 1)
    var random = RandomStream(seed: UInt64(m * 31 + n))
    let a = Tensor.uniform(shape: [m * k], low: -1, high: 1, random: &random).scalars
    let b = Tensor.uniform(shape: [k * n], low: -1, high: 1, random: &random).scalars
    let c = Tensor.uniform(shape: [m * n], low: -1, high: 1, random: &random).scalars
    var worst: Float = 0
    for i in stride(from: 0, to: m, by: 7) {
      for j in stride(from: 0, to: n, by: 5) {
        var sum: Float = 0
        for p in 0..<k { sum += a[p * m + i] * b[p * n + j] }
        worst = max(worst, abs(result[i * n + j] - (0.5 * sum + c[i * n + j])))
      }
    }
    XCTAssertLessThan(worst, 1e-4)
  }
}
