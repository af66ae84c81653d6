import Datasets
import Foundation
import Models
import Plumbing
import SafeTensors
import Tensor
import XCTest

/// The `surgeon` binary, run as a subprocess: what users and CI scripts see.
final class CommandLineTests: XCTestCase {
  private static let fixtures = Bundle.module.url(forResource: "Fixtures", withExtension: nil)!

  private func surgeon(_ arguments: [String], input: String? = nil) throws -> SurgeonRun {
    try runSurgeon(arguments, input: input)
  }

  private func fixture(_ name: String) -> String {
    Self.fixtures.appendingPathComponent(name).path
  }

  private func temporaryFile(_ name: String) -> URL {
    let directory = FileManager.default.temporaryDirectory.appendingPathComponent(
      "surgeon-cli-\(UUID().uuidString)")
    try? FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    addTeardownBlock { try? FileManager.default.removeItem(at: directory) }
    return directory.appendingPathComponent(name)
  }

  func testVersionAndHelp() throws {
    let version = try surgeon(["--version"])
    XCTAssertEqual(version.status, 0)
    // The first line names the release and the executable's checksum (what results.json's
    // `build` records).
    let executable = Bundle.main.bundleURL.appendingPathComponent("surgeon").path
    let crc = try BuildIdentity.fileChecksum(atPath: executable).crc32
    XCTAssertEqual(
      version.output.split(separator: "\n").first.map(String.init),
      "surgeon \(BuildIdentity.releaseVersion), executable crc32 \(crc)")
    let help = try surgeon(["summary", "--help"])
    XCTAssertEqual(help.status, 0)
    XCTAssertTrue(help.output.contains("--preset NAME"))
  }

  func testUsageErrorsExitTwoWithASuggestion() throws {
    let command = try surgeon(["sumary"])
    XCTAssertEqual(command.status, 2)
    XCTAssertTrue(command.error.contains("did you mean 'summary'"), command.error)
    let option = try surgeon(["summary", "--preset", "bert-tiny", "--jsn"])
    XCTAssertEqual(option.status, 2)
    XCTAssertTrue(option.error.contains("did you mean --json"), option.error)
    let preset = try surgeon(["summary", "--preset", "bert-tinny"])
    XCTAssertEqual(preset.status, 2)
    XCTAssertTrue(preset.error.contains("did you mean 'bert-tiny'"), preset.error)
    let classes = try surgeon(["summary", "--preset", "vgg16", "--classes", "zero"])
    XCTAssertEqual(classes.status, 2)
  }

  func testSummaryJSONOfAPreset() throws {
    let result = try surgeon(["summary", "--preset", "bert-tiny", "--classes", "2", "--json"])
    XCTAssertEqual(result.status, 0, result.error)
    let json = try XCTUnwrap(
      JSONSerialization.jsonObject(with: Data(result.output.utf8)) as? [String: Any])
    XCTAssertEqual(json["total"] as? Int, 4_386_178)
    XCTAssertEqual(json["trainable"] as? Int, 4_386_178)
    XCTAssertEqual(json["non_trainable"] as? Int, 0)
    XCTAssertEqual(json["compressed_total"] as? Int, 4_386_178)
    let nodes = try XCTUnwrap(json["nodes"] as? [[String: Any]])
    XCTAssertEqual(nodes.reduce(0) { $0 + ($1["params"] as? Int ?? 0) }, 4_386_178)
    let query = try XCTUnwrap(
      nodes.first { $0["name"] as? String == "encoder.layer.0.attention.self.query" })
    XCTAssertEqual(query["role"] as? String, "query")
    XCTAssertEqual(query["type"] as? String, "Linear")
    XCTAssertEqual(query["params"] as? Int, 128 * 128 + 128)
  }

  func testSummaryTableOfACheckpoint() throws {
    let result = try surgeon(["summary", fixture("tiny-vgg")])
    XCTAssertEqual(result.status, 0, result.error)
    // 8·1·9+8 + 16·8·9+16 + 784·32+32 + 32·32+32 + 32·10+10
    let total = 80 + 1_168 + 25_120 + 1_056 + 330
    XCTAssertTrue(result.output.contains("Total params: 27,754"), result.output)
    XCTAssertEqual(total, 27_754)
    XCTAssertTrue(result.output.contains("│ features.3 (Conv2d)"), result.output)
    XCTAssertTrue(result.output.contains("Non-trainable params: 0 (0.00 B)"))
  }

  func testSummaryOfAMissingCheckpointNamesIt() throws {
    let result = try surgeon(["summary", "/nonexistent/model"])
    XCTAssertEqual(result.status, 1)
    XCTAssertTrue(result.error.contains("/nonexistent/model: error: no such checkpoint directory"))
  }

