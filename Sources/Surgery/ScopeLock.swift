import Foundation
import Manifest
import Models
import Plumbing

/// A manifest's resolved scope, pinned (`M.lock.json`): the model's fingerprint and, for every
/// node, what the surgery does to it. `validate` and `apply` compare the plan with it, so a new
/// model version, a widened selector or an edited rule cannot change what trains unnoticed.
public struct ScopeLock: Sendable, Equatable, Codable {
  public static let formatVersion = 1

  public struct ModelIdentity: Sendable, Equatable, Codable {
    /// FNV-1a 64 of the computation-changing configuration fields and every tensor name and
    /// shape, as 16 hex digits.
    public var fingerprint: String
    public var family: String
    /// The configuration fields that change what the model computes, by config.json name.
    public var config: [String: String]
    public var tensors: Int
  }

  public struct Node: Sendable, Equatable, Codable {
    public var name: String
    /// wrapped, frozen or trained.
    public var action: String
    /// The adapter rank of a wrapped node (the cap when `budget`).
    public var rank: Int?
    /// True when a budget decides the rank at apply, from the weights.
    public var budget: Bool?
    /// The 1-based index of the rule that decided the node; nil for the defaults.
    public var rule: Int?
    /// The node's parameters by their name inside the node ("weight", "bias").
    public var shapes: [String: [Int]]

    /// The node as a diff line shows it: "lora r16 [128, 128]".
    var summary: String {
      var parts: [String] = []
      switch action {
      case "wrapped":
        parts.append(budget == true ? "lora budget r≤\(rank ?? 0)" : "lora r\(rank ?? 0)")
      default: parts.append(action)
      }
      if let weight = shapes["weight"] {
        parts.append("[" + weight.map(String.init).joined(separator: ", ") + "]")
      }
      return parts.joined(separator: "  ")
    }
  }

  public var format: Int
  public var manifest: String
  public var model: ModelIdentity
  public var nodes: [Node]
  public var counts: PlanCounts

  enum CodingKeys: String, CodingKey {
    case format = "surgeon_lock"
    case manifest, model, nodes, counts
  }

  /// The lock of a compiled plan.
  public init(_ rewrite: Rewrite, manifest: Manifest) {
    format = Self.formatVersion
    self.manifest = (manifest.file as NSString).lastPathComponent
    model = Self.identity(of: rewrite.original)
    let original = Dictionary(
      rewrite.original.nodes.map { ($0.name, $0) }, uniquingKeysWith: { first, _ in first })
    nodes = rewrite.actions.map { action in
      var shapes: [String: [Int]] = [:]
      for parameter in original[action.node]?.parameters ?? [] {
        let local =
          parameter.name.hasPrefix(action.node + ".")
          ? String(parameter.name.dropFirst(action.node.count + 1)) : parameter.name
        shapes[local] = parameter.shape
      }
      return Node(
        name: action.node, action: action.kind.rawValue, rank: action.rank,
        budget: action.budgeted ? true : nil, rule: action.rule, shapes: shapes)
    }
    counts = PlanCounts(rewrite)
  }

  /// Where the lock of the manifest at `path` lives: beside it, `NAME.lock.json`.
  public static func path(forManifest path: String) -> String {
    let url = path as NSString
    let ext = url.pathExtension
    let stem = ext == "yaml" || ext == "yml" ? url.deletingPathExtension : path
    return stem + ".lock.json"
  }

  /// Pretty-printed with sorted keys: the same plan gives the same bytes, and diffs review well.
  public func json() -> String {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
    let data = (try? encoder.encode(self)) ?? Data()
    return String(decoding: data, as: UTF8.self) + "\n"
  }

