import Foundation
import Plumbing

/// Reads manifests of format 1: YAML through libyaml, then every key checked against the
/// contract in docs/manifest.md.
public enum ManifestDecoder {
  /// Parses and decodes `text`; the manifest is nil when there is any error.
  ///
  /// Decoding does not stop at the first problem: every error and warning of the file is
  /// returned, sorted by position, so one run of `surgeon validate` shows them all.
  public static func decode(text: String, file: String) -> (
    manifest: Manifest?, diagnostics: [Diagnostic]
  ) {
    decode(bytes: Array(text.utf8), file: file)
  }

  /// As `decode(text:file:)` for raw bytes (a file, standard input), which must be UTF-8.
  public static func decode(bytes: [UInt8], file: String) -> (
    manifest: Manifest?, diagnostics: [Diagnostic]
  ) {
    let (root, parseDiagnostics) = YAMLParser.parse(bytes: bytes, file: file)
    guard let root else { return (nil, parseDiagnostics) }
    guard let text = String(validating: bytes, as: UTF8.self) else {
      let error = Diagnostic(
        location: SourceLocation(file: file, line: 1, column: 1), severity: .error,
        message: "manifest is not valid UTF-8", fix: "save the file as UTF-8 text")
      return (nil, [error])
    }
    var context = DecodingContext(file: file)
    let manifest = context.manifest(root, text: text)
    return (context.hasErrors ? nil : manifest, context.sortedDiagnostics)
  }

  /// Reads and decodes the file at `path`; a file that cannot be read is one diagnostic at
  /// 1:1 that names it.
  public static func decode(contentsOf path: String) -> (
    manifest: Manifest?, diagnostics: [Diagnostic]
  ) {
    let start = SourceLocation(file: path, line: 1, column: 1)
    func failure(_ message: String, fix: String? = nil) -> (Manifest?, [Diagnostic]) {
      (nil, [Diagnostic(location: start, severity: .error, message: message, fix: fix)])
    }
    var isDirectory: ObjCBool = false
    guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
      return failure("cannot read manifest \(path): no such file", fix: "check the path")
    }
    if isDirectory.boolValue {
      return failure(
        "cannot read manifest \(path): it is a directory", fix: "name a .yaml file inside it")
    }
    guard let handle = FileHandle(forReadingAtPath: path) else {
      return failure("cannot read manifest \(path): permission denied")
    }
    defer { try? handle.close() }
    // One byte past the limit is enough to report the size without reading a huge file.
    let limit = YAMLLimits().maxBytes
    let data: Data
    do {
      data = try handle.read(upToCount: limit + 1) ?? Data()
    } catch {
      return failure("cannot read manifest \(path): \(error.localizedDescription)")
    }
    if data.count > limit {
      let size =
        (try? FileManager.default.attributesOfItem(atPath: path)[.size] as? Int) ?? data.count
      return failure(
        "manifest is \(size) bytes; the limit is \(limit) bytes",
        fix: "a manifest is a short text file; is this the right file?")
    }
    return decode(bytes: [UInt8](data), file: path)
  }
}

/// Letters, digits and ".", "_", "-": names that are safe as a directory name.
private let nameCharacters = Set(
  "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")