  func testForwardWritesLogitsLossAndGradients() throws {
    let out = temporaryFile("out.safetensors")
    let result = try surgeon([
      "forward", fixture("tiny-bert"), "--inputs", fixture("tiny-bert/golden.safetensors"),
      "--out", out.path, "--grads",
    ])
    XCTAssertEqual(result.status, 0, result.error)
    let written = try SafeTensorsFile.read(contentsOf: out)
    let golden = try SafeTensorsFile.read(
      contentsOf: URL(fileURLWithPath: fixture("tiny-bert/golden.safetensors")))
    XCTAssertLessThanOrEqual(
      try XCTUnwrap(written.float("logits")).maxAbsoluteDifference(to: golden.float("logits")!),
      1e-5)
    XCTAssertEqual(
      written.float("loss")?.scalars.first ?? 0, golden.float("loss")![flat: 0], accuracy: 1e-5)
    XCTAssertEqual(written.float("last_hidden_state")?.shape, [3, 9, 32])
    XCTAssertEqual(written.float("pooler_output")?.shape, [3, 32])
    let gradients = written.tensors.keys.filter { $0.hasPrefix("grad.") }
    XCTAssertEqual(Set(gradients), Set(golden.tensors.keys.filter { $0.hasPrefix("grad.") }))
  }

  func testForwardOnVGGAndInTrainMode() throws {
    let out = temporaryFile("vgg.safetensors")
    let result = try surgeon([
      "forward", fixture("tiny-vgg"), "--inputs", fixture("tiny-vgg/golden.safetensors"),
      "--out", out.path, "--train-mode", "--seed", "3",
    ])
    XCTAssertEqual(result.status, 0, result.error)
    let written = try SafeTensorsFile.read(contentsOf: out)
    let golden = try SafeTensorsFile.read(
      contentsOf: URL(fileURLWithPath: fixture("tiny-vgg/golden.safetensors")))
    let logits = try XCTUnwrap(written.float("logits"))
    // Dropout is on in train mode: the logits move away from the evaluation reference.
    XCTAssertGreaterThan(logits.maxAbsoluteDifference(to: golden.float("logits")!), 1e-4)
    XCTAssertNil(written.tensors["grad.classifier.0.weight"])
  }

  func testForwardGradientsNeedLabels() throws {
    let inputs = temporaryFile("inputs.safetensors")
    try SafeTensorsFile(tensors: [
      "input_ids": .integer(shape: [1, 3], values: [2, 10, 3], dtype: .int64)
    ]).write(to: inputs)
    let out = temporaryFile("out.safetensors")
    let result = try surgeon([
      "forward", fixture("tiny-bert"), "--inputs", inputs.path, "--out", out.path, "--grads",
    ])
    XCTAssertEqual(result.status, 1)
    XCTAssertTrue(result.error.contains("--grads needs a 'labels' tensor"), result.error)
    XCTAssertFalse(FileManager.default.fileExists(atPath: out.path), "nothing is written")
  }

  func testForwardRejectsOutOfRangeIDs() throws {
    let inputs = temporaryFile("inputs.safetensors")
    try SafeTensorsFile(tensors: [
      "input_ids": .integer(shape: [1, 2], values: [2, 64], dtype: .int32)
    ]).write(to: inputs)
    let result = try surgeon([
      "forward", fixture("tiny-bert"), "--inputs", inputs.path, "--out",
      temporaryFile("o.safetensors").path,
    ])
    XCTAssertEqual(result.status, 1)
    XCTAssertTrue(result.error.contains("outside the vocabulary 0..<64"), result.error)
  }

  func testTokenizeReadsJSONLines() throws {
    let result = try surgeon(["tokenize", fixture("tiny-bert")], input: "\"ab, c\"\n\"\"\n")
    XCTAssertEqual(result.status, 0, result.error)
    let tokenizer = try WordPieceTokenizer(
      vocabularyFile: URL(fileURLWithPath: fixture("tiny-bert/vocab.txt")))
    let expected = [tokenizer.encode("ab, c"), tokenizer.encode("")].map {
      "[" + $0.map(String.init).joined(separator: ",") + "]"
    }
    XCTAssertEqual(result.output.split(separator: "\n").map(String.init), expected)
    let bad = try surgeon(["tokenize", fixture("tiny-bert")], input: "\"ok\"\nnot json\n")
    XCTAssertEqual(bad.status, 1)
    XCTAssertTrue(bad.error.contains("<stdin>:2: error"), bad.error)
  }
}
