import Manifest
import Models
import Tensor

/// What the rewriter decided for one node, for reports.
public struct NodeAction: Sendable, Equatable {
  public enum Kind: String, Sendable {
    /// Wrapped with an adapter; the base is frozen, the adapter trains.
    case wrapped
    /// Named by a `freeze` rule (or frozen by default beside a lora rule).
    case frozen
    /// Trained in full: named by `train`, a new head, or full fine-tuning.
    case trained
  }

  public var node: String
  public var kind: Kind
  /// True when no rule named the node (docs/manifest.md's defaults decided).
  public var byDefault: Bool
  /// The 1-based index of the surgery rule that decided the node (the last naming it).
  public var rule: Int? = nil
  /// Earlier rules that named the node and were overridden by `rule`, in order.
  public var overrides: [Int] = []
  /// The adapter rank of a wrapped node (the rule's cap when `budgeted`).
  public var rank: Int? = nil
  /// The rank comes from a budget: decided at apply from the singular values of the weights.
  public var budgeted: Bool = false
}

/// One surgery rule and the nodes it named (before later rules overrode any of them).
public struct RuleMatch: Sendable, Equatable {
  public enum Kind: String, Sendable {
    case lora
    case freeze
    case train
  }

  /// 1-based, in the manifest's order.
  public var index: Int
  public var kind: Kind
  /// The rule's key (`lora:`, `freeze:`, `train:`).
  public var location: SourceLocation
  /// Node names in graph order.
  public var matched: [String]
}

/// The manifest's surgery applied to a graph, compiled.
public struct Rewrite: Sendable {
  public var plan: TrainingPlan
  public var actions: [NodeAction]
  /// The graph before surgery (for `summary --before`).
  public var original: Model
  /// Every rule with the nodes it selected.
  public var rules: [RuleMatch] = []
  /// The nodes `init: svd_whitened` started (empty without it, or before initializing).
  public var whitened: [String: WhitenedNode] = [:]
  /// `refit: sequential`'s choice per node (empty without it).
  public var refitChoices: [String: RefitChoice] = [:]
}

/// A node `init: svd_whitened` started: its decomposition, its rank (after any budget) and what
/// its rule asks of the calibration.
public struct WhitenedNode: Sendable {
  public var whitening: Whitening
  public var rank: Int
  /// The rule's `refit`.
  public var refit: RefitMode
  /// The rule's `calibration.batches`.
  public var batches: Int
  /// The rule's `refit:` key (its `lora:` key when defaulted).
  public var location: SourceLocation

  public init(
    whitening: Whitening, rank: Int, refit: RefitMode, batches: Int, location: SourceLocation
  ) {
    self.whitening = whitening
    self.rank = rank
    self.refit = refit
    self.batches = batches
    self.location = location
  }

  /// The output error of the node's starting factors on its calibration inputs, relative to
  /// its output variance there: `Σ_{i>r} S_i² / Σ_i S_i²` (the ridge included). Where a layer
  /// loses most of its output, the budget starved it. nil after a refit, whose held-out errors
  /// are in `Rewrite.refitChoices`.
  public var calibrationOutputError: Double? {
    guard whitening.targetMean == nil else { return nil }
    let energies = whitening.decomposition.singularValues.map { $0 * $0 }
    let total = energies.reduce(0, +)
    guard total > 0, rank >= 0 else { return nil }
    return energies.dropFirst(rank).reduce(0, +) / total
  }

  /// One line for the run log: the mean relative output error over the nodes that have one,
  /// and the node that loses most; nil when none has one.
  public static func summary(of nodes: [String: WhitenedNode]) -> String? {
    let errors = nodes.compactMap { name, node in
      node.calibrationOutputError.map { (name: name, rank: node.rank, error: $0) }
    }.sorted { $0.name < $1.name }
    guard let worst = errors.max(by: { $0.error < $1.error }) else { return nil }
    let mean = errors.map(\.error).reduce(0, +) / Double(errors.count)
    return "whitened start: output error on the calibration inputs, relative to each node's "
      + "output variance: mean "
      + String(
        format: "%.3f over %d %@; largest %.3f at ", mean, errors.count,
        errors.count == 1 ? "node" : "nodes", worst.error)
      + "\(worst.name) (rank \(worst.rank))"
  }
}

