import Foundation
import Plumbing
import SafeTensors
import Tensor

/// A model loaded from a checkpoint directory, with what the loader noticed but did not use.
public struct LoadedCheckpoint: Sendable {
  public var model: Model
  public var directory: URL
  /// Tensors in the file that no node uses (a pre-training head, say), one line each.
  public var warnings: [String]
  /// The safetensors `__metadata__` (surgeon's checkpoints carry `surgeon.trainable` and the
  /// manifest).
  public var metadata: [String: String] = [:]

  /// The trainable tensors a surgeon checkpoint recorded (nil for other checkpoints).
  public var recordedTrainable: Set<String>? {
    guard let text = metadata["surgeon.trainable"],
      let names = try? JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String]
    else { return nil }
    return Set(names)
  }
}

/// Loads `config.json` + `model.safetensors` directories (docs/manifest.md's input checkpoints).
public enum CheckpointLoader {
  /// Buffers checkpoints carry that are not parameters of any node.
  static func isKnownBuffer(_ name: String) -> Bool {
    name.hasSuffix("embeddings.position_ids") || name.hasSuffix(".running_mean")
      || name.hasSuffix(".running_var") || name.hasSuffix(".num_batches_tracked")
  }

  /// The architecture alone (config.json): enough for summaries and validation.
  public static func architecture(directory: URL) throws(CheckpointError) -> Architecture {
    try checkDirectory(directory)
    return try ConfigurationFile.read(directory.appendingPathComponent("config.json"))
  }

  private static func checkDirectory(_ directory: URL) throws(CheckpointError) {
    if directory.path.hasPrefix("hf:/") {
      throw CheckpointError(
        file: directory.path, problem: "hub checkpoints cannot be downloaded by this command",
        fix:
          "download config.json, model.safetensors and vocab.txt into a directory and pass its path"
      )
    }
    var isDirectory: ObjCBool = false
    guard FileManager.default.fileExists(atPath: directory.path, isDirectory: &isDirectory) else {
      throw CheckpointError(
        file: directory.path, problem: "no such checkpoint directory",
        fix: "pass a directory holding config.json and model.safetensors")
    }
    guard isDirectory.boolValue else {
      throw CheckpointError(
        file: directory.path, problem: "a checkpoint is a directory, not a file",
        fix: "pass the directory that holds config.json and model.safetensors")
    }
  }

  public static func load(directory: URL) throws(CheckpointError) -> LoadedCheckpoint {
    let architecture = try architecture(directory: directory)
    let weightsURL = directory.appendingPathComponent("model.safetensors")
    guard FileManager.default.fileExists(atPath: weightsURL.path) else {
      let pickle = directory.appendingPathComponent("pytorch_model.bin")
      if FileManager.default.fileExists(atPath: pickle.path) {
        throw CheckpointError(
          file: pickle.path,
          problem: "only a pytorch_model.bin (pickle) is here; surgeon never unpickles",
          fix:
            "convert it once with: python3 -c \"import torch; from safetensors.torch import save_file; sd = torch.load('\(pickle.path)', map_location='cpu', weights_only=True); save_file({k: v.contiguous() for k, v in sd.items()}, '\(weightsURL.path)')\""
        )
      }
      throw CheckpointError(
        file: weightsURL.path, problem: "model.safetensors is missing",
        fix: "put the weights as model.safetensors beside config.json")
    }
    let file: SafeTensorsFile
    do {
      file = try SafeTensorsFile.read(contentsOf: weightsURL)
    } catch {
      throw CheckpointError(file: error.file, problem: error.problem, fix: error.fix)
    }
    var floats: [String: Tensor] = [:]
    var integers: [String: [Int64]] = [:]
    for (name, stored) in file.tensors {
      switch stored {
      case .float(let tensor): floats[name] = tensor
      case .integer(_, let values, _): integers[name] = values
      }
    }
    return try build(
      architecture, directory: directory, floats: floats, integers: integers,
      metadata: file.metadata)
  }

