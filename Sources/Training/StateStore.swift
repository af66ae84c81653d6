import Datasets
import Foundation
import Models
import Plumbing
import SafeTensors
import Surgery
import Tensor

/// A training state on disk (`state/`): tensors in `state.safetensors`, the rest in
/// `state.json`. Written to a fresh directory and swapped in by renames, so a crash at any
/// moment leaves either the old state or the new one complete.
public enum StateStore {
  struct Document: Codable {
    var format = 1
    var step: Int
    var order: BatchOrder
    var random: RandomStream
    var optimizerStep: Int
    var steps: [StepRecord]
    var evaluations: [EvaluationRecord]
    /// The manifest text the run started from: a resume with another manifest is refused.
    var manifest: String
    /// The extra distillation sources' orders; absent in states without them.
    var poolOrders: [BatchOrder]? = nil
    /// Seconds of training up to `step`; absent in older states (then 0).
    var trainSeconds: Double? = nil
  }

  public static func save(_ trainer: Trainer, manifest: String, to directory: URL) throws {
    let fileManager = FileManager.default
    let parent = directory.deletingLastPathComponent()
    let fresh = parent.appendingPathComponent(directory.lastPathComponent + ".new")
    let old = parent.appendingPathComponent(directory.lastPathComponent + ".old")
    try? fileManager.removeItem(at: fresh)
    try fileManager.createDirectory(at: fresh, withIntermediateDirectories: true)
    var tensors: [String: StoredTensor] = [:]
    for (name, tensor) in trainer.plan.model.namedParameters
    where trainer.plan.trainableSet.contains(name) {
      tensors["param." + name] = .float(tensor)
    }
    for (name, tensor) in trainer.plan.model.runningStatistics {
      tensors["stat." + name] = .float(tensor)
    }
    for (name, moments) in trainer.optimizer.moments {
      tensors["m." + name] = .float(moments.first)
      tensors["v." + name] = .float(moments.second)
    }
    try SafeTensorsFile(tensors: tensors).write(
      to: fresh.appendingPathComponent("state.safetensors"))
    let state = trainer.state
    let document = Document(
      step: state.step, order: state.order, random: state.random,
      optimizerStep: state.optimizerStep, steps: state.steps, evaluations: state.evaluations,
      manifest: manifest, poolOrders: state.poolOrders.isEmpty ? nil : state.poolOrders,
      trainSeconds: state.trainSeconds)
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys]
    try DurableFile.write(encoder.encode(document), to: fresh.appendingPathComponent("state.json"))
    // At every moment `state` or `state.old` holds a complete state: the old copy goes only
    // once the new one is in place, and a lone `state.old` (an earlier crash) is kept until then.
    if fileManager.fileExists(atPath: directory.path) {
      try? fileManager.removeItem(at: old)
      try fileManager.moveItem(at: directory, to: old)
    }
    try fileManager.moveItem(at: fresh, to: directory)
    try? fileManager.removeItem(at: old)
  }

  /// The saved state under `directory` (or the previous one, if a crash hit between the two
  /// renames of `save`).
  public static func load(from directory: URL, into trainer: inout Trainer, manifest: String)
    throws
  {
    let old = directory.deletingLastPathComponent().appendingPathComponent(
      directory.lastPathComponent + ".old")
    let source =
      FileManager.default.fileExists(atPath: directory.appendingPathComponent("state.json").path)
      ? directory : old
    let data = try Data(contentsOf: source.appendingPathComponent("state.json"))
    let document = try JSONDecoder().decode(Document.self, from: data)
    guard document.manifest == manifest else {
      throw PlanError(
        "the saved state was made by another manifest text; resume with the same manifest, or start over with --overwrite"
      )
    }
    let file = try SafeTensorsFile.read(
      contentsOf: source.appendingPathComponent("state.safetensors"))
    var trainable: [String: Tensor] = [:]
    var statistics: [String: Tensor] = [:]
    var first: [String: Tensor] = [:]
    var second: [String: Tensor] = [:]
    for (name, stored) in file.tensors {
      guard case .float(let tensor) = stored else { continue }
      if name.hasPrefix("param.") { trainable[String(name.dropFirst(6))] = tensor }
      if name.hasPrefix("stat.") { statistics[String(name.dropFirst(5))] = tensor }
      if name.hasPrefix("m.") { first[String(name.dropFirst(2))] = tensor }
      if name.hasPrefix("v.") { second[String(name.dropFirst(2))] = tensor }
    }
    var moments: [String: (first: Tensor, second: Tensor)] = [:]
    for (name, m) in first {
      if let v = second[name] { moments[name] = (m, v) }
    }
    let state = TrainingState(
      step: document.step, order: document.order, random: document.random,
      optimizerStep: document.optimizerStep, steps: document.steps,
      evaluations: document.evaluations, poolOrders: document.poolOrders ?? [],
      trainSeconds: document.trainSeconds ?? 0)
    try trainer.restore(
      state, trainable: trainable, runningStatistics: statistics, moments: moments)
  }
}