/// Applies a manifest's `surgery` rules, in order, to a graph and compiles the result.
public enum Rewriter {
  private enum LastRule {
    case lora
    case freeze
    case train
  }

  private struct Wrap {
    var settings: WrapSettings
    var schedule: AdapterSchedule
    var rule: LoRARule
  }

  /// `initializes` false leaves adapters at zero (validate and summary only need shapes).
  /// `calibration`: the input moments of the nodes that `init: svd_whitened` wraps
  /// (`Calibration.inputMoments`), needed when initializing. `fitted`: svd_whitened nodes whose
  /// decomposition and rank are already known (`refit: sequential` rewrites with them); their
  /// calibration moments and budgets are not read again.
  public static func apply(
    _ manifest: Manifest, to resolved: ResolvedModel, initializes: Bool,
    calibration: [String: InputMoments] = [:], fitted: [String: WhitenedNode] = [:]
  ) -> (Rewrite?, [Diagnostic]) {
    var diagnostics: [Diagnostic] = []
    var model = resolved.model
    let nodes = model.nodes
    var lastRule: [String: LastRule] = [:]
    var wraps: [String: Wrap] = [:]
    var hasLoRA = false

    // Blocks are numbered from 0; an index past the model's last is a mistake, not an empty set.
    let blockCount = (nodes.compactMap(\.block).max() ?? -1) + 1
    func resolve(
      _ selectors: [Located<String>], exclude: [Located<String>] = [], blocks: Located<[Int]>?
    ) -> [Int]? {
      var failed = false
      if let blocks, let outside = blocks.value.first(where: { $0 >= blockCount }) {
        diagnostics.append(
          Diagnostic(
            location: blocks.location, severity: .error,
            message: blockCount == 0
              ? "blocks names block \(outside), but this model has no blocks"
              : "blocks names block \(outside), but this model has \(blockCount) block\(blockCount == 1 ? "" : "s") (0-\(blockCount - 1))",
            fix: blockCount == 0
              ? "remove blocks" : "use block indices from 0 to \(blockCount - 1)"))
        failed = true
      }
      for selector in selectors + exclude {
        if let problem = unmatchedSelector(selector.value, in: nodes) {
          diagnostics.append(
            Diagnostic(
              location: selector.location, severity: .error, message: problem.message,
              fix: problem.fix))
          failed = true
        }
      }
      if failed { return nil }
      do {
        return try selectNodes(
          selectors.map(\.value), exclude: exclude.map(\.value),
          blocks: blocks.map { Set($0.value) }, in: nodes)
      } catch {
        diagnostics.append(
          Diagnostic(
            location: selectors.first?.location
              ?? SourceLocation(file: manifest.file, line: 1, column: 1),
            severity: .error, message: error.message, fix: error.fix))
        return nil
      }
    }

    var ruleMatches: [RuleMatch] = []
    // Rule indexes naming each node, in order: the last decides, the others are overridden.
    var namedBy: [String: [Int]] = [:]
    func record(_ kind: RuleMatch.Kind, _ location: SourceLocation, _ selected: [Int]) {
      let index = ruleMatches.count + 1
      ruleMatches.append(
        RuleMatch(
          index: index, kind: kind, location: location,
          matched: selected.sorted().map { nodes[$0].name }))
      for node in selected { namedBy[nodes[node].name, default: []].append(index) }
    }
    for rule in manifest.surgery {
      switch rule {
      case .lora(let lora):
        hasLoRA = true
        guard
          let selected = resolve(lora.layers, exclude: lora.exclude, blocks: lora.blocks)
        else {
          record(.lora, lora.location, [])
          continue
        }
        record(.lora, lora.location, selected)
        if selected.isEmpty {
          diagnostics.append(
            Diagnostic(
              location: lora.location, severity: .error,
              message: "this lora rule selects no node after blocks and exclude",
              fix: "widen layers or blocks, or remove the rule"))
          continue
        }
        let unwrappable = selected.map { nodes[$0] }.filter {
          $0.kind != .linear && $0.kind != .conv2d
        }
        if !unwrappable.isEmpty {
          let names = unwrappable.prefix(3).map { "\($0.name) (\($0.kind.rawValue))" }
          diagnostics.append(
            Diagnostic(
              location: lora.location, severity: .error,
              message:
                "lora cannot wrap \(names.joined(separator: ", "))\(unwrappable.count > 3 ? " and \(unwrappable.count - 3) more" : ""): adapters wrap Linear and Conv2d nodes",
              fix: "narrow layers, or add those nodes to exclude"))
          continue
        }
        let settings = WrapSettings(
          rank: lora.rank.value, alpha: lora.alpha?.value,
          initialization: WrapSettings.Initialization(lora.initialization.value),
          biasC: WrapSettings.BiasC(lora.biasC.value),
          convForm: ConvAdapterForm(lora.convForm.value),
          noise: lora.noise.map {
            (
              statistics: NoiseModel.Statistics($0.statistics), scale: $0.scale,
              spectralCap: $0.spectralCap
            )
          })
        let schedule = AdapterSchedule(
          decay: lora.decay.map {
            DecayCurve(
              shape: DecayCurve.Shape($0.shape), start: $0.start, end: $0.end)
          },
          noise: lora.noise.map { NoiseSchedule(clearBelow: $0.clearBelow) })
        for index in selected {
          wraps[nodes[index].name] = Wrap(settings: settings, schedule: schedule, rule: lora)
          lastRule[nodes[index].name] = .lora
        }
      case .freeze(let selectors, let location):
        let selected = resolve(selectors, blocks: nil) ?? []
        record(.freeze, location, selected)
        for index in selected { lastRule[nodes[index].name] = .freeze }
      case .train(let selectors, let location):
        let selected = resolve(selectors, blocks: nil) ?? []
        record(.train, location, selected)
        for index in selected { lastRule[nodes[index].name] = .train }
      }
    }

    // init svd_whitened: each node's decomposition of W·L, from its calibration inputs.
    var whitenings: [String: Whitening] = [:]
    if initializes {
      let weights = model.wrappableWeightMatrices
      for (name, wrap) in wraps.sorted(by: { $0.key < $1.key })
      where wrap.settings.initialization == .svdWhitened {
        if let known = fitted[name] {
          whitenings[name] = known.whitening
          wraps[name]?.settings.rank = known.rank
          if wrap.rule.alpha == nil { wraps[name]?.settings.alpha = Double(known.rank) }
          continue
        }
        guard let moments = calibration[name], let weight = weights[name],
          weight.shape[1] == moments.width
        else {
          diagnostics.append(
            Diagnostic(
              location: wrap.rule.calibration?.location ?? wrap.rule.location, severity: .error,
              message: "init svd_whitened has no calibration inputs for \(name)",
              fix: "give the manifest training data (train.data), or use init: svd_residual"))
          continue
        }
        do {
          whitenings[name] = Whitening(
            decomposition: try WhitenedSVD(weight: weight, covariance: moments.covariance),
            mean: moments.mean)
        } catch {
          diagnostics.append(
            Diagnostic(
              location: wrap.rule.calibration?.location ?? wrap.rule.location, severity: .error,
              message: "cannot whiten \(name): \(error.description)",
              fix: "raise calibration.batches, or use init: svd_residual for this layer"))
        }
      }
      if diagnostics.contains(where: { $0.severity == .error }) { return (nil, diagnostics) }
    }

    // Rank budgets: the nodes whose (last) lora rule has a budget get per-node ranks from
    // their singular values. Without weights (validate, summary) they show the cap, rank.
    if initializes {
      let budgeted = Dictionary(
        grouping: wraps.filter { $0.value.rule.budget != nil && fitted[$0.key] == nil }
      ) {
        $0.value.rule.location
      }
      for (_, group) in budgeted.sorted(by: { $0.key < $1.key }) {
        let rule = group[0].value.rule
        guard let budget = rule.budget else { continue }
        do {
          let inputs = try RankBudgeting.nodes(
            Set(group.map(\.key)), in: model, cap: rule.rank.value,
            keepsBias: group[0].value.settings.biasC != .none,
            whitenings: budget.criterion == .whitened ? whitenings : nil)
          let allocation = RankBudgeting.allocate(
            inputs, share: budget.share, floor: budget.floor)
          if allocation.overBudget {
            diagnostics.append(
              Diagnostic(
                location: budget.location, severity: .warning,
                message:
                  "budget.floor \(budget.floor) alone needs \(allocation.spent) parameters, more than the budget's \(allocation.capacity)",
                fix: "raise budget.share or lower budget.floor"))
          }
          for (name, rank) in allocation.ranks {
            wraps[name]?.settings.rank = rank
            if rule.alpha == nil { wraps[name]?.settings.alpha = Double(rank) }
          }
        } catch {
          diagnostics.append(
            Diagnostic(
              location: budget.location, severity: .error,
              message: "the rank budget needs the singular values of W: \(error)",
              fix: "remove budget and give a rank"))
        }
      }
    } else {
      // Without weights a budgeted rank is only the rule's cap: each node gets at most what an
      // allocation could give it, so a narrow layer under a wide cap is no error.
      func clamp(_ name: String, fanIn: Int, out: Int) {
        guard let wrap = wraps[name], wrap.rule.budget != nil else { return }
        let rank = max(
          1, min(wrap.settings.rank, RankBudgeting.largestRank(fanIn: fanIn, out: out)))
        wraps[name]?.settings.rank = rank
        if wrap.rule.alpha == nil { wraps[name]?.settings.alpha = Double(rank) }
      }
      var copy = model
      copy.visitWrappable(
        linear: { clamp($0.name, fanIn: $0.inFeatures, out: $0.outFeatures) },
        convolution: {
          clamp(
            $0.name, fanIn: $0.inChannels / $0.groups * $0.kernelSize.0 * $0.kernelSize.1,
            out: $0.outChannels)
        })
    }

    // Attach the adapters; each node's init draws from a stream of its own (node order).
    let seed = UInt64(manifest.model.seed)
    let order = Dictionary(uniqueKeysWithValues: nodes.enumerated().map { ($1.name, $0) })
    // Ranks too large for several nodes of one rule become one diagnostic at its rank.
    var rankFailures: [(rank: Located<Int>, node: String, bound: Int)] = []
    func attach(
      _ name: String, _ body: (WrapSettings, inout RandomStream) throws(WrapError) -> Void
    ) {
      guard let wrap = wraps[name] else { return }
      var random = RandomStream(seed: seed, stream: 1_000 + UInt64(order[name] ?? 0))
      do {
        try body(wrap.settings, &random)
      } catch {
        if let bound = error.rankBound {
          rankFailures.append((wrap.rule.rank, name, bound))
        } else {
          diagnostics.append(
            Diagnostic(
              location: wrap.rule.location, severity: .error, message: error.message,
              fix: error.fix))
        }
      }
    }
    model.visitWrappable(
      linear: { layer in
        attach(layer.name) { settings, random throws(WrapError) in
          try Wrapper.wrap(
            &layer, settings: settings, initializes: initializes, random: &random,
            whitening: whitenings[layer.name])
        }
      },
      convolution: { layer in
        attach(layer.name) { settings, random throws(WrapError) in
          try Wrapper.wrap(
            &layer, settings: settings, initializes: initializes, random: &random,
            whitening: whitenings[layer.name])
        }
      })
    let byRule = Dictionary(grouping: rankFailures) { $0.rank.location }
    for (location, failures) in byRule.sorted(by: { $0.key.line < $1.key.line }) {
      let tightest = failures.min { $0.bound < $1.bound }!
      let others = failures.count - 1
      diagnostics.append(
        Diagnostic(
          location: location, severity: .error,
          message:
            "rank \(tightest.rank.value) is not below min(in, out) = \(tightest.bound) for \(tightest.node)"
            + (others > 0
              ? " (and \(others) more node\(others == 1 ? "" : "s") of this rule)" : ""),
          fix: "use rank < \(tightest.bound), or exclude the smaller layers"))
    }
    if diagnostics.contains(where: { $0.severity == .error }) { return (nil, diagnostics) }

    // Trainability: the last rule naming a node decides; docs/manifest.md's defaults for the rest.
    var trainable: Set<String> = []
    var actions: [NodeAction] = []
    for node in model.nodes {
      let adapterNames = Set(
        node.parameters.map(\.name).filter {
          $0.hasSuffix(".lora_A") || $0.hasSuffix(".lora_B") || $0.hasSuffix(".lora_C")
        })
      let all = Set(node.parameters.map(\.name))
      let kind: NodeAction.Kind
      switch lastRule[node.name] {
      case .lora?:
        trainable.formUnion(adapterNames)
        kind = .wrapped
      case .freeze?:
        kind = .frozen
      case .train?:
        trainable.formUnion(all)
        kind = .trained
      case nil:
        let isNewHead = !all.isEmpty && all.isSubset(of: resolved.newHeadParameters)
        if !hasLoRA || isNewHead {
          trainable.formUnion(all)
          kind = .trained
        } else {
          kind = .frozen
        }
      }
      let rules = namedBy[node.name] ?? []
      var action = NodeAction(node: node.name, kind: kind, byDefault: lastRule[node.name] == nil)
      action.rule = rules.last
      action.overrides = rules.dropLast().reduce(into: []) { if !$0.contains($1) { $0.append($1) } }
      if kind == .wrapped, let wrap = wraps[node.name] {
        action.budgeted = wrap.rule.budget != nil
        action.rank = action.budgeted ? wrap.rule.rank.value : wrap.settings.rank
      }
      actions.append(action)
    }
    let schedules = wraps.mapValues(\.schedule)
    do {
      let plan = try TrainingPlan(compiling: model, trainable: trainable, schedules: schedules)
      var whitened: [String: WhitenedNode] = [:]
      for (name, whitening) in whitenings {
        guard let wrap = wraps[name] else { continue }
        whitened[name] = WhitenedNode(
          whitening: whitening, rank: wrap.settings.rank, refit: wrap.rule.refit?.value ?? .none,
          batches: wrap.rule.calibration?.batches ?? 16,
          location: wrap.rule.refit?.location ?? wrap.rule.location)
      }
      return (
        Rewrite(
          plan: plan, actions: actions, original: resolved.model, rules: ruleMatches,
          whitened: whitened),
        diagnostics
      )
    } catch {
      diagnostics.append(
        Diagnostic(
          location: SourceLocation(file: manifest.file, line: 1, column: 1), severity: .error,
          message: error.description))
      return (nil, diagnostics)
    }
  }
}

// Manifest values → engine values: exhaustive switches, so a new manifest value cannot fall
// back to another one silently (the compiler asks for its case).
extension WrapSettings.BiasC {
  init(_ biasC: BiasCInitialization) {
    switch biasC {
    case .zeros: self = .zeros
    case .copy: self = .copy
    case .none: self = .none
    }
  }
}

extension ConvAdapterForm {
  init(_ form: ConvForm) {
    switch form {
    case .lowrank: self = .lowrank
    case .loralib: self = .loralib
    }
  }
}

extension NoiseModel.Statistics {
  init(_ statistics: NoiseStatistics) {
    switch statistics {
    case .global: self = .global
    case .perOutput: self = .perOutput
    }
  }
}

extension DecayCurve.Shape {
  init(_ shape: ScheduleShape) {
    switch shape {
    case .linear: self = .linear
    case .cosine: self = .cosine
    case .sine: self = .sine
    }
  }
}

extension WrapSettings.Initialization {
  init(_ initialization: AdapterInitialization) {
    switch initialization {
    case .lora: self = .lora
    case .svd: self = .svd
    case .svdResidual: self = .svdResidual
    case .svdWhitened: self = .svdWhitened
    }
  }
}