  /// The model with every shape, name and adapter of the checkpoint but zero values, from
  /// config.json and the safetensors header only: no tensor data is read (plans, validation and
  /// summaries need shapes; a 440 MB checkpoint costs one small read). The weights must still
  /// match config.json, as for `load`.
  public static func loadShapes(directory: URL) throws(CheckpointError) -> LoadedCheckpoint {
    let architecture = try architecture(directory: directory)
    let weightsURL = directory.appendingPathComponent("model.safetensors")
    guard FileManager.default.fileExists(atPath: weightsURL.path) else {
      throw CheckpointError(
        file: weightsURL.path, problem: "model.safetensors is missing",
        fix: "put the weights as model.safetensors beside config.json")
    }
    let header: SafeTensorsHeader
    do {
      header = try SafeTensorsFile.readHeader(contentsOf: weightsURL)
    } catch {
      throw CheckpointError(file: error.file, problem: error.problem, fix: error.fix)
    }
    var floats: [String: Tensor] = [:]
    var integers: [String: [Int64]] = [:]
    for (name, entry) in header.tensors {
      switch entry.dtype {
      // calloc'ed zeros: no memory is touched for shapes nobody reads.
      case .float32, .float16, .bfloat16: floats[name] = Tensor(zeros: entry.shape)
      case .int64, .int32:
        integers[name] = [Int64](repeating: 0, count: Tensor.elementCount(of: entry.shape))
      }
    }
    return try build(
      architecture, directory: directory, floats: floats, integers: integers,
      metadata: header.metadata)
  }

  private static func build(
    _ architecture: Architecture, directory: URL, floats: [String: Tensor],
    integers: [String: [Int64]], metadata: [String: String]
  ) throws(CheckpointError) -> LoadedCheckpoint {
    // The file's own tensors, before zero base weights stand in for exported nodes.
    let stored = Set(floats.keys).union(integers.keys)
    var floats = floats
    let weightsURL = directory.appendingPathComponent("model.safetensors")
    let adapters = try adapterRecords(directory.appendingPathComponent("config.json"))
    let prefix = floats["bert.embeddings.word_embeddings.weight"] != nil ? "bert." : ""
    // An exported node has no base weight; the graph is built with a zero one (never read).
    let shapes = Model(architecture: architecture, initialization: .zeros, bertPrefix: prefix)
    for node in shapes.nodes where adapters[node.name]?.form == "exported" {
      if let weight = node.parameters.first { floats[weight.name] = Tensor(zeros: weight.shape) }
    }
    let source = WeightSource(tensors: floats)
    var model: Model
    do throws(WeightError) {
      switch architecture {
      case .bert(let configuration, let classes):
        let bert = try BertModel(configuration: configuration, prefix: prefix, loading: source)
        if let classes, let head = bert.classCount, head != classes {
          throw WeightError(
            "classifier.weight has \(head) rows but config.json's id2label names \(classes) labels"
          )
        }
        model = .bert(bert)
      case .vgg(let configuration):
        var vgg = try VGGModel(configuration: configuration, loading: source)
        for index in vgg.features.indices {
          if case .batchNorm(var norm) = vgg.features[index],
            let tracked = integers[norm.name + ".num_batches_tracked"]?.first
          {
            norm.batchesTracked = tracked
            vgg.features[index] = .batchNorm(norm)
          }
        }
        model = .vgg(vgg)
      }
      if !adapters.isEmpty {
        model = try attachAdapters(
          adapters, to: model, tensors: floats, decay: decayFactors(metadata))
      }
    } catch {
      throw CheckpointError(
        file: weightsURL.path, problem: error.description,
        fix:
          "the weights must match config.json (\(directory.appendingPathComponent("config.json").path))"
      )
    }
    let used = Set(model.namedParameters.map(\.0))
    let unused = stored.filter {
      !used.contains($0) && !isKnownBuffer($0)
    }.sorted()
    let warnings = unused.map {
      "\(weightsURL.path): warning: tensor '\($0)' is not used by any node"
    }
    return LoadedCheckpoint(
      model: model, directory: directory, warnings: warnings, metadata: metadata)
  }
}

