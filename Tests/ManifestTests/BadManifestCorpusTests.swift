import Foundation
import Manifest
import XCTest

/// Every file of Fixtures/bad states its expected diagnostics in leading `# expect: ` comments
/// ("LINE:COL: severity: message; fix"); decoding must produce exactly those, in that order.
final class BadManifestCorpusTests: XCTestCase {
  func corpus() throws -> [(name: String, text: String)] {
    let directory = try Fixtures.url("bad")
    let names = try FileManager.default.contentsOfDirectory(atPath: directory.path)
      .filter { $0.hasSuffix(".yaml") }.sorted()
    return try names.map { ($0, try Fixtures.text("bad/\($0)")) }
  }

  func testCorpusIsLargeAndEveryFileStatesItsExpectations() throws {
    let files = try corpus()
    XCTAssertGreaterThanOrEqual(files.count, 30)
    for file in files {
      XCTAssertTrue(file.text.hasPrefix("# expect: "), "\(file.name) states no expectation")
    }
  }

  func testEveryBadManifestGivesExactlyItsExpectedDiagnostics() throws {
    for file in try corpus() {
      let path = "bad/\(file.name)"
      let expected = file.text.split(separator: "\n").prefix { $0.hasPrefix("# expect: ") }
        .map { "\(path):" + $0.dropFirst("# expect: ".count) }
      let result = ManifestDecoder.decode(text: file.text, file: path)
      XCTAssertEqual(result.diagnostics.map(\.text), expected, file.name)
      let hasErrors = expected.contains { $0.contains(": error: ") }
      XCTAssertEqual(result.manifest == nil, hasErrors, "\(file.name): manifest only when valid")
    }
  }
}
