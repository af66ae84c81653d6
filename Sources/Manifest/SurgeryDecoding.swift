import Plumbing

/// Block indices are transformer blocks or convolutions: far fewer than this.
private let maxBlockIndex = 9_999

extension DecodingContext {
  /// `surgery`: a list of one-key mappings, each a lora, freeze or train rule.
  mutating func surgery(_ node: YAMLNode) throws(Invalid) -> [SurgeryRule] {
    guard case .sequence(let items) = node.kind else {
      error(
        "surgery must be a list of rules, not \(describe(node))", at: node.location,
        fix: "write each rule as a list item: '- lora: {...}', '- freeze: [...]', '- train: [...]'")
      throw Invalid()
    }
    var rules: [SurgeryRule] = []
    var failed = false
    for item in items {
      do {
        rules.append(try rule(item))
      } catch {
        failed = true
      }
    }
    if failed { throw Invalid() }
    return rules
  }

  mutating func rule(_ node: YAMLNode) throws(Invalid) -> SurgeryRule {
    guard case .mapping(let entries) = node.kind, !entries.isEmpty else {
      error(
        "a surgery rule is a mapping with one key, lora, freeze or train, not \(describe(node))",
        at: node.location, fix: "for example: '- freeze: [embeddings]'")
      throw Invalid()
    }
    guard entries.count == 1, let entry = entries.first else {
      let keys = entries.map { $0.key.scalarText ?? "?" }.joined(separator: ", ")
      error(
        "a surgery rule has exactly one key (lora, freeze or train), not \(entries.count) "
          + "(\(keys))", at: node.location, fix: "start a new '- ' list item for each rule")
      throw Invalid()
    }
    let key = entry.key.scalarText ?? ""
    let location = entry.key.location
    switch key {
    case "lora":
      return .lora(try loraRule(entry.value, owner: location))
    case "freeze":
      return .freeze(try selectors(entry.value, "freeze"), location: location)
    case "train":
      return .train(try selectors(entry.value, "train"), location: location)
    default:
      if let suggestion = closestName(to: key, in: ManifestKeys.rules, closeness: .typo) {
        error("unknown surgery rule '\(key)' (did you mean '\(suggestion)'?)", at: location)
      } else {
        error(
          "unknown surgery rule '\(key)'", at: location, fix: "a rule is lora, freeze or train")
      }
      throw Invalid()
    }
  }

