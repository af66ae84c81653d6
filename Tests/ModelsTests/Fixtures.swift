import Foundation
import Models
import SafeTensors
import Tensor
import XCTest

/// Paths of the fixtures copied from shared/golden and of the repository's checkpoints.
enum Fixtures {
  static let root = Bundle.module.url(forResource: "Fixtures", withExtension: nil)!

  static func url(_ path: String) -> URL { root.appendingPathComponent(path) }

  static func read(_ path: String) throws -> SafeTensorsFile {
    try SafeTensorsFile.read(contentsOf: url(path))
  }

  /// The repository root (three levels above this file).
  static let repository = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
    .deletingLastPathComponent().deletingLastPathComponent()
}

extension SafeTensorsFile {
  func integers(_ name: String) -> [Int32] {
    guard case .integer(_, let values, _)? = tensors[name] else {
      XCTFail("fixture lacks integer tensor \(name)")
      return []
    }
    return values.map { Int32($0) }
  }

  func integerShape(_ name: String) -> [Int] { tensors[name]?.shape ?? [] }
}

/// Each gradient within `tolerance` of the reference's largest magnitude, and no extras.
func assertGradientsMatch(
  _ gradients: GradientSet, golden: SafeTensorsFile, parameters: [String], tolerance: Float = 1e-4,
  file: StaticString = #filePath, line: UInt = #line
) {
  XCTAssertEqual(
    Set(gradients.tensors.keys), Set(parameters), "gradients for exactly every parameter",
    file: file, line: line)
  for name in parameters {
    guard let expected = golden.float("grad." + name), let actual = gradients[name] else {
      XCTFail("missing gradient \(name)", file: file, line: line)
      continue
    }
    XCTAssertEqual(actual.shape, expected.shape, name, file: file, line: line)
    guard actual.shape == expected.shape else { continue }
    let error = actual.maxAbsoluteDifference(to: expected)
    // Key biases have a gradient that is zero in exact arithmetic (softmax ignores a constant
    // shift); both sides hold rounding noise near 1e-13, so the scale has a floor.
    let scale = max(expected.maxAbsolute, 1e-6)
    XCTAssertLessThanOrEqual(
      error / scale, tolerance, "grad.\(name): max error \(error), max |g| \(scale)", file: file,
      line: line)
  }
}
