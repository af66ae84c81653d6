import Manifest
import XCTest

/// `train.data.split.part`, surgeon's addition for two-stage flows.
final class SplitPartTests: XCTestCase {
  func testPartIsDecoded() throws {
    let manifest = try valid(trainManifest(data: "    split: {validation: 0.1, part: \"2/3\"}\n"))
    let part = try XCTUnwrap(manifest.train?.data.split.part)
    XCTAssertEqual(part.index, 2)
    XCTAssertEqual(part.count, 3)
    XCTAssertNil(try valid(trainManifest()).train?.data.split.part, "absent by default")
  }

  func testBadPartsAreErrorsAtTheirPosition() {
    for bad in ["\"3/2\"", "\"0/2\"", "half", "\"1/0\""] {
      let found = problems(trainManifest(data: "    split: {part: \(bad)}\n"))
      XCTAssertEqual(found.count, 1, "\(bad): \(found)")
      XCTAssertTrue(
        found.first?.hasPrefix("11:19: error: train.data.split.part must be \"K/N\"") == true,
        "\(bad): \(found)")
    }
  }
}
