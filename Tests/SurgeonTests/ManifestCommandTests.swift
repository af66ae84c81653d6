import Foundation
import XCTest

/// `validate`, `summary MANIFEST` and `schema` through the built binary.
final class ManifestCommandTests: XCTestCase {
  private static let repository = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
    .deletingLastPathComponent().deletingLastPathComponent()

  private func surgeon(_ arguments: [String], in directory: URL = repository) throws -> SurgeonRun {
    try runSurgeon(arguments, in: directory)
  }

  private func write(_ text: String, name: String = "m.yaml") throws -> URL {
    let directory = FileManager.default.temporaryDirectory.appendingPathComponent(
      "surgeon-manifest-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    addTeardownBlock { try? FileManager.default.removeItem(at: directory) }
    let url = directory.appendingPathComponent(name)
    try text.write(to: url, atomically: true, encoding: .utf8)
    return url
  }

  private let tinyNotes = """
    surgeon: 1
    name: tiny-notes
    model:
      family: bert
      preset: bert-tiny
      weights: random
      head: {classes: 2}
    surgery:
      - lora:
          layers: [query, key, value, ffn_intermediate, ffn_output, pooler]
          rank: 32
          alpha: 32
          bias_c: zeros
      - freeze: [embeddings, classifier]

    """

  func testEveryShippedManifestValidates() throws {
    let manifests = try FileManager.default.contentsOfDirectory(
      atPath: Self.repository.appendingPathComponent("manifests").path
    ).filter { $0.hasSuffix(".yaml") }.sorted().map { "manifests/" + $0 }
    XCTAssertGreaterThanOrEqual(manifests.count, 16)
    let result = try surgeon(["validate"] + manifests)
    XCTAssertEqual(result.status, 0, result.error)
    XCTAssertTrue(result.output.contains("\(manifests.count) manifests valid"), result.output)
    XCTAssertFalse(result.error.contains("error:"), result.error)
  }

  func testShippedSchemaIsCurrent() throws {
    let result = try surgeon(["schema"])
    XCTAssertEqual(result.status, 0)
    let shipped = try String(
      contentsOf: Self.repository.appendingPathComponent("manifests/schema.json"), encoding: .utf8)
    XCTAssertEqual(
      result.output, shipped, "regenerate with: surgeon schema > manifests/schema.json")
  }

  /// A bert-tiny manifest whose lora rule selects "qurey" and sets `key: 4` (line 10, column 7).
  private func badLoRA(key: String) -> String {
    """
    surgeon: 1
    name: bad
    model:
      family: bert
      preset: bert-tiny
      weights: random
    surgery:
      - lora:
          layers: [qurey]
          \(key): 4
    """
  }

  func testValidateReportsErrorsInEveryFormat() throws {
    let url = try write(badLoRA(key: "rnak"))
    let text = try surgeon(["validate", url.path])
    XCTAssertEqual(text.status, 1)
    XCTAssertTrue(
      text.error.contains(
        "\(url.path):10:7: error: unknown key 'rnak' in lora (did you mean 'rank'?)"),
      text.error)
    let github = try surgeon(["validate", "--format", "github", url.path])
    XCTAssertEqual(github.status, 1)
    XCTAssertTrue(
      github.error.contains("::error file=\(url.path),line=10,col=7::unknown key 'rnak'"),
      github.error)
    let json = try surgeon(["validate", "--format", "json", url.path])
    XCTAssertEqual(json.status, 1)
    let list = try XCTUnwrap(
      JSONSerialization.jsonObject(with: Data(json.output.utf8)) as? [[String: Any]])
    let unknown = try XCTUnwrap(
      list.first { ($0["message"] as? String)?.contains("'rnak'") == true })
    XCTAssertEqual(unknown["line"] as? Int, 10)
    XCTAssertEqual(unknown["column"] as? Int, 7)
    XCTAssertEqual(unknown["severity"] as? String, "error")
    XCTAssertEqual(unknown["file"] as? String, url.path)
    let usage = try surgeon(["validate", "--format", "xml", url.path])
    XCTAssertEqual(usage.status, 2)
  }

  func testSelectorErrorsNeedTheModelUnlessNoModel() throws {
    let url = try write(badLoRA(key: "rank"))
    let checked = try surgeon(["validate", url.path])
    XCTAssertEqual(checked.status, 1)
    XCTAssertTrue(
      checked.error.contains(":9:16: error: selector 'qurey' matches no node"), checked.error)
    let skipped = try surgeon(["validate", "--no-model", url.path])
    XCTAssertEqual(skipped.status, 0, skipped.error)
  }

  func testSummaryOfAManifestReadsTheCompiledPlan() throws {
    let url = try write(tinyNotes)
    let json = try surgeon(["summary", url.path, "--json"])
    XCTAssertEqual(json.status, 0, json.error)
    let object = try XCTUnwrap(
      JSONSerialization.jsonObject(with: Data(json.output.utf8)) as? [String: Any])
    XCTAssertEqual(object["trainable"] as? Int, 141_440)
    XCTAssertEqual(object["total"] as? Int, 4_527_618)
    XCTAssertEqual(object["non_trainable"] as? Int, 4_386_178)
    let nodes = try XCTUnwrap(object["nodes"] as? [[String: Any]])
    let query = try XCTUnwrap(
      nodes.first { $0["name"] as? String == "encoder.layer.0.attention.self.query" })
    XCTAssertEqual(query["trainable"] as? Int, 32 * 128 + 128 * 32 + 128)
    XCTAssertEqual(query["rank"] as? Int, 32)
    XCTAssertEqual(query["macs_before"] as? Int, 128 * 128)
    XCTAssertEqual(query["macs_after"] as? Int, 32 * 256)
    let table = try surgeon(["summary", url.path, "--before"])
    XCTAssertEqual(table.status, 0, table.error)
    XCTAssertTrue(table.output.contains("tiny-notes: before surgery"))
    XCTAssertTrue(table.output.contains("Total params: 4,386,178"))
    XCTAssertTrue(table.output.contains("Trainable params: 141,440"))
    let blocks = try surgeon(["summary", url.path, "--depth", "2"])
    XCTAssertTrue(blocks.output.contains("│ encoder.layer.0 "), blocks.output)
    XCTAssertFalse(blocks.output.contains("attention.self.query"))
  }
}
