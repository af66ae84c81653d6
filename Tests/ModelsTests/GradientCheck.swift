import Models
import Tensor
import XCTest

/// Central finite differences of a scalar loss against an analytic gradient.
///
/// Float32 forward passes limit the precision, so each coordinate must agree within
/// `tolerance` of the gradient's largest magnitude (plus a small absolute floor).
func assertGradient(
  _ label: String, analytic: Tensor, at point: Tensor, step: Float = 1e-2,
  tolerance: Double = 1e-2, samples: Int = 64, file: StaticString = #filePath, line: UInt = #line,
  loss: (Tensor) -> Double
) {
  XCTAssertEqual(analytic.shape, point.shape, "\(label): gradient shape", file: file, line: line)
  guard analytic.shape == point.shape else { return }
  let scale = max(Double(analytic.maxAbsolute), 1e-3)
  XCTAssertGreaterThan(
    Double(analytic.maxAbsolute), 0, "\(label): gradient is identically zero", file: file,
    line: line)
  var random = RandomStream(seed: 99)
  let indices =
    point.count <= samples
    ? Array(0..<point.count) : (0..<samples).map { _ in random.nextInt(below: point.count) }
  var worst = 0.0
  var worstIndex = 0
  for index in indices {
    var plus = point
    plus[flat: index] += step
    var minus = point
    minus[flat: index] -= step
    let numeric = (loss(plus) - loss(minus)) / Double(2 * step)
    let error = abs(numeric - Double(analytic[flat: index]))
    if error > worst {
      worst = error
      worstIndex = index
    }
  }
  XCTAssertLessThanOrEqual(
    worst, tolerance * scale + 1e-4,
    "\(label): finite difference differs by \(worst) at \(worstIndex) (gradient scale \(scale))",
    file: file, line: line)
}

/// A fixed random projection: `loss(y) = Σ y ⊙ r`, whose gradient with respect to y is r.
struct Projection {
  let weights: Tensor

  init(shape: [Int], seed: UInt64 = 7) {
    var random = RandomStream(seed: seed)
    weights = Tensor.normal(shape: shape, random: &random)
  }

  func callAsFunction(_ output: Tensor) -> Double { output.dot(weights) }
}

func randomTensor(_ shape: [Int], seed: UInt64, scale: Float = 1) -> Tensor {
  var random = RandomStream(seed: seed)
  return Tensor.normal(shape: shape, standardDeviation: scale, random: &random)
}
