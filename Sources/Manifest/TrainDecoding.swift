extension DecodingContext {
  mutating func trainSection(
    _ node: YAMLNode, owner: SourceLocation, family: ModelFamily?
  ) throws(Invalid) -> TrainSection {
    guard
      let fields = fields(
        of: node, path: "train", owner: owner, allowed: ManifestKeys.train,
        aliases: [
          "batch": "batch_size", "batchsize": "batch_size", "evaluate_every": "eval_every",
          "optimiser": "optimizer", "max_steps": "steps", "dataset": "data",
        ])
    else { throw Invalid() }
    var failed = false
    let task = required(fields, "task", example: "task: text-classification", &failed) {
      context, node throws(Invalid) in
      Located(try context.choice(node, "train.task", as: Task.self), at: node.location)
    }
    // The data formats are checked against the task only when the task fits the family: after a
    // mismatch the task is the likely mistake, and the data would only repeat it.
    var dataTask = task?.value
    if let task, let family, task.value.family != family {
      dataTask = nil
      let other = Task.allCases.first { $0.family == family }
      error(
        "train.task \(task.value.rawValue) needs family \(task.value.family.rawValue), but "
          + "model.family is \(family.rawValue)", at: task.location,
        fix: other.map { "use task: \($0.rawValue) for \(family.rawValue)" })
      failed = true
    }
    let data = required(fields, "data", example: "data: {train: {...}}", &failed) {
      context, node throws(Invalid) in
      try context.dataSection(
        node, owner: fields.keyLocation("data") ?? node.location, task: dataTask)
    }
    let steps = required(fields, "steps", example: "steps: 400", &failed) {
      context, node throws(Invalid) in
      Located(try context.integer(node, "train.steps", in: 1...Int.max), at: node.location)
    }
    let batchSize =
      optional(fields, "batch_size", &failed) { context, node throws(Invalid) in
        Located(try context.integer(node, "train.batch_size", in: 1...65_536), at: node.location)
      } ?? Located(32, at: owner)
    let optimizer =
      optional(fields, "optimizer", &failed) { context, node throws(Invalid) in
        try context.optimizer(node, owner: fields.keyLocation("optimizer") ?? node.location)
      } ?? OptimizerSettings(name: "adamw", learningRate: 1e-3, weightDecay: 0, warmup: 0)
    let evalEvery = optional(fields, "eval_every", &failed) { context, node throws(Invalid) in
      Located(try context.integer(node, "train.eval_every", in: 1...Int.max), at: node.location)
    }
    if let evalEvery, let steps, evalEvery.value > steps.value {
      warning(
        "train.eval_every \(evalEvery.value) is more than train.steps \(steps.value): "
          + "the model is evaluated only at the end", at: evalEvery.location)
    }
    let seed =
      optional(fields, "seed", &failed) { context, node throws(Invalid) in
        try context.integer(node, "train.seed", in: 0...Int.max)
      } ?? 0
    let distill = optional(fields, "distill", &failed) { context, node throws(Invalid) in
      try context.distill(
        node, owner: fields.keyLocation("distill") ?? node.location, family: family, task: dataTask)
    }
    if let unlabeled = distill?.unlabeled, let data {
      if let groupBy = unlabeled.groupBy, data.split.groupBy == nil {
        error(
          "train.distill.unlabeled.group_by drops the rows of validation and test groups, but "
            + "train.data.split has no group_by", at: groupBy.location,
          fix: "add group_by to train.data.split, or remove it here")
        failed = true
      } else if unlabeled.groupBy == nil, let splitGroup = data.split.groupBy {
        warning(
          "train.data.split keeps \(splitGroup) groups apart, but train.distill.unlabeled has no "
            + "group_by: its rows cannot be checked against the validation and test groups",
          at: unlabeled.location,
          fix: "add group_by: COLUMN naming the unlabeled file's \(splitGroup) column")
      }
    }
    guard !failed, let task, let data, let steps else { throw Invalid() }
    return TrainSection(
      location: owner, task: task, data: data, steps: steps, batchSize: batchSize,
      optimizer: optimizer,
      evalEvery: evalEvery ?? Located(max(1, steps.value / 10), at: steps.location), seed: seed,
      distill: distill)
  }

  /// `train.distill: {teacher, temperature, logits, features, hidden_states, attention,
  /// augment, unlabeled}`.
  mutating func distill(
    _ node: YAMLNode, owner: SourceLocation, family: ModelFamily?, task: Task?
  ) throws(Invalid) -> DistillSettings {
    guard
      let fields = fields(
        of: node, path: "train.distill", owner: owner, allowed: ManifestKeys.distill,
        aliases: ["temp": "temperature", "alpha": "logits", "beta": "features"])
    else { throw Invalid() }
    var failed = false
    let extras = ["augment", "unlabeled"].filter { fields[$0] != nil }
    let teacher: Located<String>?
    if fields["teacher"] == nil, let extra = extras.first {
      // These examples have no labels: without a teacher nothing would be learnt from them.
      error(
        "train.distill.\(extra) needs train.distill.teacher: the student learns the teacher's "
          + "soft labels on these examples", at: fields.keyLocation(extra) ?? owner,
        fix: "add teacher: checkpoints/my-full-fine-tune (a full fine-tuning run's output.dir)")
      failed = true
      teacher = nil
    } else {
      teacher = required(
        fields, "teacher", example: "teacher: checkpoints/my-full-fine-tune", &failed
      ) { context, node throws(Invalid) in
        Located(try context.string(node, "train.distill.teacher"), at: node.location)
      }
    }
    let temperature =
      optional(fields, "temperature", &failed) { context, node throws(Invalid) in
        try context.number(node, "train.distill.temperature", "> 0") { $0 > 0 }
      } ?? 2
    let logits =
      optional(fields, "logits", &failed) { context, node throws(Invalid) in
        try context.number(node, "train.distill.logits", "in [0, 1]") { $0 >= 0 && $0 <= 1 }
      } ?? 0.5
    let features =
      optional(fields, "features", &failed) { context, node throws(Invalid) in
        try context.number(node, "train.distill.features", ">= 0") { $0 >= 0 }
      } ?? 0
    let hiddenStates =
      optional(fields, "hidden_states", &failed) { context, node throws(Invalid) in
        try context.hiddenStates(
          node, owner: fields.keyLocation("hidden_states") ?? node.location)
      } ?? 0
    var attention =
      optional(fields, "attention", &failed) { context, node throws(Invalid) in
        try context.number(node, "train.distill.attention", ">= 0") { $0 >= 0 }
      } ?? 0
    if family == .vgg, let key = fields.keyLocation("attention") {
      error(
        "train.distill.attention distils attention scores, and a vgg model has none", at: key,
        fix: "remove attention, or distil the stages with hidden_states: all")
      failed = true
      attention = 0
    }
    let augment = optional(fields, "augment", &failed) { context, node throws(Invalid) in
      try context.augment(
        node, owner: fields.keyLocation("augment") ?? node.location, task: task)
    }
    let unlabeled = optional(fields, "unlabeled", &failed) { context, node throws(Invalid) in
      try context.unlabeled(
        node, owner: fields.keyLocation("unlabeled") ?? node.location, task: task)
    }
    guard !failed, let teacher else { throw Invalid() }
    if logits == 0 && features == 0 && hiddenStates == 0 && attention == 0 && augment == nil
      && unlabeled == nil
    {
      warning(
        "train.distill gives every term weight 0 (logits, features, hidden_states, attention): "
          + "the teacher is loaded but not used",
        at: owner,
        fix: "set logits (e.g. 0.5), features, hidden_states or attention, or remove distill")
    }
    return DistillSettings(
      teacher: teacher, temperature: temperature, logits: logits, features: features,
      hiddenStates: hiddenStates, attention: attention, location: owner, augment: augment,
      unlabeled: unlabeled)
  }

  /// `train.distill.hidden_states`: `all` (weight 1) or `{layers: all, weight: η}`; the weight.
  mutating func hiddenStates(_ node: YAMLNode, owner: SourceLocation) throws(Invalid) -> Double {
    let path = "train.distill.hidden_states"
    let isMapping = if case .mapping = node.kind { true } else { false }
    if !isMapping {
      guard node.resolved == .string("all") else {
        error(
          "\(path) must be all or {layers: all, weight: W}, not \(describe(node))",
          at: node.location,
          fix:
            "write hidden_states: all (every layer, weight 1); for the last layer alone use features"
        )
        throw Invalid()
      }
      return 1
    }
    guard
      let fields = fields(
        of: node, path: path, owner: owner, allowed: ManifestKeys.hiddenStates,
        aliases: ["layer": "layers", "beta": "weight", "gamma": "weight"])
    else { throw Invalid() }
    var failed = false
    _ = optional(fields, "layers", &failed) { context, node throws(Invalid) in
      guard node.resolved == .string("all") else {
        context.error(
          "\(path).layers must be all, not \(describe(node))", at: node.location,
          fix: "use layers: all (every layer); for the last layer alone use features")
        throw Invalid()
      }
      return true
    }
    let weight =
      optional(fields, "weight", &failed) { context, node throws(Invalid) in
        try context.number(node, "\(path).weight", ">= 0") { $0 >= 0 }
      } ?? 1
    if failed { throw Invalid() }
    return weight
  }

  /// The `batch_size` and `weight` of an extra source of distillation examples.
  mutating func extraBatch(_ fields: Fields, path: String, _ failed: inout Bool) -> ExtraBatch {
    let batchSize = optional(fields, "batch_size", &failed) { context, node throws(Invalid) in
      try context.integer(node, "\(path).batch_size", in: 1...65_536)
    }
    let weight =
      optional(fields, "weight", &failed) { context, node throws(Invalid) in
        try context.number(node, "\(path).weight", "> 0") { $0 > 0 }
      } ?? 1
    return ExtraBatch(batchSize: batchSize, weight: weight)
  }

  /// `train.distill.augment: {edits, rate, copies, seed, thesaurus, pad, noise, batch_size,
  /// weight}`; which edits and keys apply depends on the task.
  mutating func augment(_ node: YAMLNode, owner: SourceLocation, task: Task?) throws(Invalid)
    -> AugmentSettings
  {
    let path = "train.distill.augment"
    guard
      let fields = fields(
        of: node, path: path, owner: owner, allowed: ManifestKeys.augment,
        aliases: ["edit": "edits", "copy": "copies", "synonyms": "thesaurus", "roget": "thesaurus"])
    else { throw Invalid() }
    var failed = false
    let textEdits = AugmentEdit.allCases.filter(\.editsText).map(\.rawValue)
    let imageEdits = AugmentEdit.allCases.filter { !$0.editsText }.map(\.rawValue)
    let example =
      task == .imageClassification
      ? "edits: [\(imageEdits.joined(separator: ", "))]"
      : "edits: [\(textEdits.joined(separator: ", "))]"
    let edits =
      required(fields, "edits", example: example, &failed) { context, node throws(Invalid) in
        try context.augmentEdits(node, path: "\(path).edits", task: task)
      } ?? []
    if let task {
      let keys = task == .imageClassification ? ["rate", "thesaurus"] : ["pad", "noise"]
      for key in keys {
        if let location = fields.keyLocation(key) {
          error(
            "\(path).\(key) applies to \(task == .imageClassification ? "texts" : "images"), "
              + "and train.task is \(task.rawValue)", at: location, fix: "remove \(key)")
          failed = true
        }
      }
    }
    let rate =
      optional(fields, "rate", &failed) { context, node throws(Invalid) in
        try context.number(node, "\(path).rate", "in (0, 1]") { $0 > 0 && $0 <= 1 }
      } ?? 0.1
    let copies =
      optional(fields, "copies", &failed) { context, node throws(Invalid) in
        try context.integer(node, "\(path).copies", in: 1...1000)
      } ?? 1
    let seed =
      optional(fields, "seed", &failed) { context, node throws(Invalid) in
        try context.integer(node, "\(path).seed", in: 0...Int.max)
      } ?? 0
    let thesaurus = optional(fields, "thesaurus", &failed) { context, node throws(Invalid) in
      Located(try context.name(node, "\(path).thesaurus"), at: node.location)
    }
    let pad =
      optional(fields, "pad", &failed) { context, node throws(Invalid) in
        try context.integer(node, "\(path).pad", in: 1...64)
      } ?? 2
    let noise =
      optional(fields, "noise", &failed) { context, node throws(Invalid) in
        try context.number(node, "\(path).noise", "> 0") { $0 > 0 }
      } ?? 0.05
    let batch = extraBatch(fields, path: path, &failed)
    if thesaurus == nil, let synonym = edits.first(where: { $0.value == .synonym }) {
      error(
        "the synonym edit needs \(path).thesaurus, the file its synonyms come from",
        at: synonym.location,
        fix: "add thesaurus: data/roget.csv (Scripts/fetch-rotten-tomatoes.sh writes it)")
      failed = true
    }
    if failed { throw Invalid() }
    return AugmentSettings(
      edits: edits, rate: rate, copies: copies, seed: seed, thesaurus: thesaurus, pad: pad,
      noise: noise, batch: batch, location: owner)
  }

  /// A non-empty list of distinct edits that fit the task.
  mutating func augmentEdits(_ node: YAMLNode, path: String, task: Task?) throws(Invalid)
    -> [Located<AugmentEdit>]
  {
    guard case .sequence(let items) = node.kind, !items.isEmpty else {
      error(
        "\(path) must be a non-empty list of edits, not \(describe(node))", at: node.location,
        fix: "for example: edits: [delete, swap, mask, synonym] (texts) or [flip, crop, noise] "
          + "(images)")
      throw Invalid()
    }
    var edits: [Located<AugmentEdit>] = []
    var failed = false
    for item in items {
      guard let edit = try? choice(item, "an edit of \(path)", as: AugmentEdit.self) else {
        failed = true
        continue
      }
      if edits.contains(where: { $0.value == edit }) {
        error("\(path) lists \(edit.rawValue) twice", at: item.location, fix: "list it once")
        failed = true
      } else if let task, edit.editsText != (task == .textClassification) {
        let fitting = AugmentEdit.allCases.filter { $0.editsText == (task == .textClassification) }
        error(
          "the \(edit.rawValue) edit applies to \(edit.editsText ? "texts" : "images"), and "
            + "train.task is \(task.rawValue)", at: item.location,
          fix: "use \(fitting.map(\.rawValue).joined(separator: ", "))")
        failed = true
      }
      edits.append(Located(edit, at: item.location))
    }
    if failed { throw Invalid() }
    return edits
  }

  /// `train.distill.unlabeled: {format, path, text, group_by, batch_size, weight}`.
  mutating func unlabeled(_ node: YAMLNode, owner: SourceLocation, task: Task?) throws(Invalid)
    -> UnlabeledSettings
  {
    let path = "train.distill.unlabeled"
    guard
      let fields = fields(
        of: node, path: path, owner: owner, allowed: ManifestKeys.unlabeled,
        aliases: ["file": "path", "text_column": "text", "group": "group_by"])
    else { throw Invalid() }
    var failed = false
    if task == .imageClassification {
      error(
        "\(path) reads a table of texts, and train.task is image-classification", at: owner,
        fix: "remove unlabeled; augment: {edits: [flip, crop, noise]} adds images to distil on")
      throw Invalid()
    }
    let format = required(fields, "format", example: "format: csv", &failed) {
      context, node throws(Invalid) in
      let format = try context.choice(node, "\(path).format", as: DataFormat.self)
      guard format != .idx else {
        context.error(
          "\(path).format must be csv, tsv or jsonl: unlabeled examples are texts",
          at: node.location)
        throw Invalid()
      }
      return format
    }
    let file = required(fields, "path", example: "path: data/unlabeled.csv", &failed) {
      context, node throws(Invalid) in
      Located(try context.name(node, "\(path).path"), at: node.location)
    }
    let text = required(fields, "text", example: "text: text", &failed) {
      context, node throws(Invalid) in
      try context.name(node, "\(path).text")
    }
    let groupBy = optional(fields, "group_by", &failed) { context, node throws(Invalid) in
      Located(try context.name(node, "\(path).group_by"), at: node.location)
    }
    let batch = extraBatch(fields, path: path, &failed)
    guard !failed, let format, let file, let text else { throw Invalid() }
    return UnlabeledSettings(
      format: format, path: file, textColumn: text, groupBy: groupBy, batch: batch,
      location: owner)
  }

  mutating func dataSection(
    _ node: YAMLNode, owner: SourceLocation, task: Task?
  ) throws(Invalid) -> DataSection {
    guard
      let fields = fields(
        of: node, path: "train.data", owner: owner, allowed: ManifestKeys.data,
        aliases: ["validation": "split", "max_len": "max_length", "max_seq_length": "max_length"])
    else { throw Invalid() }
    var failed = false
    let train = required(fields, "train", example: "train: {format: csv, path: PATH, ...}", &failed)
    {
      context, node throws(Invalid) in
      try context.dataSource(
        node, path: "train.data.train", owner: fields.keyLocation("train") ?? node.location,
        task: task)
    }
    let test = optional(fields, "test", &failed) { context, node throws(Invalid) in
      try context.dataSource(
        node, path: "train.data.test", owner: fields.keyLocation("test") ?? node.location,
        task: task)
    }
    let labels = optional(fields, "labels", &failed) { context, node throws(Invalid) in
      try context.labels(node)
    }
    let split =
      optional(fields, "split", &failed) { context, node throws(Invalid) in
        try context.split(
          node, owner: fields.keyLocation("split") ?? node.location,
          hasTest: fields["test"] != nil)
      }
      ?? SplitSettings(
        validation: 0.1, test: fields["test"] == nil ? 0.2 : 0, groupBy: nil, seed: 0)
    let maxLength =
      optional(fields, "max_length", &failed) { context, node throws(Invalid) in
        Located(
          try context.integer(node, "train.data.max_length", in: 2...4096), at: node.location)
      } ?? Located(128, at: owner)
    guard !failed, let train else { throw Invalid() }
    return DataSection(train: train, test: test, labels: labels, split: split, maxLength: maxLength)
  }

  /// A table (csv, tsv, jsonl) or IDX images; which keys apply depends on `format`.
  mutating func dataSource(
    _ node: YAMLNode, path: String, owner: SourceLocation, task: Task?
  ) throws(Invalid) -> Located<DataSource> {
    let allKeys = ManifestKeys.table + ManifestKeys.images.filter { $0 != "format" }
    guard
      let fields = fields(
        of: node, path: path, owner: owner, allowed: allKeys,
        aliases: ["file": "path", "text_column": "text", "label_column": "label"])
    else { throw Invalid() }
    var failed = false
    let format = required(fields, "format", example: "format: csv", &failed) {
      context, node throws(Invalid) in
      try context.choice(node, "\(path).format", as: DataFormat.self)
    }
    guard let format else { throw Invalid() }
    let keys = format == .idx ? ManifestKeys.images : ManifestKeys.table
    for key in allKeys where !keys.contains(key) {
      if let location = fields.keyLocation(key) {
        error(
          "unknown key '\(key)' in \(path) for format \(format.rawValue)", at: location,
          fix: "format \(format.rawValue) takes \(keys.joined(separator: ", "))")
        failed = true
      }
    }
    if let task, let formatNode = fields["format"] {
      if task == .textClassification && format == .idx {
        error(
          "format idx holds images; train.task text-classification reads csv, tsv or jsonl",
          at: formatNode.location, fix: "use format: csv, tsv or jsonl with text and label columns")
        failed = true
      } else if task == .imageClassification && format != .idx {
        error(
          "format \(format.rawValue) holds text; train.task image-classification reads idx",
          at: formatNode.location, fix: "use {format: idx, images: PATH, labels: PATH}")
        failed = true
      }
    }
    func text(_ key: String, example: String) -> String? {
      required(fields, key, example: example, &failed) { context, node throws(Invalid) in
        try context.name(node, "\(path).\(key)")
      }
    }
    let source: DataSource?
    if format == .idx {
      let images = text("images", example: "images: data/train-images-idx3-ubyte.gz")
      let labels = text("labels", example: "labels: data/train-labels-idx1-ubyte.gz")
      source = images.flatMap { images in labels.map { .images(imagesPath: images, labelsPath: $0) }
      }
    } else {
      let file = text("path", example: "path: data/train.\(format.rawValue)")
      let column = text("text", example: "text: text")
      let label = text("label", example: "label: label")
      if let file, let column, let label {
        source = .table(format: format, path: file, textColumn: column, labelColumn: label)
      } else {
        source = nil
      }
    }
    guard !failed, let source else { throw Invalid() }
    return Located(source, at: node.location)
  }

  mutating func labels(_ node: YAMLNode) throws(Invalid) -> [Located<String>] {
    guard case .sequence(let items) = node.kind else {
      error(
        "train.data.labels must be a list of labels, not \(describe(node))", at: node.location,
        fix: "for example: labels: [negative, positive]")
      throw Invalid()
    }
    guard items.count >= 2 else {
      error(
        "train.data.labels needs at least 2 labels, not \(items.count)", at: node.location,
        fix: "list every label of the task, or omit labels (sorted unique values)")
      throw Invalid()
    }
    var labels: [Located<String>] = []
    var seen: [String: SourceLocation] = [:]
    var failed = false
    for item in items {
      do {
        let label = try string(item, "a label")
        if let first = seen[label] {
          error(
            "label '\(label)' is listed twice (first at \(first.lineColumn))", at: item.location,
            fix: "list each label once")
          failed = true
        }
        seen[label] = seen[label] ?? item.location
        labels.append(Located(label, at: item.location))
      } catch {
        failed = true
      }
    }
    if failed { throw Invalid() }
    return labels
  }

  mutating func split(
    _ node: YAMLNode, owner: SourceLocation, hasTest: Bool
  ) throws(Invalid) -> SplitSettings {
    guard
      let fields = fields(
        of: node, path: "train.data.split", owner: owner, allowed: ManifestKeys.split,
        aliases: ["val": "validation", "valid": "validation", "group": "group_by"])
    else { throw Invalid() }
    var failed = false
    let validation =
      optional(fields, "validation", &failed) { context, node throws(Invalid) in
        try context.number(node, "train.data.split.validation", "in [0, 1)") { $0 >= 0 && $0 < 1 }
      } ?? 0.1
    let test = optional(fields, "test", &failed) { context, node throws(Invalid) in
      try context.number(node, "train.data.split.test", "in [0, 1)") { $0 >= 0 && $0 < 1 }
    }
    if let test, test > 0, hasTest, let location = fields["test"]?.location {
      error(
        "train.data.split.test carves a test set, but train.data.test already names one",
        at: location, fix: "remove split.test, or data.test")
      failed = true
    }
    let groupBy = optional(fields, "group_by", &failed) { context, node throws(Invalid) in
      try context.name(node, "train.data.split.group_by")
    }
    let seed =
      optional(fields, "seed", &failed) { context, node throws(Invalid) in
        try context.integer(node, "train.data.split.seed", in: 0...Int.max)
      } ?? 0
    var part: (index: Int, count: Int)?
    if let node = fields["part"] {
      let pieces = (node.scalarText ?? "").split(separator: "/").map { Int($0) }
      if pieces.count == 2, let index = pieces[0], let count = pieces[1], count >= 1,
        count <= 100, (1...count).contains(index)
      {
        part = (index, count)
      } else {
        error(
          "train.data.split.part must be \"K/N\" with 1 <= K <= N <= 100, not '\(node.scalarText ?? "")'",
          at: node.location, fix: "e.g. part: \"1/2\" for the first half")
        failed = true
      }
    }
    if failed { throw Invalid() }
    let settings = SplitSettings(
      validation: validation, test: test ?? (hasTest ? 0 : 0.2), groupBy: groupBy, seed: seed,
      part: part)
    if settings.validation + settings.test >= 1 {
      let offending = fields["test"] ?? fields["validation"]
      error(
        "train.data.split.validation + train.data.split.test must be below 1, not "
          + "\(settings.validation) + \(settings.test)", at: offending?.location ?? owner,
        fix: "leave a fraction of the data for training")
      throw Invalid()
    }
    return settings
  }

  mutating func optimizer(_ node: YAMLNode, owner: SourceLocation) throws(Invalid)
    -> OptimizerSettings
  {
    guard
      let fields = fields(
        of: node, path: "train.optimizer", owner: owner, allowed: ManifestKeys.optimizer,
        aliases: [
          "learning_rate": "lr", "learningrate": "lr", "decay": "weight_decay",
          "warmup_ratio": "warmup", "type": "name",
        ])
    else { throw Invalid() }
    var failed = false
    let name =
      optional(fields, "name", &failed) { context, node throws(Invalid) in
        let text = try context.string(node, "train.optimizer.name")
        guard text == "adamw" else {
          context.error(
            "train.optimizer.name must be adamw, not \(describe(node))", at: node.location,
            fix: "this surgeon trains with adamw only")
          throw Invalid()
        }
        return text
      } ?? "adamw"
    let learningRate =
      optional(fields, "lr", &failed) { context, node throws(Invalid) in
        try context.number(node, "train.optimizer.lr", "> 0") { $0 > 0 }
      } ?? 1e-3
    let weightDecay =
      optional(fields, "weight_decay", &failed) { context, node throws(Invalid) in
        try context.number(node, "train.optimizer.weight_decay", ">= 0") { $0 >= 0 }
      } ?? 0
    let warmup =
      optional(fields, "warmup", &failed) { context, node throws(Invalid) in
        try context.number(node, "train.optimizer.warmup", "in [0, 1)") { $0 >= 0 && $0 < 1 }
      } ?? 0
    if failed { throw Invalid() }
    return OptimizerSettings(
      name: name, learningRate: learningRate, weightDecay: weightDecay, warmup: warmup)
  }
}
