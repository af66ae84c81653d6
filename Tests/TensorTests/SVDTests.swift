import Tensor
import XCTest

/// `truncatedSVD` through LAPACK: reconstruction, ordering, orthonormality, shapes, the sign
/// convention, errors and determinism.
final class SVDTests: XCTestCase {
  override func tearDown() { BLAS.setThreadCount(1) }

  private func randomMatrix(_ rows: Int, _ columns: Int, seed: UInt64) -> Tensor {
    var random = RandomStream(seed: seed)
    return Tensor.normal(shape: [rows, columns], random: &random)
  }

  /// `u · diag(s) · vt`.
  private func reconstruct(_ u: Tensor, _ s: [Float], _ vt: Tensor) -> Tensor {
    var scaled = u
    let rank = s.count
    scaled.withUnsafeMutableBufferPointer { values in
      for index in values.indices { values[index] *= s[index % rank] }
    }
    return scaled.matmul(vt)
  }

  private func frobenius(_ tensor: Tensor) -> Double {
    tensor.dot(tensor).squareRoot()
  }

  private func relativeError(_ approximation: Tensor, _ exact: Tensor) -> Double {
    var difference = approximation
    difference.add(exact, scaledBy: -1)
    return frobenius(difference) / frobenius(exact)
  }

  /// The largest deviation of `matrix · matrixᵀ` from the identity (rows orthonormal).
  private func rowOrthonormalityError(_ matrix: Tensor) -> Float {
    let gram = matrix.matmul(matrix, transposeOther: true)
    let size = matrix.shape[0]
    var result: Float = 0
    for row in 0..<size {
      for column in 0..<size {
        let expected: Float = row == column ? 1 : 0
        result = max(result, abs(gram[flat: row * size + column] - expected))
      }
    }
    return result
  }

  private func transposed(_ matrix: Tensor) -> Tensor {
    let (rows, columns) = (matrix.shape[0], matrix.shape[1])
    var scalars = [Float](repeating: 0, count: matrix.count)
    for row in 0..<rows {
      for column in 0..<columns {
        scalars[column * rows + row] = matrix[flat: row * columns + column]
      }
    }
    return Tensor(shape: [columns, rows], scalars: scalars)
  }

  func testFullRankReconstructsRandomMatrix() throws {
    let a = randomMatrix(20, 12, seed: 1)
    let (u, s, vt) = try a.truncatedSVD(rank: 12)
    XCTAssertEqual(u.shape, [20, 12])
    XCTAssertEqual(s.count, 12)
    XCTAssertEqual(vt.shape, [12, 12])
    XCTAssertLessThanOrEqual(relativeError(reconstruct(u, s, vt), a), 1e-4)
  }

  func testKnownRankThreeMatrixIsExactAtRankThree() throws {
    // A = X · Y with X 15 × 3 and Y 3 × 10: rank 3.
    let a = randomMatrix(15, 3, seed: 2).matmul(randomMatrix(3, 10, seed: 3))
    let (u, s, vt) = try a.truncatedSVD(rank: 3)
    XCTAssertLessThanOrEqual(relativeError(reconstruct(u, s, vt), a), 1e-5)
    // The full spectrum has nothing beyond the third value (float round-off only).
    let full = try a.truncatedSVD(rank: 10).singularValues
    for value in full[3...] { XCTAssertLessThan(value, 1e-5 * full[0]) }
    XCTAssertGreaterThan(full[2], 1e-2 * full[0])
  }

  func testDiagonalCaseByHand() throws {
    // Rows and columns of diag(5, 3, 2) permuted and one sign flipped:
    //   A = [[0, 0, 3], [5, 0, 0], [0, -2, 0], [0, 0, 0]]
    // σ = 5: u = e1, v = e0;  σ = 3: u = e0, v = e2;  σ = 2: u = e2, v = -e1
    // (signs as the convention fixes them: each u's largest entry positive).
    let a = Tensor(shape: [4, 3], scalars: [0, 0, 3, 5, 0, 0, 0, -2, 0, 0, 0, 0])
    let (u, s, vt) = try a.truncatedSVD(rank: 3)
    XCTAssertEqual(s[0], 5, accuracy: 1e-6)
    XCTAssertEqual(s[1], 3, accuracy: 1e-6)
    XCTAssertEqual(s[2], 2, accuracy: 1e-6)
    let expectedU: [Float] = [0, 1, 0, 1, 0, 0, 0, 0, 1, 0, 0, 0]
    let expectedVT: [Float] = [1, 0, 0, 0, 0, 1, 0, -1, 0]
    XCTAssertLessThanOrEqual(
      u.maxAbsoluteDifference(to: Tensor(shape: [4, 3], scalars: expectedU)), 1e-6)
    XCTAssertLessThanOrEqual(
      vt.maxAbsoluteDifference(to: Tensor(shape: [3, 3], scalars: expectedVT)), 1e-6)
    // Rank 1 keeps the largest value only.
    let top = try a.truncatedSVD(rank: 1)
    XCTAssertEqual(top.singularValues.count, 1)
    XCTAssertEqual(top.singularValues[0], 5, accuracy: 1e-6)
  }

