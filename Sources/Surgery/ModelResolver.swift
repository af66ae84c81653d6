import Foundation
import Manifest
import Models
import Tensor

/// A manifest's model, built: loaded from a checkpoint directory or made from a preset, with the
/// head the manifest asks for.
public struct ResolvedModel: Sendable {
  public var model: Model
  /// The parameters of a head added by `model.head` (trainable by default).
  public var newHeadParameters: Set<String>
  /// Where the graph came from, for logs ("checkpoints/all-minilm-l6-v2", "preset bert-tiny").
  public var origin: String
}

/// Builds the model a manifest names.
public enum ModelResolver {
  /// Hub checkpoints the original research notes use, and the preset with their architecture: validate and
  /// summary resolve them offline; `apply` needs the real files.
  public static let knownHubModels: [String: String] = [
    "google/bert_uncased_L-2_H-128_A-2": "bert-tiny",
    "google/bert_uncased_L-4_H-512_A-8": "bert-small",
    "google/bert_uncased_L-8_H-512_A-8": "bert-medium",
    "google-bert/bert-base-uncased": "bert-base",
    "bert-base-uncased": "bert-base",
  ]

  /// Where a `hf://ORG/NAME` checkpoint must be put to be used offline.
  public static func localDirectory(forHub name: String) -> String { "checkpoints/hf/" + name }

  /// `needsWeights` false: counts and shapes are enough (validate, summary), so presets get zero
  /// weights and hub checkpoints not downloaded resolve through their preset, with a warning.
  /// `producers` maps output directories to the manifests that write them: a checkpoint that
  /// does not exist yet but is another manifest's output resolves (for checks only) as that
  /// manifest's model — the two-stage flows validate before stage 1 has run.
  public static func resolve(
    _ section: ModelSection, needsWeights: Bool, workingDirectory: URL,
    producers: [String: Manifest] = [:]
  ) -> (ResolvedModel?, [Diagnostic]) {
    var diagnostics: [Diagnostic] = []
    let location = section.source.location
    if needsWeights, case .checkpoint(let path) = section.source.value,
      let producer = producers[normalized(path)],
      !FileManager.default.fileExists(
        atPath: URL(fileURLWithPath: path, relativeTo: workingDirectory).path)
    {
      return (
        nil,
        [
          Diagnostic(
            location: location, severity: .error,
            message: "\(path) does not exist yet; it is written by \(producer.file)",
            fix: "run surgeon apply \(producer.file) first")
        ]
      )
    }
    if !needsWeights, case .checkpoint(let path) = section.source.value,
      let producer = producers[normalized(path)],
      !FileManager.default.fileExists(
        atPath: URL(fileURLWithPath: path, relativeTo: workingDirectory).path)
    {
      var remaining = producers
      remaining[normalized(path)] = nil  // a cycle ends here
      let (base, baseDiagnostics) = resolve(
        producer.model, needsWeights: false, workingDirectory: workingDirectory,
        producers: remaining)
      guard var base else {
        return (
          nil,
          [
            Diagnostic(
              location: location, severity: .error,
              message: "\(path) is written by \(producer.file), whose model does not resolve",
              fix: "fix \(producer.file) first")
          ] + baseDiagnostics.filter { $0.severity == .error }
        )
      }
      diagnostics.append(
        Diagnostic(
          location: location, severity: .warning,
          message:
            "\(path) does not exist yet; it is written by \(producer.file), so its graph is checked as that manifest's model",
          fix: "run surgeon apply \(producer.file) first"))
      base.newHeadParameters = []
      base.origin = "\(path) (from \(producer.file))"
      return finish(base, section, diagnostics)
    }
    var model: Model
    var origin: String
    switch section.source.value {
    case .checkpoint(let path):
      var directory = path
      if path.hasPrefix("hf://") {
        let hubName = String(path.dropFirst("hf://".count))
        directory = localDirectory(forHub: hubName)
        let local = workingDirectory.appendingPathComponent(directory)
        if !FileManager.default.fileExists(
          atPath: local.appendingPathComponent("config.json").path)
        {
          if !needsWeights, let preset = knownHubModels[hubName],
            let architecture = Preset.architecture(named: preset)
          {
            diagnostics.append(
              Diagnostic(
                location: location, severity: .warning,
                message:
                  "\(path) is not downloaded; its graph is taken from preset \(preset) for this check",
                fix:
                  "surgeon apply needs config.json, model.safetensors and vocab.txt in \(directory)/"
              ))
            model = Model(architecture: architecture, initialization: .zeros, bertPrefix: "bert.")
            origin = "\(path) (as preset \(preset))"
            break
          }
          diagnostics.append(
            Diagnostic(
              location: location, severity: .error,
              message: "\(path) cannot be downloaded here (no network)",
              fix:
                "download its config.json, model.safetensors and vocab.txt into \(directory)/, or use a local checkpoint"
            ))
          return (nil, diagnostics)
        }
      }
      let url = URL(fileURLWithPath: directory, relativeTo: workingDirectory)
      let hasWeights = FileManager.default.fileExists(
        atPath: url.appendingPathComponent("model.safetensors").path)
      do throws(CheckpointError) {
        if needsWeights || hasWeights {
          // Checks need shapes only: the safetensors header, never the tensor data.
          let loaded =
            needsWeights
            ? try CheckpointLoader.load(directory: url)
            : try CheckpointLoader.loadShapes(directory: url)
          model = loaded.model
          for warning in loaded.warnings {
            diagnostics.append(Diagnostic(location: location, severity: .warning, message: warning))
          }
        } else {
          // config.json alone: the shapes are right, the names assume no `bert.` prefix.
          model = Model(
            architecture: try CheckpointLoader.architecture(directory: url),
            initialization: .zeros)
        }
      } catch {
        diagnostics.append(
          Diagnostic(
            location: location, severity: .error, message: "\(error.file): \(error.problem)",
            fix: error.fix))
        return (nil, diagnostics)
      }
      origin = directory
    case .preset(let name, _):
      guard var architecture = Preset.architecture(named: name) else {
        diagnostics.append(
          Diagnostic(location: location, severity: .error, message: "unknown preset '\(name)'"))
        return (nil, diagnostics)
      }
      for override in section.configOverrides {
        do throws(ConfigOverrideError) {
          architecture = try ConfigOverrides.apply(override, to: architecture)
        } catch {
          diagnostics.append(
            Diagnostic(
              location: override.location, severity: .error, message: error.message,
              fix: error.fix))
        }
      }
      if diagnostics.contains(where: { $0.severity == .error }) { return (nil, diagnostics) }
      model = Model(
        architecture: architecture,
        initialization: needsWeights ? .seeded(UInt64(section.seed)) : .zeros)
      origin = "preset \(name)"
    }
    return finish(
      ResolvedModel(model: model, newHeadParameters: [], origin: origin), section, diagnostics)
  }

