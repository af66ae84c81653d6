import Foundation
import Manifest
import Models
import Plumbing
import Surgery

enum SummaryCommand: Command {
  static let usage = """
    Usage: surgeon summary MANIFEST [--json] [--before] [--depth N]
           surgeon summary CHECKPOINT [--classes N] [--json] [--depth N]
           surgeon summary --preset NAME [--classes N] [--json] [--depth N]

    Per-node parameter counts: trainable and non-trainable as the compiled training plan has
    them (what the optimizer will update), and for wrapped layers the parameters and
    multiply-adds per token (pixel) before and after compression; totals with fp32 sizes.
    Buffers (batch-norm running statistics, position_ids) are not parameters.

    Options:
      --preset NAME   one of: \(Preset.names.joined(separator: ", "))
      --classes N     add (or replace) an N-way classifier head (checkpoints and presets)
      --before        also show the model before surgery (manifests)
      --depth N       one row per block: nodes grouped by their first N name segments
      --json          print JSON instead of the table
    """

  static func run(_ arguments: [String]) throws {
    let parsed = try Arguments(
      arguments, options: ["preset", "classes", "depth"], flags: ["json", "before"])
    let classes = try parsed.integer("classes", in: 1...1_000_000)
    let depth = try parsed.integer("depth", in: 1...16)
    let json = parsed.flag("json")
    func show(_ summary: ParameterSummary) throws -> String {
      let shown = depth.map { summary.groupedByBlock(depth: $0) } ?? summary
      return json ? try shown.json() : shown.table()
    }
    switch (parsed.value("preset"), parsed.positionals.count) {
    case (let name?, 0):
      guard var architecture = Preset.architecture(named: name) else {
        let suggestion = closestName(to: name, in: Preset.names).map { " (did you mean '\($0)'?)" }
        throw UsageError(
          message:
            "unknown preset '\(name)'\(suggestion ?? ""); presets: \(Preset.names.joined(separator: ", "))"
        )
      }
      if let classes { architecture = architecture.withClasses(classes) }
      // Zero-filled weights: counting needs shapes only, and calloc'ed zeros cost no memory.
      let model = Model(architecture: architecture, initialization: .zeros)
      print(try show(ParameterSummary(title: "\(name) (\(model.family))", nodes: model.nodes)))
    case (nil, 1):
      let path = parsed.positionals[0]
      var isDirectory: ObjCBool = false
      if FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory),
        !isDirectory.boolValue
      {
        guard classes == nil else {
          throw UsageError(message: "--classes is for checkpoints; a manifest sets model.head")
        }
        try summarizeManifest(path, before: parsed.flag("before"), show: show)
      } else {
        guard !parsed.flag("before") else {
          throw UsageError(message: "--before is for manifests")
        }
        try summarizeCheckpoint(path, classes: classes, show: show)
      }
    default:
      throw UsageError(message: "give one MANIFEST, one CHECKPOINT directory, or --preset NAME")
    }
  }

  private static func summarizeCheckpoint(
    _ path: String, classes: Int?, show: (ParameterSummary) throws -> String
  ) throws {
    let directory = URL(fileURLWithPath: path)
    let title = directory.lastPathComponent
    var model: Model
    var trainable: Set<String>?
    if FileManager.default.fileExists(
      atPath: directory.appendingPathComponent("model.safetensors").path)
    {
      // The header decides what config.json cannot: the `bert.` prefix and the head. Counting
      // needs no values, so no tensor data is read.
      let loaded: LoadedCheckpoint
      do {
        loaded = try CheckpointLoader.loadShapes(directory: directory)
      } catch {
        throw CommandError(message: error.description)
      }
      for warning in loaded.warnings { printError(warning) }
      model = loaded.model
      // A checkpoint surgeon wrote carries the trainable set it was trained with.
      trainable = loaded.recordedTrainable
    } else {
      do {
        model = Model(
          architecture: try CheckpointLoader.architecture(directory: directory),
          initialization: .zeros)
      } catch {
        throw CommandError(message: error.description)
      }
      let pickle = directory.appendingPathComponent("pytorch_model.bin")
      let weights = directory.appendingPathComponent("model.safetensors")
      // Standard error, so --json output stays JSON.
      if FileManager.default.fileExists(atPath: pickle.path) {
        printError(
          "note: \(path) has no model.safetensors, only pytorch_model.bin (never unpickled): these counts come from config.json and no weights were read; convert once with: python3 -c \"import torch; from safetensors.torch import save_file; sd = torch.load('\(pickle.path)', map_location='cpu', weights_only=True); save_file({k: v.contiguous() for k, v in sd.items()}, '\(weights.path)')\""
        )
      } else {
        printError(
          "note: \(path) has no model.safetensors: these counts come from config.json and no weights were read (names assume no 'bert.' prefix)"
        )
      }
    }
    if let classes, model.classCount != classes {
      model = model.replacingHead(classes: classes, seed: 0)
      trainable = nil
    }
    print(
      try show(
        ParameterSummary(
          title: "\(title) (\(model.family))", nodes: model.nodes, trainable: trainable)))
  }

  private static func summarizeManifest(
    _ path: String, before: Bool, show: (ParameterSummary) throws -> String
  ) throws {
    let (manifest, decodeDiagnostics) = ManifestDecoder.decode(contentsOf: path)
    var diagnostics = decodeDiagnostics
    var rewrite: Rewrite?
    if let manifest {
      let result = ManifestCheck.rewrite(
        manifest, producers: ManifestCheck.producers(near: [path]))
      rewrite = result.rewrite
      diagnostics += result.diagnostics
    }
    if !diagnostics.isEmpty { printError(render(diagnostics, as: .text)) }
    guard let manifest, let rewrite, !diagnostics.contains(where: { $0.severity == .error })
    else { throw ExitStatus(code: 1) }
    let name = manifest.name.value
    if before {
      let original = ParameterSummary(
        title: "\(name): before surgery", nodes: rewrite.original.nodes,
        trainable: nil)
      print(try show(original))
      print()
    }
    print(try show(rewrite.plan.summary(title: before ? "\(name): after surgery" : name)))
  }
}
