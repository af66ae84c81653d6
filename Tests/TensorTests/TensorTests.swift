import Tensor
import XCTest

final class TensorTests: XCTestCase {
  func testCopyOnWriteLeavesSharedBufferAlone() {
    let a = Tensor(shape: [2, 2], scalars: [1, 2, 3, 4])
    var b = a
    b[flat: 0] = 9
    XCTAssertEqual(a.scalars, [1, 2, 3, 4])
    XCTAssertEqual(b.scalars, [9, 2, 3, 4])
    let reshaped = a.reshaped([4])
    XCTAssertEqual(reshaped.shape, [4])
    XCTAssertEqual(reshaped.scalars, a.scalars)
  }

  func testMatmulTransposes() {
    // [[1,2,3],[4,5,6]] · [[1,0],[0,1],[1,1]] = [[4,5],[10,11]]
    let a = Tensor(shape: [2, 3], scalars: [1, 2, 3, 4, 5, 6])
    let b = Tensor(shape: [3, 2], scalars: [1, 0, 0, 1, 1, 1])
    XCTAssertEqual(a.matmul(b).scalars, [4, 5, 10, 11])
    let aT = Tensor(shape: [3, 2], scalars: [1, 4, 2, 5, 3, 6])
    let bT = Tensor(shape: [2, 3], scalars: [1, 0, 1, 0, 1, 1])
    XCTAssertEqual(aT.matmul(b, transposeSelf: true).scalars, [4, 5, 10, 11])
    XCTAssertEqual(a.matmul(bT, transposeOther: true).scalars, [4, 5, 10, 11])
    XCTAssertEqual(
      aT.matmul(bT, transposeSelf: true, transposeOther: true).scalars, [4, 5, 10, 11])
  }

  func testKernels() {
    var x = Tensor(shape: [2, 3], scalars: [1, 2, 3, 4, 5, 6])
    x.addRowBias(Tensor(shape: [3], scalars: [10, 20, 30]))
    XCTAssertEqual(x.scalars, [11, 22, 33, 14, 25, 36])
    XCTAssertEqual(x.columnSums(columns: 3).scalars, [25, 47, 69])
    x.add(Tensor(shape: [2, 3], repeating: 1), scaledBy: -1)
    XCTAssertEqual(x.sum, 135)
    XCTAssertTrue(x.isFinite)
    x[flat: 2] = .nan
    XCTAssertFalse(x.isFinite)
  }

  func testRepeatedRowsAndOutOfPlaceProduct() {
    let rows = Tensor(shape: [2, 2, 3], repeatingRow: Tensor(shape: [3], scalars: [1, -2, 3]))
    XCTAssertEqual(rows.shape, [2, 2, 3])
    XCTAssertEqual(rows.scalars, [1, -2, 3, 1, -2, 3, 1, -2, 3, 1, -2, 3])
    // Large enough to be split over threads: every row, not only the first chunk's.
    BLAS.setThreadCount(2)
    defer { BLAS.setThreadCount(1) }
    let wide = Tensor(
      shape: [4_099, 5], repeatingRow: Tensor(shape: [5], scalars: [0, 1, 2, 3, 4]))
    XCTAssertEqual(wide.scalars, (0..<4_099).flatMap { _ in [0, 1, 2, 3, 4] })

    let a = Tensor(shape: [2, 3], scalars: [1, 2, 3, 4, 5, 6])
    let product = Tensor.product(a, Tensor(shape: [6], scalars: [2, 0, -1, 0.5, 1, 3]))
    XCTAssertEqual(product.shape, [2, 3], "shaped like the first operand")
    XCTAssertEqual(product.scalars, [2, 0, -3, 2, 5, 18])
    XCTAssertEqual(a.scalars, [1, 2, 3, 4, 5, 6], "the operands are left alone")
  }

  func testRandomStreamsAreReproducibleAndIndependentOfChunking() {
    var whole = RandomStream(seed: 42)
    let all = Tensor.uniform(shape: [64], low: 0, high: 1, random: &whole).scalars
    // The same values drawn 32 at a time (as threads would, each from its block offset: eight
    // blocks per 32 values).
    var chunks: [Float] = []
    for chunk in 0..<2 {
      var part = RandomStream(seed: 42, position: UInt64(chunk * 8))
      chunks += Tensor.uniform(shape: [32], low: 0, high: 1, random: &part).scalars
    }
    XCTAssertEqual(all, chunks)
    var other = RandomStream(seed: 43)
    XCTAssertNotEqual(all, Tensor.uniform(shape: [64], low: 0, high: 1, random: &other).scalars)
    XCTAssertNotEqual(RandomStream(seed: 42).substream(1), RandomStream(seed: 42).substream(2))
  }

  func testNormalAndUniformMoments() {
    var random = RandomStream(seed: 7)
    let normal = Tensor.normal(shape: [100_000], mean: 1, standardDeviation: 2, random: &random)
    let mean = normal.sum / 100_000
    let variance =
      normal.scalars.reduce(0.0) { $0 + (Double($1) - mean) * (Double($1) - mean) } / 100_000
    XCTAssertEqual(mean, 1, accuracy: 0.03)
    XCTAssertEqual(variance, 4, accuracy: 0.08)
    let uniform = Tensor.uniform(shape: [100_000], low: -1, high: 3, random: &random).scalars
    XCTAssertGreaterThanOrEqual(uniform.min()!, -1)
    XCTAssertLessThan(uniform.max()!, 3)
    XCTAssertEqual(uniform.reduce(0.0) { $0 + Double($1) } / 100_000, 1, accuracy: 0.03)
  }

  func testKaimingUniformBound() {
    var random = RandomStream(seed: 1)
    let weight = Tensor.kaimingUniform(shape: [64, 100], fanIn: 100, random: &random)
    // PyTorch's kaiming_uniform_(a=√5) bound: 1/√fan_in.
    XCTAssertLessThanOrEqual(weight.maxAbsolute, 0.1)
    XCTAssertGreaterThan(weight.maxAbsolute, 0.099)
  }

  func testIntegerDrawsStayInRange() {
    var random = RandomStream(seed: 5)
    var seen = Set<Int>()
    for _ in 0..<200 { seen.insert(random.nextInt(below: 7)) }
    XCTAssertEqual(seen, Set(0..<7))
  }

  func testBLASThreadCountCanBeSet() {
    BLAS.setThreadCount(1)
    XCTAssertEqual(BLAS.threadCount, 1)
    BLAS.setThreadCount(2)
    XCTAssertEqual(BLAS.threadCount, 2)
    XCTAssertFalse(BLAS.configuration.isEmpty)
  }
}
