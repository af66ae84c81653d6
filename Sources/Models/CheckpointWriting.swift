import Foundation
import Plumbing
import SafeTensors
import Tensor

/// How a wrapped node's adapter is recorded in `config.json` (`surgeon_adapters`), so that a
/// checkpoint surgeon wrote loads back with the same computation.
public struct AdapterRecord: Codable, Sendable, Equatable {
  public var rank: Int
  public var scale: Float
  /// `lora` (Linear), `lowrank` or `loralib` (Conv2d), or `exported` (W deleted, factors only).
  public var form: String

  public init(rank: Int, scale: Float, form: String) {
    self.rank = rank
    self.scale = scale
    self.form = form
  }
}

extension Model {
  /// The architecture this graph has (its head included).
  public var architecture: Architecture {
    switch self {
    case .bert(let model): return .bert(model.configuration, classes: model.classCount)
    case .vgg(let model): return .vgg(model.configuration)
    }
  }

  /// Every adapter, by node: what `config.json` records.
  public var adapterRecords: [String: AdapterRecord] {
    var records: [String: AdapterRecord] = [:]
    func record(_ adapter: LowRankAdapter?, isConvolution: Bool) {
      guard let adapter else { return }
      let form =
        adapter.isExported ? "exported" : isConvolution ? adapter.convForm.rawValue : "lora"
      records[adapter.node] = AdapterRecord(rank: adapter.rank, scale: adapter.scale, form: form)
    }
    var copy = self
    copy.visitWrappable(
      linear: { record($0.adapter, isConvolution: false) },
      convolution: { record($0.adapter, isConvolution: true) })
    return records
  }

  /// Each adapter's decay factor `d`, by node (the `surgeon.decay` metadata).
  public var decayFactors: [String: Float] {
    var factors: [String: Float] = [:]
    var copy = self
    copy.visitWrappable(
      linear: { if let adapter = $0.adapter { factors[adapter.node] = adapter.decay } },
      convolution: { if let adapter = $0.adapter { factors[adapter.node] = adapter.decay } })
    return factors
  }

  /// `config.json` for this graph: Hugging Face's BERT fields or the VGG format of docs/manifest.md, plus
  /// `surgeon_adapters` for wrapped nodes. A BERT with adapters is no architecture transformers
  /// knows (it would drop the adapters, or initialise missing W at random, and still load), so
  /// it is named `SurgeonLowRankBert…` with model type `surgeon_lowrank_bert`, which
  /// transformers refuses; `merged()` gives the form it loads.
  public func configurationJSON(labelNames: [String]? = nil) throws -> String {
    var object: [String: Any] = [:]
    switch self {
    case .bert(let model):
      let c = model.configuration
      let plain = adapterRecords.isEmpty
      let head = model.classCount == nil ? "Model" : "ForSequenceClassification"
      object = [
        "model_type": plain ? "bert" : SurgeonArchitecture.lowRankBertModelType,
        "architectures": [(plain ? "Bert" : SurgeonArchitecture.lowRankBertPrefix) + head],
        "hidden_size": c.hiddenSize, "num_hidden_layers": c.layerCount,
        "num_attention_heads": c.headCount, "intermediate_size": c.intermediateSize,
        "hidden_act": c.activation.rawValue, "layer_norm_eps": Double(c.layerNormEpsilon),
        "max_position_embeddings": c.maxPositions, "type_vocab_size": c.typeVocabularySize,
        "vocab_size": c.vocabularySize, "hidden_dropout_prob": Double(c.hiddenDropout),
        "attention_probs_dropout_prob": Double(c.attentionDropout),
        "position_embedding_type": "absolute", "pad_token_id": 0,
      ]
      if let dropout = c.classifierDropout { object["classifier_dropout"] = Double(dropout) }
      if let classes = model.classCount {
        let names = labelNames ?? (0..<classes).map { "LABEL_\($0)" }
        object["id2label"] = Dictionary(
          uniqueKeysWithValues: names.enumerated().map { (String($0.offset), $0.element) })
        object["label2id"] = Dictionary(
          uniqueKeysWithValues: names.enumerated().map { ($0.element, $0.offset) })
      }
    case .vgg(let model):
      let c = model.configuration
      object = [
        "model_type": "vgg",
        "cfg": c.stages.map { stage -> Any in
          switch stage {
          case .maxPool: return "M"
          case .convolution(let width): return width
          }
        },
        "batch_norm": c.batchNorm, "in_channels": c.inChannels, "image_size": c.imageSize,
        "num_classes": c.classCount, "classifier_hidden": c.classifierHidden,
        "avgpool": c.averagePool.map { $0 as Any } ?? NSNull(), "dropout": Double(c.dropout),
      ]
      if let labelNames { object["labels"] = labelNames }
    }
    let records = adapterRecords
    if !records.isEmpty {
      object["surgeon_adapters"] = records.mapValues {
        ["rank": $0.rank, "scale": Double($0.scale), "form": $0.form] as [String: Any]
      }
    }
    let data = try JSONSerialization.data(
      withJSONObject: object, options: [.prettyPrinted, .sortedKeys])
    return String(decoding: data, as: UTF8.self) + "\n"
  }

