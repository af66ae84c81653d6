import Tensor
import XCTest

#if canImport(Glibc)
  import Glibc
#elseif canImport(Darwin)
  import Darwin
#endif

/// `WhitenedSVD` (init svd_whitened): on the calibration inputs, the rank-r factors' output error
/// is exactly the tail of W·L's squared singular values, and no larger than the plain SVD's.
final class WhiteningTests: XCTestCase {
  override func setUp() { BLAS.setThreadCount(1) }

  /// `count` inputs of width `n` with a mean far from 0 and very unequal spread across
  /// directions (a random rotation of scales 10 … 0.01), as layer inputs are.
  private func inputs(count: Int, width n: Int, random: inout RandomStream) -> Tensor {
    let mixing = Tensor.normal(shape: [n, n], standardDeviation: 1, random: &random)
    var latent = Tensor.normal(shape: [count, n], standardDeviation: 1, random: &random)
    latent.withUnsafeMutableBufferPointer { z in
      for row in 0..<count {
        for column in 0..<n {
          z[row * n + column] *= Float(pow(10, 1 - 3 * Double(column) / Double(n - 1)))
        }
      }
    }
    var x = latent.matmul(mixing)
    x.withUnsafeMutableBufferPointer { values in
      for row in 0..<count {
        for column in 0..<n { values[row * n + column] += Float(column % 3) - 0.5 }
      }
    }
    return x
  }

  /// Mean over rows of ‖(W − M)(x − μ)‖², in double.
  private func outputError(weight: Tensor, replacement: Tensor, inputs x: Tensor, mean: [Double])
    -> Double
  {
    var residual = weight
    residual.add(replacement, scaledBy: -1)
    let (m, n) = (weight.shape[0], weight.shape[1])
    let rows = x.shape[0]
    let r = residual.scalars.map(Double.init)
    let values = x.scalars
    var total = 0.0
    for row in 0..<rows {
      for i in 0..<m {
        var y = 0.0
        for j in 0..<n { y += r[i * n + j] * (Double(values[row * n + j]) - mean[j]) }
        total += y * y
      }
    }
    return total / Double(rows)
  }

  func testOutputErrorIsTheTailOfTheWhitenedSpectrumAndBeatsThePlainSVD() throws {
    var random = RandomStream(seed: 11)
    let (m, n, rows, rank) = (10, 16, 4_000, 4)
    let weight = Tensor.normal(shape: [m, n], standardDeviation: 1, random: &random)
    let x = inputs(count: rows, width: n, random: &random)
    var moments = InputMoments(width: n)
    // Two chunks, one of them im2col's column-major layout: both must sum the same statistics.
    x.withUnsafeBufferPointer { values in
      moments.add(values.baseAddress!, rows: 1_000)
      var transposed = [Float](repeating: 0, count: (rows - 1_000) * n)
      for row in 0..<(rows - 1_000) {
        for column in 0..<n {
          transposed[column * (rows - 1_000) + row] = values[(1_000 + row) * n + column]
        }
      }
      moments.add(transposed, rows: rows - 1_000, columnMajor: true)
    }
    XCTAssertEqual(moments.count, rows)
    let whitened = try WhitenedSVD(weight: weight, covariance: moments.covariance)
    let scale: Float = 0.5
    let (down, up) = whitened.factors(rank: rank, scale: scale)
    var product = up.matmul(down)
    product.scale(by: scale)
    let error = outputError(weight: weight, replacement: product, inputs: x, mean: moments.mean)
    let tail = whitened.singularValues.dropFirst(rank).reduce(0) { $0 + $1 * $1 }
    // With Σ + εI = L·Lᵀ the identity is exact for Σ + εI: the measured error misses ε·‖W − M‖²_F.
    var residual = weight
    residual.add(product, scaledBy: -1)
    let expected = tail - whitened.ridge * residual.dot(residual)
    XCTAssertEqual(error, expected, accuracy: 1e-4 * expected)
    XCTAssertLessThan(whitened.ridge * residual.dot(residual), 0.01 * tail, "the ridge is small")

    let plain = try weight.truncatedSVD(rank: rank)
    var plainProduct = plain.u
    plainProduct.withUnsafeMutableBufferPointer { u in
      for row in 0..<m {
        for column in 0..<rank { u[row * rank + column] *= plain.singularValues[column] }
      }
    }
    let plainError = outputError(
      weight: weight, replacement: plainProduct.matmul(plain.vt), inputs: x, mean: moments.mean)
    XCTAssertLessThan(error, 0.5 * plainError, "whitening spends the rank where the inputs are")
  }