  func testSingularValuesDescendAndVectorsAreOrthonormal() throws {
    let a = randomMatrix(30, 17, seed: 4)
    let (u, s, vt) = try a.truncatedSVD(rank: 9)
    for index in 1..<s.count { XCTAssertGreaterThanOrEqual(s[index - 1], s[index]) }
    XCTAssertGreaterThan(s[8], 0)
    XCTAssertLessThan(rowOrthonormalityError(transposed(u)), 1e-5)
    XCTAssertLessThan(rowOrthonormalityError(vt), 1e-5)
  }

  func testWideAndTallShapes() throws {
    for (rows, columns) in [(8, 20), (20, 8), (1, 5), (5, 1)] {
      let a = randomMatrix(rows, columns, seed: UInt64(rows * 100 + columns))
      let k = min(rows, columns)
      let (u, s, vt) = try a.truncatedSVD(rank: k)
      XCTAssertEqual(u.shape, [rows, k])
      XCTAssertEqual(vt.shape, [k, columns])
      XCTAssertLessThanOrEqual(relativeError(reconstruct(u, s, vt), a), 1e-5, "\(rows)×\(columns)")
      XCTAssertLessThan(rowOrthonormalityError(transposed(u)), 1e-5)
      XCTAssertLessThan(rowOrthonormalityError(vt), 1e-5)
      guard k > 1 else { continue }
      // Eckart–Young: the rank-r error is the norm of the dropped singular values.
      let r = k / 2
      let truncated = try a.truncatedSVD(rank: r)
      XCTAssertEqual(truncated.u.shape, [rows, r])
      XCTAssertEqual(truncated.vt.shape, [r, columns])
      let dropped = s[r...].reduce(0) { $0 + Double($1) * Double($1) }.squareRoot()
      var difference = reconstruct(truncated.u, truncated.singularValues, truncated.vt)
      difference.add(a, scaledBy: -1)
      XCTAssertEqual(frobenius(difference), dropped, accuracy: 1e-4 * frobenius(a))
    }
  }

  func testSignsDoNotDependOnLAPACK() throws {
    // −A = U Σ (−Vᵀ): with the sign convention U is the same and Vᵀ flips.
    let a = randomMatrix(12, 9, seed: 5)
    var negated = a
    negated.scale(by: -1)
    let plain = try a.truncatedSVD(rank: 4)
    let flipped = try negated.truncatedSVD(rank: 4)
    XCTAssertLessThan(plain.u.maxAbsoluteDifference(to: flipped.u), 1e-5)
    var vt = flipped.vt
    vt.scale(by: -1)
    XCTAssertLessThan(plain.vt.maxAbsoluteDifference(to: vt), 1e-5)
  }

  func testRankOutOfRangeAndBadInputsThrow() {
    let a = randomMatrix(6, 4, seed: 6)
    XCTAssertThrowsError(try a.truncatedSVD(rank: 5)) { error in
      XCTAssertEqual(error as? SVDError, SVDError(.rankOutOfRange(rank: 5, maximum: 4)))
    }
    XCTAssertThrowsError(try a.truncatedSVD(rank: 0)) { error in
      XCTAssertEqual(error as? SVDError, SVDError(.rankOutOfRange(rank: 0, maximum: 4)))
    }
    XCTAssertThrowsError(try Tensor(zeros: [2, 3, 4]).truncatedSVD(rank: 1)) { error in
      XCTAssertEqual(error as? SVDError, SVDError(.notAMatrix(shape: [2, 3, 4])))
    }
    XCTAssertThrowsError(try Tensor(zeros: [0, 3]).truncatedSVD(rank: 1)) { error in
      XCTAssertEqual(error as? SVDError, SVDError(.rankOutOfRange(rank: 1, maximum: 0)))
    }
    var bad = a
    bad[flat: 7] = .nan
    XCTAssertThrowsError(try bad.truncatedSVD(rank: 2)) { error in
      XCTAssertEqual(error as? SVDError, SVDError(.nonFinite))
    }
    bad[flat: 7] = .infinity
    XCTAssertThrowsError(try bad.truncatedSVD(rank: 2))
  }

  func testZeroMatrix() throws {
    let (u, s, vt) = try Tensor(zeros: [5, 3]).truncatedSVD(rank: 2)
    XCTAssertEqual(s, [0, 0])
    XCTAssertEqual(reconstruct(u, s, vt).maxAbsolute, 0)
  }

  func testDeterministicAcrossCallsAndThreadCounts() throws {
    let a = randomMatrix(160, 120, seed: 7)
    BLAS.setThreadCount(1)
    let first = try a.truncatedSVD(rank: 16)
    let second = try a.truncatedSVD(rank: 16)
    // LAPACK alone gives other last bits with 2 threads: truncatedSVD must not.
    BLAS.setThreadCount(2)
    let threaded = try a.truncatedSVD(rank: 16)
    XCTAssertEqual(BLAS.threadCount, 2, "the thread count is restored")
    for (label, other) in [("second", second), ("threaded", threaded)] {
      XCTAssertTrue(first.u.isBitwiseEqual(to: other.u), label)
      XCTAssertEqual(first.singularValues.map(\.bitPattern), other.singularValues.map(\.bitPattern))
      XCTAssertTrue(first.vt.isBitwiseEqual(to: other.vt))
    }
  }
}