  mutating func loraRule(_ node: YAMLNode, owner: SourceLocation) throws(Invalid) -> LoRARule {
    guard
      let fields = fields(
        of: node, path: "lora", owner: owner, allowed: ManifestKeys.lora,
        aliases: [
          "r": "rank", "lora_alpha": "alpha", "target_modules": "layers", "layer": "layers",
          "initialization": "init", "bias": "bias_c",
        ], typeName: "a lora rule")
    else { throw Invalid() }
    var failed = false
    let layers = required(fields, "layers", example: "layers: [query, value]", &failed) {
      context, node throws(Invalid) in try context.selectors(node, "layers")
    }
    let exclude =
      optional(fields, "exclude", &failed) { context, node throws(Invalid) in
        try context.selectors(node, "exclude")
      } ?? []
    let blocks = optional(fields, "blocks", &failed) { context, node throws(Invalid) in
      Located(try context.blocks(node), at: node.location)
    }
    let rank = required(fields, "rank", example: "rank: 16", &failed) {
      context, node throws(Invalid) in
      Located(try context.integer(node, "rank", in: 1...Int.max), at: node.location)
    }
    let alpha = optional(fields, "alpha", &failed) {
      context, node throws(Invalid) -> Located<Double>? in
      if node.resolved == .null { return nil }
      return Located(try context.number(node, "alpha", "> 0") { $0 > 0 }, at: node.location)
    }.flatMap { $0 }
    let initialization =
      optional(fields, "init", &failed) { context, node throws(Invalid) in
        Located(try context.choice(node, "init", as: AdapterInitialization.self), at: node.location)
      } ?? Located(.lora, at: owner)
    let biasC = optional(fields, "bias_c", &failed) { context, node throws(Invalid) in
      Located(try context.choice(node, "bias_c", as: BiasCInitialization.self), at: node.location)
    }
    let whitened = initialization.value == .svdWhitened
    if whitened, let biasC, biasC.value != .copy {
      error(
        "bias_c \(biasC.value.rawValue) does not fit init svd_whitened, which starts C at b + (W − s·B·A)·μ (μ the calibration inputs' mean)",
        at: biasC.location, fix: "use bias_c: copy, or leave bias_c out")
      failed = true
    }
    var calibration = optional(fields, "calibration", &failed) { context, node throws(Invalid) in
      try context.calibration(node, owner: fields.keyLocation("calibration") ?? node.location)
    }
    if let calibration, !whitened {
      error(
        "calibration is only read by init svd_whitened", at: calibration.location,
        fix: "set init: svd_whitened, or remove calibration")
      failed = true
    }
    if whitened && calibration == nil {
      calibration = CalibrationSettings(batches: 16, location: owner)
    }
    let refit = optional(fields, "refit", &failed) { context, node throws(Invalid) in
      Located(try context.choice(node, "refit", as: RefitMode.self), at: node.location)
    }
    if let refit, refit.value == .sequential, !whitened {
      error(
        "refit sequential refits the factors of init svd_whitened from its calibration inputs",
        at: refit.location, fix: "set init: svd_whitened, or remove refit")
      failed = true
    }
    if let refit, refit.value == .sequential, whitened, let calibration, calibration.batches < 2 {
      error(
        "refit sequential holds a quarter of the calibration batches out to choose its ridge and needs at least 2; calibration.batches is \(calibration.batches)",
        at: calibration.location,
        fix: "set calibration: {batches: 16} (the default), or remove refit")
      failed = true
    }
    let convForm =
      optional(fields, "conv_form", &failed) { context, node throws(Invalid) in
        Located(try context.choice(node, "conv_form", as: ConvForm.self), at: node.location)
      } ?? Located(.lowrank, at: owner)
    let decay = optional(fields, "decay", &failed) { context, node throws(Invalid) in
      try context.decay(node, owner: fields.keyLocation("decay") ?? node.location)
    }
    let noise = optional(fields, "noise", &failed) { context, node throws(Invalid) in
      try context.noise(node, owner: fields.keyLocation("noise") ?? node.location)
    }
    if let location = fields.keyLocation("noise"), fields["decay"] == nil {
      error(
        "noise needs a decay schedule", at: location,
        fix: "add 'decay: {}' (the default schedule) to this rule, or remove noise")
      failed = true
    }
    let budget = optional(fields, "budget", &failed) { context, node throws(Invalid) in
      try context.budget(
        node, owner: fields.keyLocation("budget") ?? node.location, whitened: whitened)
    }
    guard !failed, let layers, let rank else { throw Invalid() }
    let defaultBiasC: BiasCInitialization = whitened ? .copy : decay == nil ? .none : .zeros
    return LoRARule(
      location: owner, layers: layers, exclude: exclude, blocks: blocks, rank: rank, alpha: alpha,
      initialization: initialization, biasC: biasC ?? Located(defaultBiasC, at: owner),
      convForm: convForm, decay: decay, noise: noise, budget: budget, calibration: calibration,
      refit: refit)
  }

  /// `calibration: {batches}` (init svd_whitened).
  mutating func calibration(_ node: YAMLNode, owner: SourceLocation) throws(Invalid)
    -> CalibrationSettings
  {
    guard
      let fields = fields(
        of: node, path: "lora.calibration", owner: owner, allowed: ManifestKeys.calibration,
        aliases: ["steps": "batches", "batch_count": "batches"])
    else { throw Invalid() }
    var failed = false
    let batches =
      optional(fields, "batches", &failed) { context, node throws(Invalid) in
        try context.integer(node, "calibration.batches", in: 1...100_000)
      } ?? 16
    guard !failed else { throw Invalid() }
    return CalibrationSettings(batches: batches, location: owner)
  }

