import Manifest
import XCTest

final class YAMLSmokeTests: XCTestCase {
  func testLibYAMLIsLinked() {
    XCTAssertTrue(yamlLibraryVersion.hasPrefix("0."), yamlLibraryVersion)
  }

  func testScalarsCarryTheirPositions() throws {
    let scalars = try yamlScalars(in: "surgeon: 1\nmodel:\n  family: bert\n")
    XCTAssertEqual(scalars.map(\.value), ["surgeon", "1", "model", "family", "bert"])
    XCTAssertEqual(scalars[4].line, 3)
    XCTAssertEqual(scalars[4].column, 11)
  }

  func testSyntaxErrorsHaveAPosition() {
    XCTAssertThrowsError(try yamlScalars(in: "a: [1, 2\nb: 3\n")) { error in
      let failure = error as! YAMLSyntaxError
      XCTAssertGreaterThanOrEqual(failure.line, 2)
      XCTAssertFalse(failure.message.isEmpty)
    }
  }
}
