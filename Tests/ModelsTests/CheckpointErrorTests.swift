import Foundation
import Models
import SafeTensors
import Tensor
import XCTest

/// Bad checkpoint directories: each is refused with a message naming the file, the problem and
/// the fix.
final class CheckpointErrorTests: XCTestCase {
  private var directory: URL!

  override func setUpWithError() throws {
    directory = FileManager.default.temporaryDirectory.appendingPathComponent(
      "surgeon-checkpoint-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    try FileManager.default.copyItem(
      at: Fixtures.url("tiny-bert/config.json"),
      to: directory.appendingPathComponent("config.json"))
    try FileManager.default.copyItem(
      at: Fixtures.url("tiny-bert/model.safetensors"),
      to: directory.appendingPathComponent("model.safetensors"))
    addTeardownBlock { [directory] in try? FileManager.default.removeItem(at: directory!) }
  }

  private func refusal(file: StaticString = #filePath, line: UInt = #line) -> String {
    do {
      _ = try CheckpointLoader.load(directory: directory)
      XCTFail("the checkpoint loaded", file: file, line: line)
      return ""
    } catch {
      return error.description
    }
  }

  private func editConfig(_ edit: (inout [String: Any]) -> Void) throws {
    let url = directory.appendingPathComponent("config.json")
    var object = try XCTUnwrap(
      JSONSerialization.jsonObject(with: Data(contentsOf: url)) as? [String: Any])
    edit(&object)
    try JSONSerialization.data(withJSONObject: object).write(to: url)
  }

  private func editWeights(_ edit: (inout [String: StoredTensor]) -> Void) throws {
    let url = directory.appendingPathComponent("model.safetensors")
    var file = try SafeTensorsFile.read(contentsOf: url)
    edit(&file.tensors)
    try file.write(to: url)
  }

  func testTheFixtureLoads() throws {
    XCTAssertEqual(try CheckpointLoader.load(directory: directory).warnings, [])
  }

  func testMissingDirectoryAndFiles() throws {
    let missing = CheckpointLoader.self
    XCTAssertThrowsError(try missing.load(directory: directory.appendingPathComponent("nope"))) {
      XCTAssertTrue("\($0)".contains("no such checkpoint directory"), "\($0)")
    }
    try FileManager.default.removeItem(at: directory.appendingPathComponent("model.safetensors"))
    XCTAssertTrue(refusal().contains("model.safetensors is missing"))
    try Data().write(to: directory.appendingPathComponent("pytorch_model.bin"))
    let pickle = refusal()
    XCTAssertTrue(pickle.contains("surgeon never unpickles"), pickle)
    XCTAssertTrue(
      pickle.contains("python3 -c \"import torch; from safetensors.torch import save_file"), pickle)
    try FileManager.default.removeItem(at: directory.appendingPathComponent("config.json"))
    XCTAssertTrue(refusal().contains("config.json is missing"))
  }

  func testConfigurationProblems() throws {
    try Data("{not json".utf8).write(to: directory.appendingPathComponent("config.json"))
    XCTAssertTrue(refusal().contains("config.json is not valid JSON"))
    try Data("[1, 2]".utf8).write(to: directory.appendingPathComponent("config.json"))
    XCTAssertTrue(refusal().contains("not a JSON object"))
    // What a full disk leaves: read without Foundation's empty-file reader (it leaks under ASan).
    try Data().write(to: directory.appendingPathComponent("config.json"))
    XCTAssertTrue(refusal().contains("config.json is not valid JSON"))
  }

  func testConfigurationFields() throws {
    let original = try Data(contentsOf: directory.appendingPathComponent("config.json"))
    let cases: [(String, (inout [String: Any]) -> Void)] = [
      ("config.json lacks hidden_size", { $0["hidden_size"] = nil }),
      ("hidden_size must be a positive integer", { $0["hidden_size"] = "32" }),
      ("num_hidden_layers must be a positive integer", { $0["num_hidden_layers"] = -2 }),
      ("hidden_act 'swish' is not supported", { $0["hidden_act"] = "swish" }),
      ("model_type 'gpt2' is not supported", { $0["model_type"] = "gpt2" }),
      ("is not a multiple of num_attention_heads", { $0["num_attention_heads"] = 5 }),
      ("layer_norm_eps must be a positive number", { $0["layer_norm_eps"] = true }),
    ]
    for (expected, edit) in cases {
      try original.write(to: directory.appendingPathComponent("config.json"))
      try editConfig(edit)
      let message = refusal()
      XCTAssertTrue(message.contains(expected), "\(expected): \(message)")
      XCTAssertTrue(message.contains("config.json"), message)
    }
  }

  func testWeightsThatContradictTheConfiguration() throws {
    try editConfig { $0["intermediate_size"] = 128 }
    let shapes = refusal()
    XCTAssertTrue(
      shapes.contains(
        "tensor 'bert.encoder.layer.0.intermediate.dense.weight' has shape [64, 32] but config.json implies [128, 32]"
      ), shapes)
    XCTAssertTrue(shapes.contains("model.safetensors"), shapes)
  }

  func testMissingTensorIsNamed() throws {
    try editWeights { $0["bert.encoder.layer.1.output.dense.bias"] = nil }
    // A bias may be absent (Linear without bias); a weight may not.
    XCTAssertNoThrow(try CheckpointLoader.load(directory: directory))
    try editWeights { $0["bert.encoder.layer.1.output.dense.weight"] = nil }
    XCTAssertTrue(
      refusal().contains("missing tensor 'bert.encoder.layer.1.output.dense.weight'"), refusal())
  }

  func testHeadDisagreeingWithLabels() throws {
    try editConfig { $0["id2label"] = ["0": "a", "1": "b", "2": "c"] }
    XCTAssertTrue(
      refusal().contains("classifier.weight has 2 rows but config.json's id2label names 3"))
  }

  func testEmptyWeightFileAndStrayTensors() throws {
    try Data().write(to: directory.appendingPathComponent("model.safetensors"))
    XCTAssertTrue(refusal().contains("model.safetensors"), refusal())
    try FileManager.default.removeItem(at: directory.appendingPathComponent("model.safetensors"))
    try FileManager.default.copyItem(
      at: Fixtures.url("tiny-bert/model.safetensors"),
      to: directory.appendingPathComponent("model.safetensors"))
    try editWeights { $0["cls.predictions.bias"] = .float(Tensor(zeros: [64])) }
    let loaded = try CheckpointLoader.load(directory: directory)
    XCTAssertEqual(loaded.warnings.count, 1)
    XCTAssertTrue(loaded.warnings[0].contains("'cls.predictions.bias' is not used by any node"))
  }
}
