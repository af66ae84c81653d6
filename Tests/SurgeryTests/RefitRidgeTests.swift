import Surgery
import Tensor
import XCTest

/// `refit: sequential` chooses its ridge on held-out calibration rows: the held-out output error
/// computed from paired moments equals the one computed row by row, and when the compressed
/// model's inputs keep only a faint, noisy echo of some of the loaded model's directions, the
/// smallest ridge amplifies that echo and a larger one is chosen.
final class RefitRidgeTests: XCTestCase {
  override func setUp() { BLAS.setThreadCount(1) }

  /// Paired rows: `x_t` standard normal; `x_s` keeps the first `strong` directions (plus a
  /// little noise) and only `echo ×` the rest, with noise of the same size as the echo.
  private func pairedRows(
    count: Int, width n: Int, strong: Int, echo: Float, random: inout RandomStream
  ) -> (teacher: [Float], student: [Float]) {
    let teacher = Tensor.normal(shape: [count, n], standardDeviation: 1, random: &random).scalars
    let noise = Tensor.normal(shape: [count, n], standardDeviation: 1, random: &random).scalars
    var student = teacher
    for row in 0..<count {
      for column in 0..<n {
        let i = row * n + column
        student[i] =
          column < strong
          ? teacher[i] + 0.1 * noise[i] + 0.5 : echo * teacher[i] + echo * noise[i] - 0.25
      }
    }
    return (teacher, student)
  }

  private func moments(_ rows: (teacher: [Float], student: [Float]), width: Int)
    -> PairedInputMoments
  {
    var moments = PairedInputMoments(width: width)
    moments.add(teacher: rows.teacher, student: rows.student, rows: rows.teacher.count / width)
    return moments
  }

  func testHeldOutOutputErrorFromMomentsMatchesTheRows() throws {
    var random = RandomStream(seed: 31)
    let (m, n, count) = (6, 10, 300)
    let rows = pairedRows(count: count, width: n, strong: 7, echo: 0.2, random: &random)
    let held = moments(rows, width: n)
    let w = Tensor.normal(shape: [m, n], standardDeviation: 1, random: &random).scalars.map(
      Double.init)
    let map = Tensor.normal(shape: [m, n], standardDeviation: 1, random: &random).scalars.map(
      Double.init)
    let a = (0..<n).map { Double($0) * 0.1 }
    let b = (0..<n).map { 0.3 - Double($0) * 0.05 }
    var expected = 0.0
    for row in 0..<count {
      for i in 0..<m {
        var difference = 0.0
        for j in 0..<n {
          difference +=
            w[i * n + j] * (Double(rows.teacher[row * n + j]) - a[j]) - map[i * n + j]
            * (Double(rows.student[row * n + j]) - b[j])
        }
        expected += difference * difference
      }
    }
    expected /= Double(count)
    let computed = held.outputError(
      weight: w, map: map, outputs: m, teacherOffset: a, studentOffset: b)
    XCTAssertEqual(computed, expected, accuracy: 1e-4 * expected)
    // With no replacement and the rows' own mean, the error is the loaded output's variance.
    let variance = held.teacherOutputVariance(weight: w, outputs: m)
    XCTAssertEqual(
      held.outputError(
        weight: w, map: [Double](repeating: 0, count: m * n), outputs: m,
        teacherOffset: held.teacherMean, studentOffset: b),
      variance, accuracy: 1e-6 * variance)

    // Merged moments are those of all the rows at once.
    let more = pairedRows(count: 100, width: n, strong: 7, echo: 0.2, random: &random)
    var merged = held
    merged.merge(moments(more, width: n))
    let all = moments((rows.teacher + more.teacher, rows.student + more.student), width: n)
    XCTAssertEqual(merged.count, all.count)
    for (x, y) in zip(
      merged.crossCovariance + merged.studentCovariance, all.crossCovariance + all.studentCovariance
    ) {
      XCTAssertEqual(x, y, accuracy: 1e-5 * (1 + abs(y)))
    }
    for (x, y) in zip(merged.teacherCovariance, all.teacherCovariance) {
      XCTAssertEqual(x, y, accuracy: 1e-5 * (1 + abs(y)))
    }

    // `map(rank:)` is the factors' product.
    let decomposition = try WhitenedSVD(
      weight: Tensor(shape: [m, n], scalars: w.map(Float.init)),
      covariance: all.studentCovariance, crossCovariance: all.crossCovariance)
    let (down, up) = decomposition.factors(rank: 3, scale: 2)
    var product = up.matmul(down)
    product.scale(by: 2)
    for (x, y) in zip(decomposition.map(rank: 3), product.scalars) {
      XCTAssertEqual(x, Double(y), accuracy: 1e-4 * (1 + abs(x)))
    }
  }

  func testTheRidgeIsChosenOnHeldOutRowsAndStopsAnEchoFromBeingAmplified() throws {
    var random = RandomStream(seed: 32)
    let (m, n, rank) = (8, 40, 6)
    let weight = Tensor.normal(shape: [m, n], standardDeviation: 1, random: &random)
    // Few fitting rows for 40 inputs, as a regression over one wide layer's calibration
    // tokens is: the echo's noise is fitted as if it were signal.
    let fitRows = pairedRows(count: 50, width: n, strong: 8, echo: 0.03, random: &random)
    let heldRows = pairedRows(count: 2_000, width: n, strong: 8, echo: 0.03, random: &random)
    let (fit, held) = (moments(fitRows, width: n), moments(heldRows, width: n))
    var teacherMoments = InputMoments(width: n)
    teacherMoments.add(fitRows.teacher, rows: 50)
    let whitened = Whitening(
      decomposition: try WhitenedSVD(weight: weight, covariance: teacherMoments.covariance),
      mean: teacherMoments.mean)

    let choice = try SequentialRefit.choose(
      weight: weight, rank: rank, whitened: whitened, fit: fit, heldOut: held)
    let w = weight.scalars.map(Double.init)
    let unit = held.teacherOutputVariance(weight: w, outputs: m)
    var errors: [Double] = []
    for scale in SequentialRefit.ridgeScales {
      let candidate = try WhitenedSVD(
        weight: weight, covariance: fit.studentCovariance, crossCovariance: fit.crossCovariance,
        ridgeScale: scale)
      errors.append(
        held.outputError(
          weight: w, map: candidate.map(rank: rank), outputs: m, teacherOffset: fit.teacherMean,
          studentOffset: fit.studentMean) / unit)
    }
    // The choice is the best held-out candidate, whitened factors included.
    XCTAssertEqual(choice.error, min(errors.min()!, choice.whitenedError), accuracy: 1e-12)
    let chosen = try XCTUnwrap(
      choice.ridgeScale, "errors \(errors), whitened \(choice.whitenedError)")
    XCTAssertGreaterThan(chosen, SequentialRefit.ridgeScales[0], "errors \(errors)")
    XCTAssertLessThan(choice.error, 0.9 * errors[0], "errors \(errors)")
    // The refitted whitening reads the student's inputs and reproduces the teacher's mean.
    let refitted = try XCTUnwrap(choice.whitening)
    var all = fit
    all.merge(held)
    XCTAssertEqual(refitted.mean, all.studentMean)
    XCTAssertEqual(refitted.targetMean, all.teacherMean)
  }
}
