import XCTest

@testable import Tensor

/// The batched GEMMs attention runs on: every product pattern it uses, against a naive product in
/// double precision, and the same bits for any thread count.
final class BatchedGEMMTests: XCTestCase {
  override func tearDown() {
    BLAS.setThreadCount(1)
    super.tearDown()
  }

  /// Attention's shapes: `samples · length` rows of `heads · headSize` features, and dense
  /// `length × length` score blocks.
  private struct Layout {
    let samples: Int
    let heads: Int
    let length: Int
    let headSize: Int
    var hidden: Int { heads * headSize }
    var headGrid: MatrixGrid {
      MatrixGrid(sample: length * hidden, head: headSize, row: hidden, column: 1)
    }
    var scoreGrid: MatrixGrid {
      MatrixGrid(sample: heads * length * length, head: length * length, row: length, column: 1)
    }
    var activationCount: Int { samples * length * hidden }
    var scoreCount: Int { samples * heads * length * length }
  }

  /// One product pattern: operand sizes, grids and the GEMM's m, n, k.
  private struct Pattern {
    let name: String
    let aCount: Int
    let aGrid: MatrixGrid
    let bCount: Int
    let bGrid: MatrixGrid
    let cCount: Int
    let cGrid: MatrixGrid
    let m: Int
    let n: Int
    let k: Int
  }

  private func patterns(_ l: Layout) -> [Pattern] {
    let (act, sc) = (l.activationCount, l.scoreCount)
    return [
      // Q · Kᵀ
      Pattern(
        name: "QKt", aCount: act, aGrid: l.headGrid, bCount: act, bGrid: l.headGrid.transposed,
        cCount: sc, cGrid: l.scoreGrid, m: l.length, n: l.length, k: l.headSize),
      // P · V
      Pattern(
        name: "PV", aCount: sc, aGrid: l.scoreGrid, bCount: act, bGrid: l.headGrid,
        cCount: act, cGrid: l.headGrid, m: l.length, n: l.headSize, k: l.length),
      // Pᵀ · dOut
      Pattern(
        name: "PtdO", aCount: sc, aGrid: l.scoreGrid.transposed, bCount: act, bGrid: l.headGrid,
        cCount: act, cGrid: l.headGrid, m: l.length, n: l.headSize, k: l.length),
    ]
  }

  private func run(_ p: Pattern, _ l: Layout, alpha: Float, threads: Int) -> (
    result: [Float], a: [Float], b: [Float]
  ) {
    BLAS.setThreadCount(threads)
    var random = RandomStream(seed: UInt64(p.m * 131 + p.n * 7 + p.k))
    let a = Tensor.uniform(shape: [p.aCount], low: -1, high: 1, random: &random)
    let b = Tensor.uniform(shape: [p.bCount], low: -1, high: 1, random: &random)
    // Filled with NaN: every element must be overwritten.
    var c = Tensor(shape: [p.cCount], scalars: [Float](repeating: .nan, count: p.cCount))
    a.withUnsafeBufferPointer { a in
      b.withUnsafeBufferPointer { b in
        c.withUnsafeMutableBufferPointer { c in
          BatchedGEMM.multiply(
            samples: l.samples, heads: l.heads, m: p.m, n: p.n, k: p.k, alpha: alpha,
            a: a.baseAddress!, p.aGrid, b: b.baseAddress!, p.bGrid, c: c.baseAddress!, p.cGrid)
        }
      }
    }
    return (c.scalars, a.scalars, b.scalars)
  }

  func testEveryAttentionPatternMatchesANaiveProduct() {
    let layout = Layout(samples: 5, heads: 3, length: 7, headSize: 4)
    for pattern in patterns(layout) {
      let alpha: Float = 0.5
      let (c, a, b) = run(pattern, layout, alpha: alpha, threads: 2)
      var worst = 0.0
      for s in 0..<layout.samples {
        for h in 0..<layout.heads {
          for i in 0..<pattern.m {
            for j in 0..<pattern.n {
              var sum = 0.0
              for t in 0..<pattern.k {
                let ai =
                  s * pattern.aGrid.sample + h * pattern.aGrid.head
                  + i * pattern.aGrid.row + t * pattern.aGrid.column
                let bi =
                  s * pattern.bGrid.sample + h * pattern.bGrid.head
                  + t * pattern.bGrid.row + j * pattern.bGrid.column
                sum += Double(a[ai]) * Double(b[bi])
              }
              let ci =
                s * pattern.cGrid.sample + h * pattern.cGrid.head
                + i * pattern.cGrid.row + j * pattern.cGrid.column
              worst = max(worst, abs(Double(c[ci]) - Double(alpha) * sum))
            }
          }
        }
      }
      XCTAssertLessThan(worst, 1e-5, pattern.name)
      XCTAssertFalse(c.contains { $0.isNaN }, "\(pattern.name) left elements unwritten")
    }
  }

  func testBatchedGEMMsAreBitwiseEqualForEveryThreadCount() {
    // MiniLM's head shape, with a sample count the fixed parts do not divide evenly.
    let layout = Layout(samples: 9, heads: 4, length: 64, headSize: 32)
    for pattern in patterns(layout) {
      let one = run(pattern, layout, alpha: 0.125, threads: 1).result
      for threads in [2, 3] {
        XCTAssertEqual(
          run(pattern, layout, alpha: 0.125, threads: threads).result, one,
          "\(pattern.name), \(threads) threads")
      }
    }
  }

  func testMiniLMsAttentionShapesRunOnOneDNN() {
    let layout = Layout(samples: 32, heads: 12, length: 64, headSize: 32)
    for pattern in patterns(layout) {
      let implementation = BatchedGEMM.implementation(
        samples: layout.samples, heads: layout.heads, m: pattern.m, n: pattern.n, k: pattern.k,
        a: pattern.aGrid, b: pattern.bGrid, c: pattern.cGrid)
      XCTAssertNotNil(implementation, pattern.name)
      XCTAssertFalse(
        implementation?.hasPrefix("ref") ?? true, "\(pattern.name): \(implementation!)")
    }
  }

  func testRecorderSeesOneCallPerMatrix() {
    let layout = Layout(samples: 3, heads: 2, length: 5, headSize: 4)
    let pattern = patterns(layout)[0]
    let calls = GEMMRecorder.record { _ = run(pattern, layout, alpha: 1, threads: 1) }
    XCTAssertEqual(calls.count, 6)
    XCTAssertEqual(
      calls.first, GEMMCall(transposeA: false, transposeB: true, m: 5, n: 5, k: 4, beta: 0))
  }
}