  /// Reads a lock; a damaged or foreign file is an error naming it.
  public static func read(_ path: String) throws(ScopeLockError) -> ScopeLock {
    guard let data = FileContents.read(path) else {
      throw ScopeLockError(message: "cannot read \(path)")
    }
    if let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any],
      let version = object["surgeon_lock"] as? Int, version != formatVersion
    {
      throw ScopeLockError(
        message: "\(path) is lock format \(version); this surgeon reads format \(formatVersion)",
        fix: "write it again with: surgeon plan MANIFEST --lock")
    }
    do {
      return try JSONDecoder().decode(ScopeLock.self, from: data)
    } catch {
      throw ScopeLockError(
        message: "\(path) is not a surgeon lock file (\(describe(error)))",
        fix: "write it again with: surgeon plan MANIFEST --lock")
    }
  }

  private static func describe(_ error: Error) -> String {
    switch error as? DecodingError {
    case .keyNotFound(let key, _)?: return "no '\(key.stringValue)'"
    case .typeMismatch(_, let context)?, .valueNotFound(_, let context)?:
      return "wrong type at \(context.codingPath.map(\.stringValue).joined(separator: "."))"
    case .dataCorrupted?: return "not valid JSON"
    default: return "\(error)"
    }
  }

  /// What the plan's model is: its family, the configuration fields that change its function
  /// (dropout rates do not), and every parameter's name and shape.
  public static func identity(of model: Model) -> ModelIdentity {
    var config: [String: String] = [:]
    switch model {
    case .bert(let bert):
      let c = bert.configuration
      config = [
        "vocab_size": String(c.vocabularySize), "hidden_size": String(c.hiddenSize),
        "num_hidden_layers": String(c.layerCount), "num_attention_heads": String(c.headCount),
        "intermediate_size": String(c.intermediateSize), "hidden_act": c.activation.rawValue,
        "layer_norm_eps": "\(c.layerNormEpsilon)",
        "max_position_embeddings": String(c.maxPositions),
        "type_vocab_size": String(c.typeVocabularySize),
      ]
    case .vgg(let vgg):
      let c = vgg.configuration
      config = [
        "cfg": c.stages.map {
          if case .convolution(let channels) = $0 { return String(channels) }
          return "M"
        }.joined(separator: ","),
        "batch_norm": String(c.batchNorm), "in_channels": String(c.inChannels),
        "image_size": String(c.imageSize),
        "classifier_hidden": c.classifierHidden.map(String.init).joined(separator: ","),
        "avgpool": c.averagePool.map(String.init) ?? "none",
      ]
    }
    config["num_labels"] = model.classCount.map(String.init) ?? "none"
    let tensors = model.nodes.flatMap(\.parameters).sorted { $0.name < $1.name }
    var text = "family=\(model.family)\n"
    for (key, value) in config.sorted(by: { $0.key < $1.key }) { text += "\(key)=\(value)\n" }
    for tensor in tensors {
      text += "\(tensor.name) \(tensor.shape.map(String.init).joined(separator: "x"))\n"
    }
    var hash: UInt64 = 0xcbf2_9ce4_8422_2325
    for byte in text.utf8 {
      hash ^= UInt64(byte)
      hash = hash &* 0x100_0000_01b3
    }
    let hex = String(hash, radix: 16)
    return ModelIdentity(
      fingerprint: String(repeating: "0", count: 16 - hex.count) + hex, family: model.family,
      config: config, tensors: tensors.count)
  }

  /// The differences between this (locked) scope and `current`, as errors: the model's at
  /// `model.checkpoint`/`model.preset`, the nodes' at the rule that decides them now (or did).
  public func drift(
    to current: ScopeLock, rules: [RuleMatch], manifest: Manifest, lockPath: String
  ) -> [Diagnostic] {
    let accept = "if the change is intended, accept it with --update-lock"
    var result: [Diagnostic] = []
    if model.fingerprint != current.model.fingerprint {
      var changes: [String] = []
      if model.family != current.model.family {
        changes.append("family \(model.family) → \(current.model.family)")
      }
      for key in Set(model.config.keys).union(current.model.config.keys).sorted()
      where model.config[key] != current.model.config[key] {
        changes.append(
          "\(key) \(model.config[key] ?? "(none)") → \(current.model.config[key] ?? "(none)")")
      }
      if changes.isEmpty {
        changes.append(
          "tensor names or shapes (\(model.tensors) tensors locked, \(current.model.tensors) now)")
      }
      result.append(
        Diagnostic(
          location: manifest.model.source.location, severity: .error,
          message:
            "the model differs from \(lockPath) (fingerprint \(model.fingerprint) → \(current.model.fingerprint)): "
            + changes.joined(separator: ", ") + "; \(accept)"))
    }
    let locked = Dictionary(nodes.map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
    let now = Dictionary(current.nodes.map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
    func location(ofRule index: Int?) -> SourceLocation? {
      guard let index, index >= 1, index <= rules.count else { return nil }
      return rules[index - 1].location
    }
    var lines: [SourceLocation: [String]] = [:]
    let fallback = manifest.model.source.location
    let order = current.nodes.map(\.name) + nodes.map(\.name).filter { now[$0] == nil }
    for name in order {
      let before = locked[name]
      let after = now[name]
      guard before != after else { continue }
      // Same decision, only the deciding rule's index moved (a rule inserted above): no drift.
      if var moved = before, let after, moved.rule != after.rule {
        moved.rule = after.rule
        if moved == after { continue }
      }
      let at = location(ofRule: after?.rule) ?? location(ofRule: before?.rule) ?? fallback
      if let before { lines[at, default: []].append("- \(name)  \(before.summary)") }
      if let after { lines[at, default: []].append("+ \(name)  \(after.summary)") }
    }
    for (at, diff) in lines.sorted(by: { $0.key < $1.key }) {
      let changed = Set(diff.map { $0.split(separator: " ")[1] }).count
      result.append(
        Diagnostic(
          location: at, severity: .error,
          message:
            "the plan differs from \(lockPath) for \(changed) node\(changed == 1 ? "" : "s") (\(accept)):\n"
            + diff.map { "    " + $0 }.joined(separator: "\n")))
    }
    return result
  }
}

public struct ScopeLockError: Error, Sendable {
  public var message: String
  public var fix: String?

  public init(message: String, fix: String? = nil) {
    self.message = message
    self.fix = fix
  }
}