  /// `budget: {share, floor}`: per-node ranks from one parameter budget.
  mutating func budget(_ node: YAMLNode, owner: SourceLocation, whitened: Bool) throws(Invalid)
    -> RankBudget
  {
    guard
      let fields = fields(
        of: node, path: "lora.budget", owner: owner, allowed: ManifestKeys.budget, aliases: [:])
    else { throw Invalid() }
    var failed = false
    let share = required(fields, "share", example: "share: 0.12", &failed) {
      context, node throws(Invalid) in
      try context.number(node, "budget.share", "in (0, 1)") { $0 > 0 && $0 < 1 }
    }
    let floor =
      optional(fields, "floor", &failed) { context, node throws(Invalid) in
        try context.integer(node, "budget.floor", in: 1...Int.max)
      } ?? 1
    let criterion = optional(fields, "by", &failed) { context, node throws(Invalid) in
      Located(try context.choice(node, "budget.by", as: BudgetCriterion.self), at: node.location)
    }
    if let criterion, criterion.value == .whitened, !whitened {
      error(
        "budget.by whitened needs the calibration inputs of init svd_whitened",
        at: criterion.location, fix: "set init: svd_whitened, or use budget.by: weights")
      failed = true
    }
    guard !failed, let share else { throw Invalid() }
    return RankBudget(
      share: share, floor: floor,
      criterion: criterion?.value ?? (whitened ? .whitened : .weights), location: owner)
  }

  /// `blocks`: "0-5", "3", 3, or a list of indices and ranges; expanded in the order written.
  mutating func blocks(_ node: YAMLNode) throws(Invalid) -> [Int] {
    var indices: [Int] = []
    switch node.kind {
    case .sequence(let items):
      guard !items.isEmpty else {
        error(
          "blocks needs at least one index", at: node.location,
          fix: "omit blocks to wrap every block")
        throw Invalid()
      }
      var failed = false
      for item in items {
        do {
          indices += try blockIndices(item)
        } catch {
          failed = true
        }
      }
      if failed { throw Invalid() }
    case .scalar:
      indices = try blockIndices(node)
    case .mapping:
      error(
        "blocks must be an index, a range like 0-5 or a list, not a mapping", at: node.location)
      throw Invalid()
    }
    var seen = Set<Int>()
    for index in indices where !seen.insert(index).inserted {
      error("block \(index) is listed twice in blocks", at: node.location, fix: "list it once")
      throw Invalid()
    }
    return indices
  }

  /// One index or inclusive range from a scalar.
  mutating func blockIndices(_ node: YAMLNode) throws(Invalid) -> [Int] {
    func check(_ index: Int) throws(Invalid) -> Int {
      guard index <= maxBlockIndex else {
        error(
          "block \(index) is out of range; blocks go up to \(maxBlockIndex)", at: node.location)
        throw Invalid()
      }
      return index
    }
    let shape = "blocks must be an index, a range like 0-5 or a list"
    switch node.resolved {
    case .int(let index):
      guard index >= 0 else {
        error(
          "blocks cannot be negative, not \(index)", at: node.location,
          fix: "count blocks from 0")
        throw Invalid()
      }
      return [try check(index)]
    case .string(let text):
      let trimmed = text.trimmingSpaces
      if YAMLNode.isDecimalInteger(trimmed), let index = Int(trimmed), index >= 0 {
        return [try check(index)]
      }
      let parts = trimmed.split(separator: "-", omittingEmptySubsequences: false).map {
        String($0).trimmingSpaces
      }
      guard parts.count == 2,
        parts.allSatisfy({ !$0.isEmpty && $0.allSatisfy { $0.isASCII && $0.isNumber } }),
        let low = Int(parts[0]), let high = Int(parts[1])
      else {
        let fix = trimmed.hasPrefix("-") ? "count blocks from 0" : "write a range as 0-5"
        error("\(shape), not \(describe(node))", at: node.location, fix: fix)
        throw Invalid()
      }
      guard low <= high else {
        error(
          "blocks range \(low)-\(high) runs backwards", at: node.location,
          fix: "write \(high)-\(low)")
        throw Invalid()
      }
      _ = try check(high)
      return Array(low...high)
    default:
      error("\(shape), not \(describe(node))", at: node.location)
      throw Invalid()
    }
  }

