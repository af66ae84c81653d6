import Foundation
import Plumbing

/// A problem with a checkpoint directory: the file, what is wrong, and how to fix it.
public typealias CheckpointError = UserError

/// Reads a checkpoint's `config.json` into an `Architecture`.
public enum ConfigurationFile {
  public static func read(_ url: URL) throws(CheckpointError) -> Architecture {
    let path = url.path
    guard let data = FileContents.read(path) else {
      throw CheckpointError(
        file: path, problem: "config.json is missing or unreadable",
        fix: "a checkpoint directory holds config.json and model.safetensors")
    }
    let object: Any
    do {
      object = try JSONSerialization.jsonObject(with: data)
    } catch {
      throw CheckpointError(file: path, problem: "config.json is not valid JSON")
    }
    guard let fields = object as? [String: Any] else {
      throw CheckpointError(file: path, problem: "config.json is not a JSON object")
    }
    let reader = FieldReader(path: path, fields: fields)
    switch try reader.string("model_type", default: nil) {
    case "bert", SurgeonArchitecture.lowRankBertModelType: return try bert(reader)
    case "vgg": return try vgg(reader)
    case let other:
      throw CheckpointError(
        file: path, problem: "model_type '\(other ?? "")' is not supported",
        fix:
          "surgeon loads model_type \"bert\" (Hugging Face layout), \"\(SurgeonArchitecture.lowRankBertModelType)\" (a BERT with adapters surgeon wrote) or \"vgg\" (docs/manifest.md)"
      )
    }
  }

  /// The class names `config.json` records, index = class id: BERT's `id2label` (keys 0…n-1),
  /// VGG's `labels`; nil when it records none.
  public static func labelNames(_ url: URL) throws(CheckpointError) -> [String]? {
    guard let data = FileContents.read(url.path),
      let fields = try? JSONSerialization.jsonObject(with: data) as? [String: Any]
    else {
      throw CheckpointError(
        file: url.path, problem: "config.json is missing or not a JSON object",
        fix: "a checkpoint directory holds config.json and model.safetensors")
    }
    if let list = fields["labels"] {
      guard let names = list as? [String], !names.isEmpty else {
        throw CheckpointError(file: url.path, problem: "labels must be a list of class names")
      }
      return names
    }
    guard let map = fields["id2label"] as? [String: Any] else { return nil }
    var names = [String](repeating: "", count: map.count)
    for (key, value) in map {
      guard let index = Int(key), names.indices.contains(index), let name = value as? String else {
        throw CheckpointError(
          file: url.path,
          problem: "id2label must map \"0\"…\"\(map.count - 1)\" to label names, not \"\(key)\"",
          fix: "write id2label as {\"0\": \"negative\", \"1\": \"positive\"}")
      }
      names[index] = name
    }
    return names
  }

  private static func bert(_ reader: FieldReader) throws(CheckpointError) -> Architecture {
    let activationName = try reader.string("hidden_act", default: "gelu")!
    guard let activation = Activation(rawValue: activationName), activation != .tanh else {
      throw reader.error(
        "hidden_act '\(activationName)' is not supported", fix: "use gelu, gelu_new or relu")
    }
    if let embedding = try reader.string("position_embedding_type", default: "absolute"),
      embedding != "absolute"
    {
      throw reader.error(
        "position_embedding_type '\(embedding)' is not supported", fix: "use \"absolute\"")
    }
    let hidden = try reader.positiveInt("hidden_size")
    let heads = try reader.positiveInt("num_attention_heads")
    guard hidden % heads == 0 else {
      throw reader.error(
        "hidden_size \(hidden) is not a multiple of num_attention_heads \(heads)",
        fix: "use a head count that divides hidden_size")
    }
    let configuration = BertConfiguration(
      vocabularySize: try reader.positiveInt("vocab_size", default: 30_522),
      hiddenSize: hidden, layerCount: try reader.positiveInt("num_hidden_layers"),
      headCount: heads, intermediateSize: try reader.positiveInt("intermediate_size"),
      activation: activation,
      layerNormEpsilon: Float(try reader.number("layer_norm_eps", default: 1e-12)),
      maxPositions: try reader.positiveInt("max_position_embeddings", default: 512),
      typeVocabularySize: try reader.positiveInt("type_vocab_size", default: 2),
      hiddenDropout: Float(try reader.probability("hidden_dropout_prob", default: 0.1)),
      attentionDropout: Float(try reader.probability("attention_probs_dropout_prob", default: 0.1)),
      classifierDropout: try reader.optionalProbability("classifier_dropout").map { Float($0) })
    // Hugging Face writes id2label (omitted for 2 labels) rather than num_labels.
    var classes: Int?
    if let labels = reader.fields["id2label"] {
      guard let map = labels as? [String: Any], !map.isEmpty else {
        throw reader.error("id2label must be a non-empty object of index → label")
      }
      classes = map.count
    } else if reader.fields["num_labels"] != nil {
      classes = try reader.positiveInt("num_labels")
    }
    return .bert(configuration, classes: classes)
  }