extension CheckpointLoader {
  /// `surgeon_adapters` of a config.json (empty for a plain checkpoint).
  static func adapterRecords(_ url: URL) throws(CheckpointError) -> [String: AdapterRecord] {
    guard let data = FileContents.read(url.path),
      let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any],
      let entries = object["surgeon_adapters"]
    else { return [:] }
    guard let map = entries as? [String: Any] else {
      throw CheckpointError(file: url.path, problem: "surgeon_adapters must be an object")
    }
    var records: [String: AdapterRecord] = [:]
    for (node, value) in map {
      guard let fields = value as? [String: Any], let rank = fields["rank"] as? Int, rank >= 1,
        let scale = (fields["scale"] as? NSNumber)?.floatValue, scale.isFinite,
        let form = fields["form"] as? String,
        ["lora", "lowrank", "loralib", "exported"].contains(form)
      else {
        throw CheckpointError(
          file: url.path,
          problem:
            "surgeon_adapters.\(node) must be {rank: integer ≥ 1, scale: number, form: lora | lowrank | loralib | exported}"
        )
      }
      records[node] = AdapterRecord(rank: rank, scale: scale, form: form)
    }
    return records
  }

  /// `surgeon.decay` metadata: node → d at save time.
  static func decayFactors(_ metadata: [String: String]) -> [String: Float] {
    guard let text = metadata["surgeon.decay"],
      let object = try? JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any]
    else { return [:] }
    return object.compactMapValues { ($0 as? NSNumber)?.floatValue }
  }

  static func attachAdapters(
    _ records: [String: AdapterRecord], to model: Model, tensors: [String: Tensor],
    decay: [String: Float]
  ) throws(WeightError) -> Model {
    var model = model
    var failure: WeightError?
    var attached = Set<String>()
    func adapter(for name: String, convolution: Bool) -> LowRankAdapter? {
      guard let record = records[name], failure == nil else { return nil }
      let exported = record.form == "exported"
      let names =
        exported
        ? (name + ".down.weight", name + ".up.weight", name + ".up.bias")
        : (name + ".lora_A", name + ".lora_B", name + ".lora_C")
      guard let down = tensors[names.0], let up = tensors[names.1] else {
        failure = WeightError(
          "missing tensor '\(tensors[names.0] == nil ? names.0 : names.1)' of the adapter config.json records for \(name)"
        )
        return nil
      }
      var result = LowRankAdapter(
        node: name, rank: record.rank, down: down, up: up, bias: tensors[names.2],
        scale: record.scale)
      result.convForm = record.form == "loralib" ? .loralib : .lowrank
      result.isExported = exported
      result.decay = exported ? 0 : (decay[name] ?? 1)
      attached.insert(name)
      return result
    }
    model.visitWrappable(
      linear: { layer in
        if let adapter = adapter(for: layer.name, convolution: false) {
          layer.adapter = adapter
          if adapter.isExported { layer.bias = nil }
        }
      },
      convolution: { layer in
        if let adapter = adapter(for: layer.name, convolution: true) {
          layer.adapter = adapter
          if adapter.isExported { layer.bias = nil }
        }
      })
    if let failure { throw failure }
    if let stray = Set(records.keys).subtracting(attached).sorted().first {
      throw WeightError(
        "config.json records an adapter for '\(stray)', which is not a Linear or Conv2d node")
    }
    return model
  }
}

extension Model {
  /// Every parameter and buffer by checkpoint name, as a safetensors file stores them.
  public var storedTensors: [String: StoredTensor] {
    var result: [String: StoredTensor] = [:]
    for (name, tensor) in namedParameters { result[name] = .float(tensor) }
    switch self {
    case .bert(let model):
      let length = model.configuration.maxPositions
      result[model.prefix + "embeddings.position_ids"] = .integer(
        shape: [1, length], values: (0..<Int64(length)).map { $0 }, dtype: .int64)
    case .vgg(let model):
      for feature in model.features {
        if case .batchNorm(let norm) = feature {
          result[norm.name + ".running_mean"] = .float(norm.runningMean)
          result[norm.name + ".running_var"] = .float(norm.runningVariance)
          result[norm.name + ".num_batches_tracked"] = .integer(
            shape: [], values: [norm.batchesTracked], dtype: .int64)
        }
      }
    }
    return result
  }
}
