import Foundation
import Plumbing

/// `surgeon export`'s safetensors forms of a checkpoint surgeon wrote: the W-free model (every
/// wrapped layer's factors and C, its frozen weight deleted; refused unless every layer is at
/// d = 0, or forced), or every adapter merged into its layer (a plain checkpoint of the base
/// architecture). The result is reloaded and compared bitwise before it counts as written.
public enum CheckpointExport {
  /// The parameter counts of the written model and of the checkpoint it came from.
  public struct Written: Sendable {
    public var parameters: Int
    public var sourceParameters: Int
  }

  public static func write(
    _ loaded: LoadedCheckpoint, merging: Bool, force: Bool, to target: URL
  ) throws(UserError) -> Written {
    let source = loaded.directory
    let model = loaded.model
    guard !model.adapterRecords.isEmpty else {
      throw UserError(
        file: source.path, problem: "the checkpoint has no adapters, so there is nothing to export",
        fix: "surgeon apply writes checkpoints with adapters")
    }
    let unfinished = model.nodesWithFrozenWeight
    if !merging && !unfinished.isEmpty && !force {
      let factors = model.decayFactors
      throw UserError(
        file: source.path,
        problem:
          "\(unfinished.count) wrapped layer\(unfinished.count == 1 ? " is" : "s are") not at d = 0 (\(unfinished[0]): d = \(factors[unfinished[0]] ?? 1))",
        fix:
          "exporting would drop W and change the output. Train until the decay ends, or pass --force"
      )
    }
    if FileManager.default.fileExists(atPath: target.path) {
      throw UserError(file: target.path, problem: "exists", fix: "choose a new --out directory")
    }
    let exported: Model
    if merging {
      do {
        exported = try model.merged()
      } catch {
        throw UserError(file: source.path, problem: "cannot merge: \(error.description)")
      }
    } else {
      exported = model.exported()
    }
    let labelNames = try ConfigurationFile.labelNames(source.appendingPathComponent("config.json"))
    do {
      var metadata: [String: String] = [:]
      if let manifest = loaded.metadata["surgeon.manifest"] {
        metadata["surgeon.manifest"] = manifest
      }
      // transformers' own files carry format "pt"; a merged checkpoint is one of them.
      if merging { metadata["format"] = "pt" }
      try CheckpointWriter.write(exported, to: target, metadata: metadata, labelNames: labelNames)
      let vocabulary = source.appendingPathComponent("vocab.txt")
      if FileManager.default.fileExists(atPath: vocabulary.path) {
        try FileManager.default.copyItem(
          at: vocabulary, to: target.appendingPathComponent("vocab.txt"))
      }
    } catch {
      throw UserError(
        file: target.path, problem: "cannot write the export: \(quotedDescription(of: error))")
    }
    let reloaded = try CheckpointLoader.load(directory: target).model
    let written = Dictionary(uniqueKeysWithValues: exported.namedParameters.map { ($0.0, $0.1) })
    let identical =
      reloaded.namedParameters.count == written.count
      && reloaded.namedParameters.allSatisfy { name, tensor in
        written[name].map { tensor.isBitwiseEqual(to: $0) } ?? false
      }
    guard identical else {
      throw UserError(file: target.path, problem: "the export did not reload identically")
    }
    return Written(parameters: reloaded.parameterCount, sourceParameters: model.parameterCount)
  }
}