  private static func vgg(_ reader: FieldReader) throws(CheckpointError) -> Architecture {
    guard let entries = reader.fields["cfg"] as? [Any], !entries.isEmpty else {
      throw reader.error(
        "cfg must be a non-empty list of conv widths and \"M\"", fix: "e.g. [64, \"M\", 128, \"M\"]"
      )
    }
    var stages: [VGGConfiguration.Stage] = []
    for entry in entries {
      if let text = entry as? String, text == "M" {
        stages.append(.maxPool)
      } else if let width = entry as? Int, width > 0, !isJSONBoolean(entry) {
        stages.append(.convolution(channels: width))
      } else {
        throw reader.error("cfg entry \(entry) is neither a positive width nor \"M\"")
      }
    }
    guard stages.contains(where: { $0 != .maxPool }) else {
      throw reader.error("cfg has no convolution")
    }
    var hidden: [Int] = []
    if let widths = reader.fields["classifier_hidden"] {
      guard let list = widths as? [Int], list.allSatisfy({ $0 > 0 }) else {
        throw reader.error("classifier_hidden must be a list of positive widths")
      }
      hidden = list
    } else {
      hidden = [4096, 4096]
    }
    var averagePool: Int? = 7
    if let value = reader.fields["avgpool"] {
      if value is NSNull {
        averagePool = nil
      } else {
        averagePool = try reader.positiveInt("avgpool")
      }
    }
    let imageSize = try reader.positiveInt("image_size", default: 224)
    let pools = stages.filter { $0 == .maxPool }.count
    guard imageSize >> pools >= 1 else {
      throw reader.error(
        "image_size \(imageSize) is too small for \(pools) max-pools",
        fix: "use an image_size of at least \(1 << pools)")
    }
    let channels = try reader.positiveInt("in_channels", default: 3)
    return .vgg(
      VGGConfiguration(
        stages: stages, batchNorm: try reader.bool("batch_norm", default: false),
        inChannels: channels, imageSize: imageSize,
        classCount: try reader.positiveInt("num_classes", default: 1000),
        classifierHidden: hidden, averagePool: averagePool,
        dropout: Float(try reader.probability("dropout", default: 0.5))))
  }
}

/// Typed access to config.json fields with errors that name the field.
private struct FieldReader {
  var path: String
  var fields: [String: Any]

  func error(_ problem: String, fix: String? = nil) -> CheckpointError {
    CheckpointError(file: path, problem: problem, fix: fix)
  }

  func string(_ key: String, default fallback: String?) throws(CheckpointError) -> String? {
    guard let value = fields[key], !(value is NSNull) else { return fallback }
    guard let text = value as? String else { throw error("\(key) must be a string") }
    return text
  }

  func positiveInt(_ key: String, default fallback: Int? = nil) throws(CheckpointError) -> Int {
    guard let value = fields[key], !(value is NSNull) else {
      if let fallback { return fallback }
      throw error("config.json lacks \(key)", fix: "add \"\(key)\": <positive integer>")
    }
    guard let number = value as? NSNumber, !isJSONBoolean(value),
      number.doubleValue == number.doubleValue.rounded(), number.doubleValue >= 1,
      number.doubleValue < 1e9
    else { throw error("\(key) must be a positive integer, not \(value)") }
    return number.intValue
  }

  func number(_ key: String, default fallback: Double) throws(CheckpointError) -> Double {
    guard let value = fields[key], !(value is NSNull) else { return fallback }
    guard let number = value as? NSNumber, !isJSONBoolean(value), number.doubleValue.isFinite,
      number.doubleValue > 0
    else { throw error("\(key) must be a positive number, not \(value)") }
    return number.doubleValue
  }

  func optionalProbability(_ key: String) throws(CheckpointError) -> Double? {
    guard let value = fields[key], !(value is NSNull) else { return nil }
    guard let number = value as? NSNumber, !isJSONBoolean(value), number.doubleValue >= 0,
      number.doubleValue < 1
    else { throw error("\(key) must be a probability in [0, 1), not \(value)") }
    return number.doubleValue
  }

  func probability(_ key: String, default fallback: Double) throws(CheckpointError) -> Double {
    try optionalProbability(key) ?? fallback
  }

  func bool(_ key: String, default fallback: Bool) throws(CheckpointError) -> Bool {
    guard let value = fields[key], !(value is NSNull) else { return fallback }
    guard isJSONBoolean(value), let number = value as? NSNumber else {
      throw error("\(key) must be true or false, not \(value)")
    }
    return number.boolValue
  }
}

/// True for JSON `true`/`false`: JSONSerialization gives every number as NSNumber, and on Linux
/// `1 is Bool` holds too, so the stored type code tells booleans apart.
func isJSONBoolean(_ value: Any) -> Bool {
  guard let number = value as? NSNumber else { return false }
  return String(cString: number.objCType) == "c"
}