  /// The W-free model: every wrapped layer becomes its exported factors (`down = A`,
  /// `up = s·B`, `C`), its frozen weight deleted. A loralib conv, whose adapter is a full
  /// kernel, is merged back into a plain conv instead (`W' = s·reshape(B·A)`, bias `C`): it
  /// compresses nothing, and says so in the summary.
  public func exported() -> Model {
    var result = self
    result.visitWrappable(
      linear: { layer in
        guard let adapter = layer.adapter, !adapter.isExported else { return }
        layer.adapter = adapter.exported()
        layer.weight = Tensor(zeros: layer.weight.shape)  // never read: d = 0, no noise
        layer.bias = nil
      },
      convolution: { layer in
        guard let adapter = layer.adapter, !adapter.isExported else { return }
        if adapter.convForm == .loralib {
          var merged = adapter.up.matmul(adapter.down).reshaped(layer.weight.shape)
          merged.scale(by: adapter.scale)
          layer.weight = merged
          layer.bias = adapter.bias
          layer.adapter = nil
        } else {
          layer.adapter = adapter.exported()
          layer.weight = Tensor(zeros: layer.weight.shape)
          layer.bias = nil
        }
      })
    return result
  }

  /// Wrapped nodes whose decay factor is not 0 (export would change their output).
  public var nodesWithFrozenWeight: [String] {
    decayFactors.filter { $0.value != 0 }.map(\.key).sorted()
  }
}

/// surgeon's own names for graphs no other library computes.
public enum SurgeonArchitecture {
  /// `config.json`'s `model_type` of a BERT with adapters (rewritten or W-free).
  public static let lowRankBertModelType = "surgeon_lowrank_bert"
  /// The `architectures` entry of such a BERT, before `Model` or `ForSequenceClassification`.
  public static let lowRankBertPrefix = "SurgeonLowRankBert"
}

/// Writes a model as a checkpoint directory (`config.json` + `model.safetensors`) that
/// `CheckpointLoader` — and PyTorch / Hugging Face, for the tensors — read back.
public enum CheckpointWriter {
  /// `metadata` is added to the safetensors `__metadata__` beside `surgeon.format` and
  /// `surgeon.decay`. Each file is written atomically.
  public static func write(
    _ model: Model, to directory: URL, metadata: [String: String] = [:],
    labelNames: [String]? = nil
  ) throws {
    try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    var allMetadata = metadata
    allMetadata["surgeon.format"] = "1"
    let decay = model.decayFactors
    if !decay.isEmpty {
      let data = try JSONSerialization.data(
        withJSONObject: decay.mapValues { Double($0) }, options: [.sortedKeys])
      allMetadata["surgeon.decay"] = String(decoding: data, as: UTF8.self)
    }
    let file = SafeTensorsFile(tensors: model.storedTensors, metadata: allMetadata)
    try file.write(to: directory.appendingPathComponent("model.safetensors"))
    let configuration = try model.configurationJSON(labelNames: labelNames)
    try DurableFile.write(
      Data(configuration.utf8), to: directory.appendingPathComponent("config.json"))
  }
}
