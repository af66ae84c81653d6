import Foundation
import Manifest
import Models
import ONNXExport

enum ExportCommand: Command {
  static let usage = """
    Usage: surgeon export CHECKPOINT --out DIR [--format safetensors|onnx] [--force]

    safetensors (the default): the W-free model of a checkpoint surgeon wrote: every wrapped
    layer becomes <node>.down.weight (= A), <node>.up.weight (= s·B) and <node>.up.bias (= C),
    its frozen weight deleted. Refused while a wrapped layer is not at d = 0 (its output would
    change), unless --force. The result is reloaded and checked before the command succeeds.

    onnx: the model as the checkpoint holds it (plain; rewritten, with its adapters at their
    current d; or W-free) as DIR/model.onnx (opset 17, float32; inputs input_ids,
    attention_mask, token_type_ids or pixel_values, outputs logits and last_hidden_state),
    with vocab.txt (BERT) and surgeon.json (labels, max length, task).
    """

  static func run(_ arguments: [String]) throws {
    let parsed = try Arguments(arguments, options: ["out", "format"], flags: ["force"])
    guard parsed.positionals.count == 1, let out = parsed.value("out") else {
      throw UsageError(message: "give one CHECKPOINT and --out DIR")
    }
    let format = parsed.value("format") ?? "safetensors"
    guard ["safetensors", "onnx"].contains(format) else {
      throw UsageError(message: "--format must be safetensors or onnx, not '\(format)'")
    }
    let source = URL(fileURLWithPath: parsed.positionals[0])
    let target = URL(fileURLWithPath: out)
    let loaded = try loadCheckpoint(source)
    if format == "onnx" {
      try exportONNX(loaded, to: target)
      return
    }
    let model = loaded.model
    guard !model.adapterRecords.isEmpty else {
      throw CommandError(
        message:
          "\(source.path): error: the checkpoint has no adapters, so there is nothing to export; surgeon apply writes checkpoints with adapters"
      )
    }
    let unfinished = model.nodesWithFrozenWeight
    if !unfinished.isEmpty && !parsed.flag("force") {
      let factors = model.decayFactors
      throw CommandError(
        message:
          "\(source.path): error: \(unfinished.count) wrapped layer\(unfinished.count == 1 ? " is" : "s are") not at d = 0 (\(unfinished[0]): d = \(factors[unfinished[0]] ?? 1)); exporting would drop W and change the output. Train until the decay ends, or pass --force"
      )
    }
    if FileManager.default.fileExists(atPath: target.path) {
      throw CommandError(message: "\(target.path): error: exists; choose a new --out directory")
    }
    let exported = model.exported()
    do {
      var metadata: [String: String] = [:]
      if let manifest = loaded.metadata["surgeon.manifest"] {
        metadata["surgeon.manifest"] = manifest
      }
      try CheckpointWriter.write(exported, to: target, metadata: metadata)
      let vocabulary = source.appendingPathComponent("vocab.txt")
      if FileManager.default.fileExists(atPath: vocabulary.path) {
        try FileManager.default.copyItem(
          at: vocabulary, to: target.appendingPathComponent("vocab.txt"))
      }
    } catch {
      throw CommandError(message: "\(target.path): error: cannot write the export: \(error)")
    }
    let reloaded = try loadCheckpoint(target).model
    let written = Dictionary(uniqueKeysWithValues: exported.namedParameters.map { ($0.0, $0.1) })
    let identical =
      reloaded.namedParameters.count == written.count
      && reloaded.namedParameters.allSatisfy { name, tensor in
        written[name].map { tensor.isBitwiseEqual(to: $0) } ?? false
      }
    guard identical else {
      throw CommandError(message: "\(target.path): error: the export did not reload identically")
    }
    print(
      "wrote \(target.path): \(reloaded.parameterCount) parameters (from \(model.parameterCount))")
  }

  /// Writes DIR/model.onnx, vocab.txt (BERT) and surgeon.json; the graph is built and checked
  /// before the directory is created, so a model the exporter cannot express writes nothing.
  static func exportONNX(_ loaded: LoadedCheckpoint, to target: URL) throws {
    let source = loaded.directory
    if FileManager.default.fileExists(atPath: target.path) {
      throw CommandError(message: "\(target.path): error: exists; choose a new --out directory")
    }
    let manifest = loaded.metadata["surgeon.manifest"].flatMap {
      ManifestDecoder.decode(text: $0, file: "surgeon.manifest").manifest
    }
    let onnx: ONNXModel
    let bytes: [UInt8]
    do {
      onnx = try ONNXExporter.model(for: loaded.model)
      bytes = try onnx.serialized()
    } catch {
      throw CommandError(
        message: "\(source.path): error: cannot export to ONNX: \(error.description)")
    }
    var maxLength = manifest?.train?.data.maxLength.value
    if maxLength == nil, case .bert(let bert) = loaded.model {
      maxLength = bert.configuration.maxPositions
    }
    let description = DeploymentDescription(
      model: loaded.model, graph: onnx.graph, labels: labelNames(source), maxLength: maxLength,
      task: manifest?.train?.task.value.rawValue)
    do {
      try FileManager.default.createDirectory(at: target, withIntermediateDirectories: true)
      try Data(bytes).write(to: target.appendingPathComponent("model.onnx"), options: .atomic)
      let vocabulary = source.appendingPathComponent("vocab.txt")
      if FileManager.default.fileExists(atPath: vocabulary.path) {
        try FileManager.default.copyItem(
          at: vocabulary, to: target.appendingPathComponent("vocab.txt"))
      }
      try Data(try description.json().utf8).write(
        to: target.appendingPathComponent("surgeon.json"), options: .atomic)
    } catch {
      throw CommandError(message: "\(target.path): error: cannot write the export: \(error)")
    }
    print(
      "wrote \(target.path)/model.onnx: \(description.form) \(description.family), \(onnx.graph.nodes.count) nodes, \(bytes.count) bytes"
    )
  }

  /// The label of each class as config.json names them (`id2label`, or VGG's `labels`).
  static func labelNames(_ directory: URL) -> [String]? {
    guard
      let data = FileManager.default.contents(
        atPath: directory.appendingPathComponent("config.json").path),
      let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any]
    else { return nil }
    if let labels = object["labels"] as? [String] { return labels }
    guard let map = object["id2label"] as? [String: String] else { return nil }
    let indexed = map.compactMap { key, value in Int(key).map { ($0, value) } }.sorted {
      $0.0 < $1.0
    }
    guard indexed.count == map.count, indexed.enumerated().allSatisfy({ $0.offset == $0.element.0 })
    else { return nil }
    return indexed.map(\.1)
  }
}
