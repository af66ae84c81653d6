import Foundation
import Models

enum SummaryCommand: Command {
  static let usage = """
    Usage: surgeon summary CHECKPOINT [--classes N] [--json]
           surgeon summary --preset NAME [--classes N] [--json]

    Per-node parameter counts (trainable and non-trainable) with their fp32 sizes.
    CHECKPOINT is a directory with config.json and, usually, model.safetensors (without the
    weights the counts come from config.json alone). Buffers such as batch-norm running
    statistics and position_ids are not parameters.

    Options:
      --preset NAME   one of: \(Preset.names.joined(separator: ", "))
      --classes N     add (or replace) an N-way classifier head
      --json          print JSON instead of the table
    """

  static func run(_ arguments: [String]) throws {
    let parsed = try Arguments(arguments, options: ["preset", "classes"], flags: ["json"])
    let classes = try parsed.integer("classes", in: 1...1_000_000)
    var architecture: Architecture
    let title: String
    switch (parsed.value("preset"), parsed.positionals.count) {
    case (let name?, 0):
      guard let preset = Preset.architecture(named: name) else {
        let suggestion = closest(to: name, among: Preset.names).map { " (did you mean '\($0)'?)" }
        throw UsageError(
          message:
            "unknown preset '\(name)'\(suggestion ?? ""); presets: \(Preset.names.joined(separator: ", "))"
        )
      }
      architecture = preset
      title = name
    case (nil, 1):
      let directory = URL(fileURLWithPath: parsed.positionals[0])
      title = directory.lastPathComponent
      let weights = directory.appendingPathComponent("model.safetensors").path
      if FileManager.default.fileExists(atPath: weights) {
        // The weights decide what config.json cannot: the `bert.` prefix and the head.
        var model = try loadCheckpoint(directory).model
        if let classes { model = model.replacingHead(classes: classes, seed: 0) }
        let summary = ParameterSummary(title: "\(title) (\(model.family))", nodes: model.nodes)
        print(parsed.flag("json") ? try summary.json() : summary.table())
        return
      }
      do {
        architecture = try CheckpointLoader.architecture(directory: directory)
      } catch {
        throw CommandError(message: error.description)
      }
    default:
      throw UsageError(message: "give one CHECKPOINT directory or --preset NAME")
    }
    if let classes { architecture = architecture.withClasses(classes) }
    // Zero-filled weights: counting needs shapes only, and calloc'ed zeros cost no memory.
    let model = Model(architecture: architecture, initialization: .zeros)
    let summary = ParameterSummary(title: "\(title) (\(model.family))", nodes: model.nodes)
    print(parsed.flag("json") ? try summary.json() : summary.table())
  }
}