  /// A path without `./` and trailing slashes, for comparing output directories.
  public static func normalized(_ path: String) -> String {
    var result = path
    while result.hasPrefix("./") { result.removeFirst(2) }
    while result.count > 1 && result.hasSuffix("/") { result.removeLast() }
    return result
  }

  /// The head the manifest asks for, and the family check.
  private static func finish(
    _ resolved: ResolvedModel, _ section: ModelSection, _ diagnostics: [Diagnostic]
  ) -> (ResolvedModel?, [Diagnostic]) {
    var diagnostics = diagnostics
    var model = resolved.model
    let origin = resolved.origin
    var newHead = resolved.newHeadParameters
    if let classes = section.headClasses {
      if let existing = model.classCount, existing != classes.value {
        diagnostics.append(
          Diagnostic(
            location: classes.location, severity: .warning,
            message:
              "the checkpoint's head has \(existing) classes; it is replaced by a fresh \(classes.value)-class head"
          ))
      }
      if model.classCount != classes.value {
        model = model.replacingHead(classes: classes.value, seed: UInt64(section.seed))
        let head = model.nodes.last { $0.kind == .linear }
        newHead = Set(head?.parameters.map(\.name) ?? [])
      }
    }
    if model.family != section.family.value.rawValue {
      diagnostics.append(
        Diagnostic(
          location: section.family.location, severity: .error,
          message:
            "model.family is \(section.family.value.rawValue) but \(origin) is a \(model.family)",
          fix: "set family: \(model.family)"))
      return (nil, diagnostics)
    }
    return (ResolvedModel(model: model, newHeadParameters: newHead, origin: origin), diagnostics)
  }
}

struct ConfigOverrideError: Error {
  var message: String
  var fix: String?
}

/// `model.config` overrides of a preset's architecture (the config.json field names).
enum ConfigOverrides {
  static let bertKeys = [
    "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "hidden_act",
    "layer_norm_eps", "max_position_embeddings", "type_vocab_size", "vocab_size",
    "hidden_dropout_prob", "attention_probs_dropout_prob", "classifier_dropout",
  ]
  static let vggKeys = [
    "cfg", "batch_norm", "in_channels", "image_size", "num_classes", "classifier_hidden",
    "avgpool", "dropout",
  ]