  mutating func decay(_ node: YAMLNode, owner: SourceLocation) throws(Invalid) -> DecaySchedule {
    guard
      let fields = fields(
        of: node, path: "lora.decay", owner: owner, allowed: ManifestKeys.decay,
        aliases: ["schedule": "shape", "begin": "start", "stop": "end"])
    else { throw Invalid() }
    var failed = false
    let shape =
      optional(fields, "shape", &failed) { context, node throws(Invalid) in
        try context.choice(node, "decay.shape", as: ScheduleShape.self)
      } ?? .linear
    let start = optional(fields, "start", &failed) { context, node throws(Invalid) in
      try context.number(node, "decay.start", "in [0, 1)") { $0 >= 0 && $0 < 1 }
    }
    let end = optional(fields, "end", &failed) { context, node throws(Invalid) in
      try context.number(node, "decay.end", "in (0, 1]") { $0 > 0 && $0 <= 1 }
    }
    if failed { throw Invalid() }
    let schedule = DecaySchedule(
      shape: shape, start: start ?? 0.05, end: end ?? 0.85, location: owner)
    if schedule.start >= schedule.end {
      // Reported at whichever of the two was written (end when both were).
      let offending = fields["end"] ?? fields["start"]
      let startText = fields["start"]?.scalarText ?? "0.05"
      let endText = fields["end"]?.scalarText ?? "0.85"
      error(
        "decay.start (\(startText)) must be below decay.end (\(endText))",
        at: offending?.location ?? owner,
        fix: "d falls from 1 at start to 0 at end; use start < end")
      throw Invalid()
    }
    return schedule
  }

  mutating func noise(_ node: YAMLNode, owner: SourceLocation) throws(Invalid) -> NoiseSettings {
    guard
      let fields = fields(
        of: node, path: "lora.noise", owner: owner, allowed: ManifestKeys.noise,
        aliases: ["statistics": "stats", "clear": "clear_below", "std": "scale"])
    else { throw Invalid() }
    var failed = false
    let statistics =
      optional(fields, "stats", &failed) { context, node throws(Invalid) in
        try context.choice(node, "noise.stats", as: NoiseStatistics.self)
      } ?? .global
    let clearBelow =
      optional(fields, "clear_below", &failed) { context, node throws(Invalid) -> Double? in
        if node.resolved == .null { return nil }
        return try context.number(node, "noise.clear_below", "in (0, 1]") { $0 > 0 && $0 <= 1 }
      } ?? 0.3
    let scale =
      optional(fields, "scale", &failed) { context, node throws(Invalid) in
        try context.number(node, "noise.scale", ">= 0") { $0 >= 0 }
      } ?? 1.0
    let spectralCap =
      optional(fields, "spectral_cap", &failed) { context, node throws(Invalid) -> Double? in
        if node.resolved == .null { return nil }
        return try context.number(node, "noise.spectral_cap", "> 0") { $0 > 0 }
      } ?? nil
    if failed { throw Invalid() }
    return NoiseSettings(
      statistics: statistics, clearBelow: clearBelow, scale: scale, spectralCap: spectralCap,
      location: owner)
  }
}

extension String {
  /// Without leading and trailing spaces and tabs.
  var trimmingSpaces: String {
    let isSpace: (Character) -> Bool = { $0 == " " || $0 == "\t" }
    return String(drop(while: isSpace).reversed().drop(while: isSpace).reversed())
  }
}
