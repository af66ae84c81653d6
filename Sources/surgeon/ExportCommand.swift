import Foundation
import Models

enum ExportCommand: Command {
  static let usage = """
    Usage: surgeon export CHECKPOINT --out DIR [--force]

    Writes the W-free model of a checkpoint surgeon wrote: every wrapped layer becomes
    <node>.down.weight (= A), <node>.up.weight (= s·B) and <node>.up.bias (= C), its frozen
    weight deleted. Refused while a wrapped layer is not at d = 0 (its output would change),
    unless --force. The result is reloaded and checked before the command succeeds.
    """

  static func run(_ arguments: [String]) throws {
    let parsed = try Arguments(arguments, options: ["out"], flags: ["force"])
    guard parsed.positionals.count == 1, let out = parsed.value("out") else {
      throw UsageError(message: "give one CHECKPOINT and --out DIR")
    }
    let source = URL(fileURLWithPath: parsed.positionals[0])
    let target = URL(fileURLWithPath: out)
    let loaded = try loadCheckpoint(source)
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
}
