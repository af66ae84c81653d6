import Foundation
import XCTest

@testable import Tensor

final class VectorMathTests: XCTestCase {
  /// Every lane of `VectorMath.exp` against libm's `exp` in double precision.
  func testExpMatchesLibmWithinTwoUlpsRelative() {
    var worst: Double = 0
    var x: Float = -87
    while x < 88 {
      let lanes = VectorMath.exp(
        VectorMath.Lanes(repeating: x) + VectorMath.Lanes(0, 1, 2, 3, 4, 5, 6, 7) * 1e-3)
      for lane in 0..<8 {
        let input = Double(x + Float(lane) * 1e-3)
        let exact = Foundation.exp(input)
        worst = max(worst, abs(Double(lanes[lane]) - exact) / exact)
      }
      x += 0.0371
    }
    XCTAssertLessThan(worst, 2.5e-7)
  }

  func testExpLimits() {
    let lanes = VectorMath.exp(
      VectorMath.Lanes(-.infinity, -1000, -87.5, 0, 1, 89, 1000, .infinity))
    XCTAssertEqual(lanes[0], 0)
    XCTAssertEqual(lanes[1], 0)
    XCTAssertEqual(lanes[2], 0)
    XCTAssertEqual(lanes[3], 1)
    XCTAssertEqual(lanes[4], Float(M_E), accuracy: 3e-7)
    XCTAssertEqual(lanes[5], .infinity)
    XCTAssertEqual(lanes[7], .infinity)
  }

  /// Φ against `erfc` in double precision: absolute everywhere, relative to Φ itself down to
  /// x = −6 (Φ ≈ 1e-9; further out, rounding `x/√2` to float alone moves `e^(−z²)` by more).
  func testNormalCDFIsAccurateInBothTails() {
    var worstRelative: Double = 0
    var worstAbsolute: Double = 0
    var x: Float = -12
    while x < 12 {
      let value = Double(VectorMath.normalCDF(VectorMath.Lanes(repeating: x))[0])
      let exact = 0.5 * Foundation.erfc(-Double(x) / 2.0.squareRoot())
      worstAbsolute = max(worstAbsolute, abs(value - exact))
      if x > -6 { worstRelative = max(worstRelative, abs(value - exact) / exact) }
      x += 0.00731
    }
    XCTAssertLessThan(worstAbsolute, 1.5e-7)
    XCTAssertLessThan(worstRelative, 5e-6)
  }

  /// The rational erf against double precision over the whole line (it is clamped beyond ±4).
  func testRationalErfWithinFourTenMillionths() {
    var worst: Double = 0
    var x: Float = -9
    while x < 9 {
      let value = Double(VectorMath.erf(VectorMath.Lanes(repeating: x))[2])
      worst = max(worst, abs(value - Foundation.erf(Double(x))))
      x += 0.000_913
    }
    XCTAssertLessThan(worst, 4e-7)
    XCTAssertEqual(VectorMath.erf(VectorMath.Lanes(repeating: 0))[0], 0)
    XCTAssertEqual(VectorMath.erf(VectorMath.Lanes(repeating: 30))[0], 1, accuracy: 1e-7)
  }

  func testNormalPDF() {
    for x: Float in [-4, -1, 0, 0.5, 3] {
      let exact = Foundation.exp(-0.5 * Double(x * x)) / (2 * Double.pi).squareRoot()
      XCTAssertEqual(
        Double(VectorMath.normalPDF(VectorMath.Lanes(repeating: x))[3]), exact, accuracy: 1e-7)
    }
  }

  /// The padded tail gives the same values as a full vector would.
  func testTransformHandlesTails() {
    var values = (0..<13).map { Float($0) * 0.25 - 1 }
    let expected = values.map { VectorMath.exp(VectorMath.Lanes(repeating: $0))[0] }
    values.withUnsafeMutableBufferPointer {
      VectorMath.transform($0.baseAddress!, count: 13) { VectorMath.exp($0) }
    }
    XCTAssertEqual(values, expected)
  }
}