  static func positive(_ value: ConfigValue, _ key: String) throws(ConfigOverrideError) -> Int {
    guard case .int(let number) = value, number >= 1, number <= 1_000_000 else {
      throw ConfigOverrideError(message: "config.\(key) must be a positive integer")
    }
    return number
  }

  static func probability(_ value: ConfigValue, _ key: String) throws(ConfigOverrideError)
    -> Float
  {
    let number: Double
    switch value {
    case .int(let n): number = Double(n)
    case .double(let d): number = d
    default: throw ConfigOverrideError(message: "config.\(key) must be a number in [0, 1)")
    }
    guard number >= 0, number < 1 else {
      throw ConfigOverrideError(message: "config.\(key) must be in [0, 1), not \(number)")
    }
    return Float(number)
  }

  static func apply(_ override: ConfigOverride, to architecture: Architecture)
    throws(ConfigOverrideError) -> Architecture
  {
    let (key, value) = (override.key, override.value)
    switch architecture {
    case .bert(var c, let classes):
      switch key {
      case "hidden_size": c.hiddenSize = try positive(value, key)
      case "num_hidden_layers": c.layerCount = try positive(value, key)
      case "num_attention_heads": c.headCount = try positive(value, key)
      case "intermediate_size": c.intermediateSize = try positive(value, key)
      case "max_position_embeddings": c.maxPositions = try positive(value, key)
      case "type_vocab_size": c.typeVocabularySize = try positive(value, key)
      case "vocab_size": c.vocabularySize = try positive(value, key)
      case "hidden_dropout_prob": c.hiddenDropout = try probability(value, key)
      case "attention_probs_dropout_prob": c.attentionDropout = try probability(value, key)
      case "classifier_dropout": c.classifierDropout = try probability(value, key)
      case "layer_norm_eps":
        guard case .double(let eps) = value, eps > 0, eps < 1 else {
          throw ConfigOverrideError(message: "config.layer_norm_eps must be a number in (0, 1)")
        }
        c.layerNormEpsilon = Float(eps)
      case "hidden_act":
        guard case .string(let name) = value, let activation = Activation(rawValue: name),
          activation != .tanh
        else {
          throw ConfigOverrideError(
            message: "config.hidden_act must be gelu, gelu_new or relu")
        }
        c.activation = activation
      default:
        throw unknown(key, bertKeys)
      }
      guard c.hiddenSize % c.headCount == 0 else {
        throw ConfigOverrideError(
          message:
            "hidden_size \(c.hiddenSize) is not a multiple of num_attention_heads \(c.headCount)",
          fix: "choose a head count that divides hidden_size")
      }
      return .bert(c, classes: classes)
    case .vgg(var c):
      switch key {
      case "in_channels": c.inChannels = try positive(value, key)
      case "image_size": c.imageSize = try positive(value, key)
      case "num_classes": c.classCount = try positive(value, key)
      case "dropout": c.dropout = try probability(value, key)
      case "batch_norm":
        guard case .bool(let flag) = value else {
          throw ConfigOverrideError(message: "config.batch_norm must be true or false")
        }
        c.batchNorm = flag
      case "avgpool":
        if value == .null {
          c.averagePool = nil
        } else {
          c.averagePool = try positive(value, key)
        }
      case "classifier_hidden":
        guard case .list(let items) = value else {
          throw ConfigOverrideError(message: "config.classifier_hidden must be a list of widths")
        }
        c.classifierHidden = try items.map { item throws(ConfigOverrideError) in
          try positive(item, key)
        }
      case "cfg":
        guard case .list(let items) = value, !items.isEmpty else {
          throw ConfigOverrideError(message: "config.cfg must be a list of widths and \"M\"")
        }
        c.stages = try items.map { item throws(ConfigOverrideError) in
          if item == .string("M") { return .maxPool }
          return .convolution(channels: try positive(item, key))
        }
      default:
        throw unknown(key, vggKeys)
      }
      return .vgg(c)
    }
  }

  static func unknown(_ key: String, _ keys: [String]) -> ConfigOverrideError {
    ConfigOverrideError(
      message: "config.\(key) is not a field this family reads",
      fix: "use one of: \(keys.joined(separator: ", "))")
  }
}