extension DecodingContext {
  /// The whole document; records diagnostics and returns nil on any error.
  mutating func manifest(_ root: YAMLNode, text: String) -> Manifest? {
    if root.resolved == .null, root.tag == nil {
      error("manifest is empty", at: root.location, fix: "start it with 'surgeon: 1'")
      return nil
    }
    // The version first: a newer format may have other keys, so nothing else is reported.
    if case .mapping(let entries) = root.kind,
      let version = entries.first(where: { $0.key.scalarText == "surgeon" })?.value,
      case .int(let number) = version.resolved, number != 1
    {
      error(
        "unknown manifest format \(number)", at: version.location,
        fix: "this surgeon reads format 1")
      return nil
    }
    guard
      let fields = fields(
        of: root, path: nil, owner: root.location, allowed: ManifestKeys.top,
        aliases: ["version": "surgeon", "format": "surgeon", "rules": "surgery"])
    else { return nil }
    var failed = false

    if let version = fields["surgeon"] {
      if (try? integer(version, "surgeon")) == nil { failed = true }
    } else {
      missing("surgeon", in: fields, example: "surgeon: 1")
      failed = true
    }
    let name = required(fields, "name", example: "name: my-model", &failed) {
      context, node throws(Invalid) in try context.manifestName(node)
    }
    let model = required(
      fields, "model", example: "model: {family: bert, checkpoint: DIR}", &failed
    ) {
      context, node throws(Invalid) in
      try context.modelSection(node, owner: fields.keyLocation("model") ?? node.location)
    }
    let family = model?.family.value ?? peekFamily(fields["model"])
    let surgery =
      optional(fields, "surgery", &failed) { context, node throws(Invalid) in
        try context.surgery(node)
      } ?? []
    let train = optional(fields, "train", &failed) { context, node throws(Invalid) in
      try context.trainSection(
        node, owner: fields.keyLocation("train") ?? node.location, family: family)
    }
    let outputOwner = fields.keyLocation("output")
    let output: OutputSection?
    if let node = fields["output"], let outputOwner {
      // Read from the raw nodes: a broken train or surgery section must not make compress look
      // wrong as well.
      output = try? outputSection(
        node, owner: outputOwner, name: name, train: train, hasTrain: fields["train"] != nil,
        hasLoRA: hasLoRARule(fields["surgery"]))
    } else if let name {
      output = OutputSection(
        directory: Located("checkpoints/\(name.value)", at: name.location), compress: false,
        checkpointEvery: nil)
    } else {
      output = nil
    }
    if fields["output"] != nil, output == nil { failed = true }
    // init svd_whitened calibrates on training batches: without a train section there are none.
    if fields["train"] == nil {
      for case .lora(let rule) in surgery where rule.initialization.value == .svdWhitened {
        error(
          "init svd_whitened calibrates on training batches, and this manifest has no train section",
          at: rule.initialization.location,
          fix: "add train: with data (the calibration reads train.data), or use init: svd_residual")
        failed = true
      }
    }

    let expectations =
      optional(fields, "expect", &failed) { context, node throws(Invalid) in
        try context.expectations(node, owner: fields.keyLocation("expect") ?? node.location)
      } ?? []

    guard !failed, !hasErrors, let name, let model, let output else { return nil }
    var manifest = Manifest(
      file: file, text: text, name: name, model: model, surgery: surgery, train: train,
      output: output)
    manifest.expectations = expectations
    return manifest
  }

  /// The value of an optional key, nil when absent or invalid (then `failed` is set).
  mutating func optional<Value>(
    _ fields: Fields, _ key: String, _ failed: inout Bool,
    _ decode: (inout DecodingContext, YAMLNode) throws(Invalid) -> Value
  ) -> Value? {
    guard let node = fields[key] else { return nil }
    do {
      return try decode(&self, node)
    } catch {
      failed = true
      return nil
    }
  }

  /// The value of a required key; a missing key is reported at the section's owner.
  mutating func required<Value>(
    _ fields: Fields, _ key: String, example: String, _ failed: inout Bool,
    _ decode: (inout DecodingContext, YAMLNode) throws(Invalid) -> Value
  ) -> Value? {
    guard fields[key] != nil else {
      missing(key, in: fields, example: example)
      failed = true
      return nil
    }
    return optional(fields, key, &failed, decode)
  }

  mutating func manifestName(_ node: YAMLNode) throws(Invalid) -> Located<String> {
    let text = try string(node, "name")
    guard (1...100).contains(text.count), text.allSatisfy(nameCharacters.contains) else {
      error(
        "name must be 1 to 100 letters, digits, '.', '_' or '-', not \(describe(node))",
        at: node.location, fix: "for example: name: minilm-rotten-tomatoes")
      throw Invalid()
    }
    guard text != ".", text != ".." else {
      error(
        "name cannot be '\(text)': it names the default output directory", at: node.location,
        fix: "for example: name: minilm-rotten-tomatoes")
      throw Invalid()
    }
    return Located(text, at: node.location)
  }