  func testSingularValuesAreThoseOfWTimesTheCholeskyFactor() throws {
    // Σ = diag(4, 1, 0.25): L = diag(2, 1, 0.5), so W·L scales W's columns.
    let weight = Tensor(shape: [2, 3], scalars: [1, 0, 0, 0, 0, 1])
    let covariance: [Double] = [4, 0, 0, 0, 1, 0, 0, 0, 0.25]
    let whitened = try WhitenedSVD(weight: weight, covariance: covariance)
    let ridge = whitened.ridge
    XCTAssertEqual(whitened.ridge, 1e-4 * 5.25 / 3, accuracy: 1e-15)
    XCTAssertEqual(whitened.singularValues[0], (4 + ridge).squareRoot(), accuracy: 1e-12)
    XCTAssertEqual(whitened.singularValues[1], (0.25 + ridge).squareRoot(), accuracy: 1e-12)
  }

  func testAnIndefiniteOrNonFiniteCovarianceIsAnError() {
    let weight = Tensor(shape: [2, 2], scalars: [1, 2, 3, 4])
    XCTAssertThrowsError(try WhitenedSVD(weight: weight, covariance: [1, 0, 0, -1e6])) {
      XCTAssertTrue("\($0)".contains("indefinite"), "\($0)")
    }
    XCTAssertThrowsError(try WhitenedSVD(weight: weight, covariance: [1, .nan, .nan, 1])) {
      XCTAssertTrue("\($0)".contains("NaN"), "\($0)")
    }
    XCTAssertThrowsError(try WhitenedSVD(weight: weight, covariance: [1, 0, 0])) {
      XCTAssertTrue("\($0)".contains("not 2×2"), "\($0)")
    }
  }

