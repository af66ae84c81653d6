import Foundation
import Manifest
import Models
import ONNXExport
import Plumbing

enum ExportCommand: Command {
  static let usage = """
    Usage: surgeon export CHECKPOINT --out DIR [--force]
           surgeon export CHECKPOINT --merge --out DIR
           surgeon export CHECKPOINT --format onnx --out DIR

    Writes the W-free model of a checkpoint surgeon wrote: every wrapped layer becomes
    <node>.down.weight (= A), <node>.up.weight (= s·B) and <node>.up.bias (= C), its frozen
    weight deleted. Refused while a wrapped layer is not at d = 0 (its output would change),
    unless --force. Only surgeon loads it (config.json names surgeon's architecture).

    --merge instead folds every adapter into its layer, W' = d·W + s·B·A and b' = d·b + C (the
    evaluation output is unchanged, at any d): a plain checkpoint of the base architecture that
    Hugging Face transformers (BertForSequenceClassification) loads. It compresses nothing.

    The result is reloaded and checked before the command succeeds.

    --format onnx (default safetensors): the model as the checkpoint holds it (plain; rewritten,
    with its adapters at their current d; or W-free) as DIR/model.onnx (opset 17, float32;
    inputs input_ids, attention_mask, token_type_ids or pixel_values, outputs logits and
    last_hidden_state), with vocab.txt (BERT) and surgeon.json (labels, max length, task).
    """

  static func run(_ arguments: [String]) throws {
    let parsed = try Arguments(arguments, options: ["out", "format"], flags: ["force", "merge"])
    guard parsed.positionals.count == 1, let out = parsed.value("out") else {
      throw UsageError(message: "give one CHECKPOINT and --out DIR")
    }
    let format = parsed.value("format") ?? "safetensors"
    guard ["safetensors", "onnx"].contains(format) else {
      throw UsageError(message: "--format must be safetensors or onnx, not '\(format)'")
    }
    if format == "onnx" && (parsed.flag("merge") || parsed.flag("force")) {
      throw UsageError(message: "--format onnx exports the model as it is; drop --merge/--force")
    }
    let source = URL(fileURLWithPath: parsed.positionals[0])
    let target = URL(fileURLWithPath: out)
    let loaded = try loadCheckpoint(source)
    if format == "onnx" {
      try exportONNX(loaded, to: target)
      return
    }
    if parsed.flag("merge") && parsed.flag("force") {
      throw UsageError(message: "--force is for the W-free export; --merge needs none")
    }
    let written = try CheckpointExport.write(
      loaded, merging: parsed.flag("merge"), force: parsed.flag("force"), to: target)
    print(
      "wrote \(target.path): \(written.parameters) parameters (from \(written.sourceParameters))")
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
    var maxLength = manifest?.train?.data.maxLength.value
    if maxLength == nil, case .bert(let bert) = loaded.model {
      maxLength = bert.configuration.maxPositions
    }
    let labels: [String]?
    do {
      labels = try ConfigurationFile.labelNames(source.appendingPathComponent("config.json"))
    } catch {
      throw CommandError(message: error.description)
    }
    let package: ONNXPackage
    do {
      package = try ONNXPackage(
        model: loaded.model, labels: labels, maxLength: maxLength,
        task: manifest?.train?.task.value.rawValue)
    } catch {
      throw CommandError(
        message: "\(source.path): error: cannot export to ONNX: \(error.description)")
    }
    do {
      try FileManager.default.createDirectory(at: target, withIntermediateDirectories: true)
      for file in try package.files() {
        try DurableFile.write(file.contents, to: target.appendingPathComponent(file.name))
      }
      let vocabulary = source.appendingPathComponent("vocab.txt")
      if FileManager.default.fileExists(atPath: vocabulary.path) {
        try FileManager.default.copyItem(
          at: vocabulary, to: target.appendingPathComponent("vocab.txt"))
      }
    } catch {
      throw CommandError(
        message: "\(target.path): error: cannot write the export: \(quotedDescription(of: error))")
    }
    let description = package.description
    let onnx = package.model
    let bytes = package.bytes
    print(
      "wrote \(target.path)/model.onnx: \(description.form) \(description.family), \(onnx.graph.nodes.count) nodes, \(bytes.count) bytes"
    )
  }
}