  /// Whether the surgery list has a lora rule, read loosely (the rules may be broken).
  func hasLoRARule(_ node: YAMLNode?) -> Bool {
    guard case .sequence(let items)? = node?.kind else { return false }
    return items.contains { item in
      guard case .mapping(let entries) = item.kind else { return false }
      return entries.contains { $0.key.scalarText == "lora" }
    }
  }

  /// `model.family` read loosely, so a broken model section still lets `train.task` be checked.
  func peekFamily(_ node: YAMLNode?) -> ModelFamily? {
    guard case .mapping(let entries)? = node?.kind,
      let text = entries.first(where: { $0.key.scalarText == "family" })?.value.scalarText
    else { return nil }
    return ModelFamily(rawValue: text)
  }

  // MARK: model

  mutating func modelSection(_ node: YAMLNode, owner: SourceLocation) throws(Invalid)
    -> ModelSection
  {
    guard
      let fields = fields(
        of: node, path: "model", owner: owner, allowed: ManifestKeys.model,
        aliases: ["families": "family", "path": "checkpoint", "classes": "head"])
    else { throw Invalid() }
    var failed = false
    let family = required(fields, "family", example: "family: bert", &failed) {
      context, node throws(Invalid) in
      Located(try context.choice(node, "model.family", as: ModelFamily.self), at: node.location)
    }
    let checkpoint = optional(fields, "checkpoint", &failed) { context, node throws(Invalid) in
      Located(try context.checkpoint(node), at: node.location)
    }
    let preset = optional(fields, "preset", &failed) { context, node throws(Invalid) in
      try context.preset(node, family: family?.value)
    }
    let weights = optional(fields, "weights", &failed) { context, node throws(Invalid) in
      try context.weights(node)
    }
    let presence = (fields["checkpoint"] != nil, fields["preset"] != nil)
    var source: Located<ModelSource>?
    switch presence {
    case (true, true):
      let later = [fields.keyLocation("checkpoint"), fields.keyLocation("preset")].compactMap {
        $0
      }.max()
      error(
        "model has both checkpoint and preset", at: later ?? owner,
        fix: "keep one: checkpoint for trained weights, preset with weights: random for dry runs")
      failed = true
    case (false, false):
      error(
        "model needs a checkpoint or a preset", at: owner,
        fix: "add 'checkpoint: DIR' (or 'preset: bert-tiny' with 'weights: random')")
      failed = true
    case (true, false):
      if let location = fields.keyLocation("weights") {
        error(
          "weights: random is only for presets; a checkpoint brings its own weights",
          at: location, fix: "remove weights, or use preset instead of checkpoint")
        failed = true
      }
      source = checkpoint.map { Located(.checkpoint($0.value), at: $0.location) }
    case (false, true):
      if let preset, fields["weights"] == nil {
        error(
          "preset needs weights: random (presets have no pretrained weights offline)",
          at: preset.location, fix: "add 'weights: random' to model")
        failed = true
      }
      if let preset, weights != nil {
        source = Located(.preset(preset.value, randomWeights: true), at: preset.location)
      }
    }
    var overrides: [ConfigOverride] = []
    if let config = fields["config"], let location = fields.keyLocation("config") {
      if presence.0 && !presence.1 {
        error(
          "model.config overrides a preset's configuration; a checkpoint has its own config.json",
          at: location, fix: "remove config, or edit the checkpoint's config.json")
        failed = true
      } else if let decoded = try? configOverrides(config) {
        overrides = decoded
      } else {
        failed = true
      }
    }
    let head = optional(fields, "head", &failed) { context, node throws(Invalid) in
      try context.head(node, owner: fields.keyLocation("head") ?? node.location)
    }
    let seed =
      optional(fields, "seed", &failed) { context, node throws(Invalid) in
        try context.integer(node, "model.seed", in: 0...Int.max)
      } ?? 0
    guard !failed, let family, let source else { throw Invalid() }
    return ModelSection(
      family: family, source: source, configOverrides: overrides, headClasses: head, seed: seed)
  }