  /// `refit: sequential`'s reduced-rank regression: the loaded layer's output `W·x_t + b`
  /// reproduced from distorted inputs `x_s` (as a compressed model would give the layer). Its
  /// output error is exactly `tr(W Σ_t Wᵀ) − Σ_{i≤r} S_i²` (with the ridge's terms), below that
  /// of the factors fitted on the layer's own inputs, and with `x_s = x_t` it is those factors.
  func testTheCrossCovarianceFitReproducesTheLoadedOutputFromDistortedInputs() throws {
    var random = RandomStream(seed: 12)
    let (m, n, rows, rank) = (10, 16, 4_000, 4)
    let weight = Tensor.normal(shape: [m, n], standardDeviation: 1, random: &random)
    let bias = (0..<m).map { Double($0) * 0.1 - 0.3 }
    let teacherInputs = inputs(count: rows, width: n, random: &random)
    var distortion = Tensor.normal(shape: [n, n], standardDeviation: 0.15, random: &random)
    distortion.withUnsafeMutableBufferPointer { d in
      for i in 0..<n { d[i * n + i] += 1 }
    }
    var studentInputs = teacherInputs.matmul(distortion)
    studentInputs.add(
      Tensor.normal(shape: [rows, n], standardDeviation: 0.2, random: &random))
    var paired = PairedInputMoments(width: n)
    var teacherMoments = InputMoments(width: n)
    teacherInputs.withUnsafeBufferPointer { t in
      studentInputs.withUnsafeBufferPointer { s in
        paired.add(teacher: t.baseAddress!, student: s.baseAddress!, rows: 1_000)
        // The rest in im2col's column-major layout: the same statistics.
        let rest = rows - 1_000
        var tc = [Float](repeating: 0, count: rest * n)
        var sc = tc
        for row in 0..<rest {
          for column in 0..<n {
            tc[column * rest + row] = t[(1_000 + row) * n + column]
            sc[column * rest + row] = s[(1_000 + row) * n + column]
          }
        }
        paired.add(teacher: tc, student: sc, rows: rest, columnMajor: true)
        teacherMoments.add(t.baseAddress!, rows: rows)
      }
    }
    XCTAssertEqual(paired.count, rows)
    let w = weight.scalars.map(Double.init)
    let (xt, xs) = (teacherInputs.scalars, studentInputs.scalars)
    /// Mean over rows of ‖W·x_t + b − (M·x_s + c)‖².
    func error(_ replacement: [Double], _ c: [Double]) -> Double {
      var total = 0.0
      for row in 0..<rows {
        for i in 0..<m {
          var difference = bias[i] - c[i]
          for j in 0..<n {
            difference +=
              w[i * n + j] * Double(xt[row * n + j]) - replacement[i * n + j]
              * Double(xs[row * n + j])
          }
          total += difference * difference
        }
      }
      return total / Double(rows)
    }
    func product(_ decomposition: WhitenedSVD) -> [Double] {
      let (down, up) = decomposition.factors(rank: rank, scale: 1)
      return up.matmul(down).scalars.map(Double.init)
    }
    func apply(_ matrix: [Double], _ vector: [Double]) -> [Double] {
      (0..<m).map { i in (0..<n).reduce(0.0) { $0 + matrix[i * n + $1] * vector[$1] } }
    }

    let refit = try WhitenedSVD(
      weight: weight, covariance: paired.studentCovariance,
      crossCovariance: paired.crossCovariance)
    let refitProduct = product(refit)
    // C = b + W·μ_t − M·μ_s.
    let (wMean, mMean) = (apply(w, paired.teacherMean), apply(refitProduct, paired.studentMean))
    let refitC = (0..<m).map { bias[$0] + wMean[$0] - mMean[$0] }
    let refitError = error(refitProduct, refitC)
    let sigmaT = teacherMoments.covariance
    var targetVariance = 0.0  // tr(W Σ_t Wᵀ)
    for i in 0..<m {
      for j in 0..<n {
        for k in 0..<n { targetVariance += w[i * n + j] * sigmaT[j * n + k] * w[i * n + k] }
      }
    }
    let kept = refit.singularValues.prefix(rank).reduce(0) { $0 + $1 * $1 }
    // The objective is E‖W·x_t − M·x_s‖² + ε‖W − M‖² = tr(W (Σ_t + εI) Wᵀ) − Σ_{i≤r} S_i².
    let weightNorm = w.reduce(0) { $0 + $1 * $1 }
    let pull = zip(w, refitProduct).reduce(0) { $0 + ($1.0 - $1.1) * ($1.0 - $1.1) }
    let expected = targetVariance + refit.ridge * (weightNorm - pull) - kept
    XCTAssertEqual(refitError, expected, accuracy: 1e-3 * expected)

    // Without the refit: the factors of the layer's own inputs, C = b + (W − M)·μ_t, fed x_s.
    let own = try WhitenedSVD(weight: weight, covariance: sigmaT)
    let ownProduct = product(own)
    let ownResidual = zip(w, ownProduct).map { $0 - $1 }
    let ownC = zip(bias, apply(ownResidual, teacherMoments.mean)).map { $0 + $1 }
    let ownError = error(ownProduct, ownC)
    XCTAssertLessThan(refitError, 0.8 * ownError, "refit \(refitError), own inputs \(ownError)")

    // Undistorted inputs: the refit is the plain whitened fit.
    var same = PairedInputMoments(width: n)
    teacherInputs.withUnsafeBufferPointer {
      same.add(teacher: $0.baseAddress!, student: $0.baseAddress!, rows: rows)
    }
    let sameProduct = product(
      try WhitenedSVD(
        weight: weight, covariance: same.studentCovariance,
        crossCovariance: same.crossCovariance))
    // Compared on the outputs: single-precision Gram matrices leave rounding along directions
    // the inputs barely excite, which L⁻ᵀ amplifies in the weights but not in the outputs.
    let ownTensor = Tensor(shape: [m, n], scalars: ownProduct.map(Float.init))
    let difference = outputError(
      weight: ownTensor, replacement: Tensor(shape: [m, n], scalars: sameProduct.map(Float.init)),
      inputs: teacherInputs, mean: teacherMoments.mean)
    let size = outputError(
      weight: ownTensor, replacement: Tensor(zeros: [m, n]), inputs: teacherInputs,
      mean: teacherMoments.mean)
    XCTAssertLessThan((difference / size).squareRoot(), 1e-5)
  }
}
