import Foundation
import Manifest
import XCTest

final class ScratchTests: XCTestCase {
  func testScratch() throws {
    let dir = ProcessInfo.processInfo.environment["SCRATCH"] ?? "/tmp/scratch"
    let files = try FileManager.default.contentsOfDirectory(atPath: dir).sorted()
    for f in files where f.hasSuffix(".yaml") {
      let r = ManifestDecoder.decode(contentsOf: dir + "/" + f)
      print("=== \(f): \(r.manifest == nil ? "INVALID" : "ok")")
      print(render(r.diagnostics, as: .text))
    }
  }
}