  /// A checkpoint directory or hf://ORG/NAME; other URLs are refused.
  mutating func checkpoint(_ node: YAMLNode) throws(Invalid) -> String {
    let text = try name(node, "model.checkpoint")
    if text.hasPrefix("hf://") {
      let parts = text.dropFirst(5).split(separator: "/", omittingEmptySubsequences: false)
      let valid =
        parts.count == 2
        && parts.allSatisfy { part in
          !part.isEmpty && part.first != "." && part.allSatisfy(nameCharacters.contains)
        }
      guard valid else {
        error(
          "model.checkpoint \(describe(node)) is not hf://ORG/NAME", at: node.location,
          fix: "for example: hf://sentence-transformers/all-MiniLM-L6-v2")
        throw Invalid()
      }
    } else if text.contains("://") {
      error(
        "model.checkpoint must be a directory or hf://ORG/NAME, not \(describe(node))",
        at: node.location, fix: "download the checkpoint and give its directory")
      throw Invalid()
    }
    return text
  }

  mutating func preset(_ node: YAMLNode, family: ModelFamily?) throws(Invalid) -> Located<String> {
    let text = try string(node, "model.preset")
    let names = ModelSource.presets.map(\.name)
    guard let entry = ModelSource.presets.first(where: { $0.name == text }) else {
      var message = "unknown preset \(describe(node))"
      if let suggestion = closestName(to: text, in: names, closeness: .typo) {
        message += " (did you mean '\(suggestion)'?)"
      }
      error(message, at: node.location, fix: "use one of \(names.joined(separator: ", "))")
      throw Invalid()
    }
    if let family, entry.family != family {
      let matching = ModelSource.presets.filter { $0.family == family }.map(\.name)
      error(
        "preset \(text) is a \(entry.family.rawValue) model, but model.family is "
          + family.rawValue, at: node.location,
        fix: "use family: \(entry.family.rawValue), or a \(family.rawValue) preset ("
          + matching.joined(separator: ", ") + ")")
      throw Invalid()
    }
    return Located(text, at: node.location)
  }

  mutating func weights(_ node: YAMLNode) throws(Invalid) -> Bool {
    guard node.scalarText == "random", node.resolved == .string("random") else {
      error(
        "model.weights must be random, not \(describe(node))", at: node.location,
        fix: "presets have no pretrained weights offline; for trained weights use checkpoint")
      throw Invalid()
    }
    return true
  }

  mutating func configOverrides(_ node: YAMLNode) throws(Invalid) -> [ConfigOverride] {
    guard case .mapping(let entries) = node.kind else {
      error(
        "model.config must be a mapping of configuration fields, not \(describe(node))",
        at: node.location, fix: "for example: config: {hidden_size: 128}")
      throw Invalid()
    }
    var overrides: [ConfigOverride] = []
    var seen: [String: SourceLocation] = [:]
    var failed = false
    for entry in entries {
      guard case .scalar(let key, _) = entry.key.kind, !key.isEmpty else {
        error(
          "a configuration field must be a name, not \(describe(entry.key))", at: entry.key.location
        )
        failed = true
        continue
      }
      if let first = seen[key] {
        error("duplicate key '\(key)' (first at \(first.lineColumn))", at: entry.key.location)
        failed = true
        continue
      }
      seen[key] = entry.key.location
      do {
        let value = try configValue(entry.value, "model.config.\(key)")
        overrides.append(ConfigOverride(key: key, value: value, location: entry.key.location))
      } catch {
        failed = true
      }
    }
    if failed { throw Invalid() }
    return overrides
  }

  mutating func configValue(_ node: YAMLNode, _ name: String) throws(Invalid) -> ConfigValue {
    switch node.kind {
    case .mapping:
      error(
        "\(name) must be a number, string, boolean, null or list, not a mapping",
        at: node.location)
      throw Invalid()
    case .sequence(let items):
      var values: [ConfigValue] = []
      for item in items { values.append(try configValue(item, name)) }
      return .list(values)
    case .scalar(let text, _):
      switch node.resolved {
      case .null: return .null
      case .bool(let value): return .bool(value)
      case .int(let value): return .int(value)
      case .double(let value) where value.isFinite: return .double(value)
      case .bigInt, .double:
        error("\(name) is out of range: \(text)", at: node.location)
        throw Invalid()
      case .string, nil: return .string(text)
      }
    }
  }

  mutating func head(_ node: YAMLNode, owner: SourceLocation) throws(Invalid) -> Located<Int> {
    guard
      let fields = fields(
        of: node, path: "model.head", owner: owner, allowed: ManifestKeys.head,
        aliases: ["num_classes": "classes", "num_labels": "classes"])
    else { throw Invalid() }
    var failed = false
    let classes = required(fields, "classes", example: "classes: 2", &failed) {
      context, node throws(Invalid) in
      Located(
        try context.integer(node, "model.head.classes", in: 2...100_000), at: node.location)
    }
    guard let classes, !failed else { throw Invalid() }
    return classes
  }

  // MARK: output

  mutating func outputSection(
    _ node: YAMLNode, owner: SourceLocation, name: Located<String>?, train: TrainSection?,
    hasTrain: Bool, hasLoRA: Bool
  ) throws(Invalid) -> OutputSection {
    guard
      let fields = fields(
        of: node, path: "output", owner: owner, allowed: ManifestKeys.output,
        aliases: ["directory": "dir", "path": "dir", "save_every": "checkpoint_every"])
    else { throw Invalid() }
    var failed = false
    let directory = optional(fields, "dir", &failed) { context, node throws(Invalid) in
      Located(try context.outputDirectory(node), at: node.location)
    }
    let compress =
      optional(fields, "compress", &failed) { context, node throws(Invalid) in
        try context.boolean(node, "output.compress")
      } ?? false
    let onnx =
      optional(fields, "onnx", &failed) { context, node throws(Invalid) in
        try context.boolean(node, "output.onnx")
      } ?? false
    let checkpointEvery = optional(fields, "checkpoint_every", &failed) {
      context, node throws(Invalid) -> Located<Int>? in
      if node.resolved == .null { return nil }
      return Located(
        try context.integer(node, "output.checkpoint_every", in: 1...Int.max), at: node.location)
    }.flatMap { $0 }
    if compress, let location = fields["compress"]?.location {
      if !hasLoRA {
        warning(
          "output.compress has nothing to compress: no lora rule", at: location,
          fix: "add a lora rule with decay, or remove compress")
      } else if !hasTrain {
        error(
          "output.compress needs a train section: W fades out only while training",
          at: location, fix: "add train, or set compress: false")
        failed = true
      }
    }
    if let checkpointEvery, let steps = train?.steps, checkpointEvery.value > steps.value {
      warning(
        "output.checkpoint_every \(checkpointEvery.value) is more than train.steps "
          + "\(steps.value): no training state is saved before the end",
        at: checkpointEvery.location)
    }
    guard !failed else { throw Invalid() }
    let resolved =
      directory ?? name.map { Located("checkpoints/\($0.value)", at: owner) }
    guard let resolved else { throw Invalid() }
    return OutputSection(
      directory: resolved, compress: compress, onnx: onnx, checkpointEvery: checkpointEvery)
  }

  /// A relative path below the working directory or an absolute one (a scratch disk), never
  /// with "..": a path that climbs is too easy to point at the run's own inputs by mistake.
  mutating func outputDirectory(_ node: YAMLNode) throws(Invalid) -> String {
    let text = try name(node, "output.dir")
    let components = text.split(separator: "/", omittingEmptySubsequences: true)
    let absolute = text.hasPrefix("/")
    if text.hasPrefix("~") {
      error(
        "output.dir is not expanded by a shell, so '~' would be a directory named '~'",
        at: node.location, fix: "write the absolute path (/home/NAME/...) or a relative one")
      throw Invalid()
    }
    if components.contains("..") {
      error(
        absolute
          ? "output.dir may not contain '..'" : "output.dir must stay inside the working directory",
        at: node.location,
        fix: absolute
          ? "write the directory without '..'" : "remove the '..' (for example: checkpoints/NAME)")
      throw Invalid()
    }
    // "." or "./." is the working directory itself (and "/" the root), which --overwrite would
    // delete.
    if components.allSatisfy({ $0 == "." }) {
      error(
        absolute
          ? "output.dir cannot be the root directory"
          : "output.dir must name a directory below the working directory, not the working "
            + "directory itself", at: node.location, fix: "for example: checkpoints/NAME")
      throw Invalid()
    }
    return text
  }
}
