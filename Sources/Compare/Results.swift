import Foundation
import Plots
import Plumbing

/// What one finished cell measured, read back from its output directory.
public struct CellResult: Sendable {
  public var cell: Cell
  /// The deployed model's validation accuracy at the end of training: W-free when the run
  /// ends W-free, with W otherwise. This, and only this, chooses learning rates.
  public var validationAccuracy: Double
  /// The deployed model's test accuracy (results.json's test_accuracy).
  public var testAccuracy: Double
  public var trainSeconds: Double
  public var endsWFree: Bool
  public var stuckAtChance: Bool
  /// Parameters of the deployed model: the W-free export, or the model with adapters merged.
  public var deployedParameters: Int
  /// Deployed parameters of the wrapped layers over their original `W` and `b` (1: W kept).
  public var keptShare: Double
  /// Validation evaluations: (step, accuracy as trained, accuracy W-free).
  public var curve: [(step: Int, accuracy: Double, wFree: Double)]
  /// Training loss per step.
  public var losses: [(step: Int, loss: Double)]
  /// The deployed model's test predictions; nil for runs from before `predictions.json`.
  public var predictions: CellPredictions?
  /// The CRC-32 of the surgeon executable that finished the cell (results.json's
  /// `build.executable_crc32`); nil for runs from before it was recorded.
  public var build: String?
  /// The input files the run read, by path (results.json's `inputs`); nil for runs from
  /// before they were recorded.
  public var inputs: [String: FileFingerprint]?

  public init(
    cell: Cell, validationAccuracy: Double, testAccuracy: Double, trainSeconds: Double = 0,
    endsWFree: Bool = false, stuckAtChance: Bool = false, deployedParameters: Int = 0,
    keptShare: Double = 1, curve: [(step: Int, accuracy: Double, wFree: Double)] = [],
    losses: [(step: Int, loss: Double)] = [], predictions: CellPredictions? = nil,
    build: String? = nil, inputs: [String: FileFingerprint]? = nil
  ) {
    self.cell = cell
    self.validationAccuracy = validationAccuracy
    self.testAccuracy = testAccuracy
    self.trainSeconds = trainSeconds
    self.endsWFree = endsWFree
    self.stuckAtChance = stuckAtChance
    self.deployedParameters = deployedParameters
    self.keptShare = keptShare
    self.curve = curve
    self.losses = losses
    self.predictions = predictions
    self.build = build
    self.inputs = inputs
  }
}

/// Mean and sample standard deviation (n − 1; 0 for one value).
public struct MeanStd: Sendable, Equatable, Codable {
  public var mean: Double
  public var std: Double
  public var count: Int

  public init(_ values: [Double]) {
    count = values.count
    mean = values.isEmpty ? .nan : values.reduce(0, +) / Double(values.count)
    if values.count < 2 {
      std = 0
    } else {
      let m = mean
      std = (values.map { ($0 - m) * ($0 - m) }.reduce(0, +) / Double(values.count - 1))
        .squareRoot()
    }
  }
}

public enum Selection {
  /// Each row's learning rate: the one whose cells have the highest mean validation accuracy
  /// (ties: the first in the sweep's order). Test accuracy is never read.
  public static func chooseLearningRates(_ sweep: Sweep, results: [CellResult]) -> [RowKey: String]
  {
    let considered = Set(sweep.selectionCells)
    var chosen: [RowKey: String] = [:]
    for row in sweep.rows {
      guard let method = sweep.method(named: row.method) else { continue }
      var best: (rate: String, score: Double)?
      for rate in method.learningRates {
        let scores = results.filter {
          $0.cell.row == row && $0.cell.learningRate == rate && considered.contains($0.cell)
        }.map(\.validationAccuracy)
        guard !scores.isEmpty else { continue }
        let score = MeanStd(scores).mean
        if best == nil || score > best!.score { best = (rate, score) }
      }
      if let best { chosen[row] = best.rate }
    }
    return chosen
  }
}

/// One row of the comparison table.
public struct ComparisonRow: Sendable, Codable {
  public var method: String
  public var rank: Int?
  public var learningRate: String
  /// Every tried learning rate's mean validation accuracy.
  public var validationByLearningRate: [String: Double]
  public var seeds: [Int]
  public var test: MeanStd
  public var validation: MeanStd
  public var keptShare: Double
  public var deployedParameters: Int
  public var trainSeconds: Double
  public var endsWFree: Bool
  public var stuckSeeds: Int
  /// The paired test-set difference to the row's reference; nil when it cannot be computed
  /// (`pairedNote` says why) or the row is its own reference.
  public var paired: PairedDifference? = nil
  /// Why `paired` is nil: "reference" (the row is its own), or what is missing.
  public var pairedNote: String? = nil
  /// The reference row's name (`METHOD` or `METHOD rRANK`); nil for a reference itself.
  public var referenceRow: String? = nil
  /// For a method with `builds_on:`, the paired test-set difference to the recipe it changes:
  /// what the change bought. nil when the method has none or it cannot be computed.
  public var change: PairedDifference? = nil
  /// The recipe the method builds on, and why `change` is nil when it is.
  public var buildsOn: String? = nil
  public var changeNote: String? = nil
  /// The surgeon builds that finished the row's cells (executable CRC-32s, sorted;
  /// "unrecorded" for cells from before results.json named its build).
  public var builds: [String] = []

  enum CodingKeys: String, CodingKey {
    case method, rank, seeds, test, validation, paired
    case pairedNote = "paired_note"
    case referenceRow = "reference"
    case change = "builds_on"
    case changeNote = "builds_on_note"
    case learningRate = "lr"
    case validationByLearningRate = "validation_by_lr"
    case keptShare = "kept_share"
    case deployedParameters = "deployed_params"
    case trainSeconds = "train_seconds_mean"
    case endsWFree = "w_free"
    case stuckSeeds = "stuck_seeds"
    case builds
  }

  /// As synthesised, except that `paired` is always written (null when there is none), so a
  /// reader sees that the row was not paired rather than a key missing.
  public func encode(to encoder: Encoder) throws {
    var container = encoder.container(keyedBy: CodingKeys.self)
    try container.encode(method, forKey: .method)
    try container.encodeIfPresent(rank, forKey: .rank)
    try container.encode(learningRate, forKey: .learningRate)
    try container.encode(validationByLearningRate, forKey: .validationByLearningRate)
    try container.encode(seeds, forKey: .seeds)
    try container.encode(test, forKey: .test)
    try container.encode(validation, forKey: .validation)
    try container.encode(keptShare, forKey: .keptShare)
    try container.encode(deployedParameters, forKey: .deployedParameters)
    try container.encode(trainSeconds, forKey: .trainSeconds)
    try container.encode(endsWFree, forKey: .endsWFree)
    try container.encode(stuckSeeds, forKey: .stuckSeeds)
    try container.encode(builds, forKey: .builds)
    try container.encode(paired, forKey: .paired)
    try container.encodeIfPresent(referenceRow, forKey: .referenceRow)
    try container.encodeIfPresent(pairedNote, forKey: .pairedNote)
    if buildsOn != nil {
      try container.encode(change, forKey: .change)
      try container.encodeIfPresent(changeNote, forKey: .changeNote)
    }
  }
}

public enum Aggregation {
  /// `ComparisonRow.builds`' name for cells whose results.json does not name a build.
  public static let unrecordedBuild = "unrecorded"

  /// One row per (method, rank) with a chosen learning rate: test accuracy mean ± std over the
  /// seeds that ran at that rate, and the paired difference to the row's reference — the
  /// method's `reference:`, else `reference`, else the sweep's first method (its first row when
  /// it has several ranks).
  public static func rows(
    _ sweep: Sweep, results: [CellResult], chosen: [RowKey: String], reference: String? = nil,
    draws: Int = PairedStatistics.bootstrapDraws
  ) -> [ComparisonRow] {
    let considered = Set(sweep.selectionCells)
    var cellsByRow: [[CellResult]] = []
    var rows: [ComparisonRow] = sweep.rows.compactMap { row in
      guard let rate = chosen[row], let method = sweep.method(named: row.method) else {
        return nil
      }
      let cells = results.filter { $0.cell.row == row && $0.cell.learningRate == rate }
        .sorted { $0.cell.seed < $1.cell.seed }
      guard !cells.isEmpty else { return nil }
      var byRate: [String: Double] = [:]
      for tried in method.learningRates {
        let scores = results.filter {
          $0.cell.row == row && $0.cell.learningRate == tried && considered.contains($0.cell)
        }.map(\.validationAccuracy)
        if !scores.isEmpty { byRate[tried] = MeanStd(scores).mean }
      }
      cellsByRow.append(cells)
      return ComparisonRow(
        method: row.method, rank: row.rank, learningRate: rate, validationByLearningRate: byRate,
        seeds: cells.map(\.cell.seed), test: MeanStd(cells.map(\.testAccuracy)),
        validation: MeanStd(cells.map(\.validationAccuracy)), keptShare: cells[0].keptShare,
        deployedParameters: cells[0].deployedParameters,
        trainSeconds: MeanStd(cells.map(\.trainSeconds)).mean, endsWFree: cells[0].endsWFree,
        stuckSeeds: cells.filter(\.stuckAtChance).count,
        builds: Set(cells.map { $0.build ?? unrecordedBuild }).sorted())
    }
    // Row `index` paired with row `other` on the test examples of the seeds both ran.
    func pair(_ index: Int, with other: Int) -> (
      name: String, outcome: Result<PairedDifference, PairedStatistics.Unavailable>
    ) {
      let name = RowKey(method: rows[other].method, rank: rows[other].rank).description
      let outcome = PairedStatistics.compare(
        row: cellsByRow[index].map { ($0.cell.seed, $0.predictions) },
        reference: cellsByRow[other].map { ($0.cell.seed, $0.predictions) }, referenceName: name,
        draws: draws)
      return (name, outcome)
    }
    let fallback = reference ?? sweep.methods.first?.name
    for index in rows.indices {
      guard
        let target = sweep.method(named: rows[index].method)?.reference ?? fallback
      else { continue }
      if target == rows[index].method {
        rows[index].pairedNote = "reference"
        continue
      }
      guard let other = rows.firstIndex(where: { $0.method == target }) else {
        rows[index].referenceRow = target
        rows[index].pairedNote = "no finished cells of \(target)"
        continue
      }
      let (name, outcome) = pair(index, with: other)
      rows[index].referenceRow = name
      switch outcome {
      case .success(let difference): rows[index].paired = difference
      case .failure(let problem): rows[index].pairedNote = problem.description
      }
    }
    // What each ingredient bought: the row against the recipe it builds on, paired the same way.
    for index in rows.indices {
      guard let base = sweep.method(named: rows[index].method)?.buildsOn else { continue }
      rows[index].buildsOn = base
      // A base with several ranks pairs with the row of the same rank, else its first row.
      guard
        let other = rows.firstIndex(where: { $0.method == base && $0.rank == rows[index].rank })
          ?? rows.firstIndex(where: { $0.method == base })
      else {
        rows[index].changeNote = "no finished cells of \(base)"
        continue
      }
      let (name, outcome) = pair(index, with: other)
      rows[index].buildsOn = name
      switch outcome {
      case .success(let difference): rows[index].change = difference
      case .failure(let problem): rows[index].changeNote = problem.description
      }
    }
    return rows
  }

  /// The table of what each change bought: every row whose method has `builds_on:`, paired
  /// with the recipe it changes on the seeds both ran. Empty when no method builds on another.
  public static func changesMarkdown(_ rows: [ComparisonRow]) -> String {
    let changed = rows.filter { $0.buildsOn != nil }
    guard !changed.isEmpty else { return "" }
    var lines = [
      "| method | builds on | seeds paired | Δ vs what it builds on, points [95% CI] | 95% CI with the seed spread | McNemar p |",
      "|---|---|---|---|---|---|",
    ]
    for row in changed {
      let base = row.buildsOn ?? "—"
      guard let change = row.change else {
        lines.append(
          "| \(row.method) | \(base) | — | — (\(row.changeNote ?? "not paired")) | — | — |")
        continue
      }
      lines.append(
        "| \(row.method) | \(base) | \(change.seeds.map(String.init).joined(separator: ",")) | "
          + change.pointsText + " | \(change.seedSpreadText) | \(formatP(change.mcnemarP)) |")
    }
    return lines.joined(separator: "\n") + "\n"
  }

  /// How the Δ column is computed, for under the table.
  public static let pairedMethodNote = """
    Δ: the row's test accuracy minus its reference's (the first method, `--reference`, or the \
    method's `reference:`), in points, on the same test examples, as the mean over the seeds \
    both ran (a reference with more seeds is paired by matching seed). In brackets the 95% \
    percentile bootstrap interval: \(PairedStatistics.bootstrapDraws) draws resampling test \
    examples with replacement, the same draw for every seed, generator seed \
    \(PairedStatistics.bootstrapSeed). p: McNemar's test on the discordant examples pooled \
    over the paired seeds — exact binomial below \(PairedStatistics.exactBelow) discordant \
    pairs, chi-square with continuity correction from there on. The interval with the seed \
    spread is a two-level bootstrap (the same draws and generator seed): each draw resamples \
    the paired seeds, then the test examples, so it also covers how much another set of \
    training runs would move Δ; with one paired seed that spread is unknown (—).
    """

  /// One line naming the builds that finished the cells (executable CRC-32 with its cell
  /// count), so a table assembled from several builds says so; empty when no cell names one.
  public static func buildsNote(_ results: [CellResult]) -> String {
    let counts = Dictionary(grouping: results) { $0.build ?? unrecordedBuild }.mapValues(\.count)
    guard counts.keys.contains(where: { $0 != unrecordedBuild }) else { return "" }
    let listed = counts.sorted { ($0.value, $1.key) > ($1.value, $0.key) }.map {
      "\($0.key) (\($0.value) \($0.value == 1 ? "cell" : "cells"))"
    }
    return "Builds (CRC-32 of the surgeon executable, results.json `build`; per row in "
      + "comparison.json `builds`): " + listed.joined(separator: ", ") + ".\n"
  }

  /// The Markdown table. The Δ column is each row's paired difference to its reference
  /// (`reference` is the comparison's; a row with another reference names it).
  public static func markdown(_ rows: [ComparisonRow], reference: String?) -> String {
    var lines = [
      "| method | rank | lr (chosen on validation) | validation acc by lr | seeds | test acc (mean ± std) | Δ vs \(reference ?? "reference"), points [95% CI] | 95% CI with the seed spread | McNemar p | kept share of wrapped weights | deployed params | train s (mean) | W-free |",
      "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows {
      let tried = row.validationByLearningRate.sorted {
        (Double($0.key) ?? 0) < (Double($1.key) ?? 0)
      }.map { String(format: "%@: %.3f", $0.key, $0.value) }.joined(separator: ", ")
      let (delta, p) = pairedCells(row, rows: rows, reference: reference)
      let spread = row.paired?.seedSpreadText ?? "—"
      let stuck = row.stuckSeeds > 0 ? " (\(row.stuckSeeds) stuck at chance)" : ""
      lines.append(
        "| \(row.method) | \(row.rank.map(String.init) ?? "—") | \(row.learningRate) | \(tried) | \(row.seeds.map(String.init).joined(separator: ",")) | "
          + String(format: "%.4f ± %.4f", row.test.mean, row.test.std) + stuck
          + " | \(delta) | \(spread) | \(p) | "
          + String(format: "%.3f (1/%.1f)", row.keptShare, 1 / row.keptShare)
          + " | \(row.deployedParameters) | " + String(format: "%.0f", row.trainSeconds)
          + " | \(row.endsWFree ? "yes" : "no") |")
    }
    return lines.joined(separator: "\n") + "\n"
  }

  /// The Δ and p cells of one row: the paired difference with its interval, or why there is
  /// none (with the unpaired difference of means when the reference row exists).
  static func pairedCells(_ row: ComparisonRow, rows: [ComparisonRow], reference: String?) -> (
    String, String
  ) {
    if let paired = row.paired {
      var delta = paired.pointsText
      if paired.reference != reference { delta += " vs \(paired.reference)" }
      if paired.seeds != row.seeds {
        delta += " (seeds \(paired.seeds.map(String.init).joined(separator: ",")))"
      }
      return (delta, formatP(paired.mcnemarP))
    }
    guard let target = row.referenceRow else { return ("reference", "—") }
    // The unpaired difference of means, for runs that cannot be paired.
    let means =
      rows.first { RowKey(method: $0.method, rank: $0.rank).description == target }
      .map { String(format: "; difference of means %+.1f", 100 * (row.test.mean - $0.test.mean)) }
      ?? ""
    return ("— (vs \(target): \(row.pairedNote ?? "not paired")\(means))", "—")
  }

  /// A p-value as a table shows it: three decimals, or scientific below 0.001.
  static func formatP(_ p: Double) -> String {
    p >= 0.001 ? String(format: "%.3f", p) : String(format: "%.1e", p)
  }
}

extension PairedDifference {
  /// The difference and its interval in points, as the tables and figures write them:
  /// `+1.5 [+0.7, +2.4]`.
  var pointsText: String {
    String(format: "%+.1f [%+.1f, %+.1f]", 100 * delta, 100 * ci95[0], 100 * ci95[1])
  }

  /// The two-level interval in points, `[−6.1, −2.8]`, or "— (one seed)".
  public var seedSpreadText: String {
    guard let interval = ci95Seeds, interval.count == 2 else { return "— (one seed)" }
    return String(format: "[%+.1f, %+.1f]", 100 * interval[0], 100 * interval[1])
  }
}

/// The comparison's SVG figures.
public enum ComparisonFigures {
  /// The value axis (points) of a forest plot of differences and intervals given as fractions:
  /// when some rows lie far out (more than 4× the median distance from 0 and more than 5 points:
  /// a collapsed configuration), the intervals of the others and 0 with a margin, so the close
  /// rows are not squeezed together; the far ones then show as arrows at the edge. nil (fit
  /// everything) when no row is that far or every row is.
  public static func closeRange(_ differences: [(delta: Double, low: Double, high: Double)])
    -> ClosedRange<Double>?
  {
    let magnitudes = differences.map { abs(100 * $0.delta) }.filter(\.isFinite).sorted()
    guard !magnitudes.isEmpty else { return nil }
    let limit = max(4 * magnitudes[magnitudes.count / 2], 5)
    let close = differences.filter { abs(100 * $0.delta) <= limit }
    guard !close.isEmpty, close.count < differences.count else { return nil }
    let low = min(0, close.map { 100 * $0.low }.min()!)
    let high = max(0, close.map { 100 * $0.high }.max()!)
    let margin = max(0.25, 0.1 * (high - low))
    return (low - margin)...(high + margin)
  }

  /// `(file name, SVG)`: accuracy vs kept share, the paired differences, learning curves, W-free
  /// accuracy in training. Curves are the first seed's run at each row's chosen learning rate.
  public static func figures(
    _ rows: [ComparisonRow], results: [CellResult], reference: String?
  ) -> [(String, String)] {
    var order: [String] = []
    for row in rows where !order.contains(row.method) { order.append(row.method) }
    // One colour and one marker per method, so no two methods look alike.
    func color(_ method: String) -> String {
      Palette.distinct[order.firstIndex(of: method)! % Palette.distinct.count]
    }
    func marker(_ method: String) -> MarkerShape {
      MarkerShape.allCases[order.firstIndex(of: method)! % MarkerShape.allCases.count]
    }
    func name(_ method: String) -> String {
      let other = rows.first { $0.method == method }?.referenceRow
      return other != nil && other != reference ? "\(method) (Δ vs \(other!))" : method
    }
    let (xs, xRange) = spread(rows.map { 100 * $0.keptShare })
    let references =
      rows.first { $0.method == reference }.map {
        [
          ReferenceLine(
            y: $0.test.mean, label: "\($0.method) \(String(format: "%.3f", $0.test.mean))")
        ]
      } ?? []
    func series(_ points: (Int, ComparisonRow) -> (y: Double, bar: ErrorBar?)?) -> [Series] {
      order.compactMap { method in
        var chosen: [(x: Double, y: Double)] = []
        var bars: [ErrorBar] = []
        for (index, row) in rows.enumerated() where row.method == method {
          guard let point = points(index, row) else { continue }
          chosen.append((xs[index], point.y))
          bars.append(point.bar ?? ErrorBar(low: .nan, high: .nan))
        }
        guard !chosen.isEmpty else { return nil }
        return Series(
          name: name(method), points: chosen, style: chosen.count > 1 ? .solid : .markers,
          color: color(method), marker: marker(method), errorBars: bars)
      }
    }
    let scatter = LineChart(
      title: "Test accuracy vs kept share of the wrapped weights (mean over seeds, 95% CI of Δ)",
      xLabel: "kept share of the wrapped weights (%; close points spread apart)",
      yLabel: "test accuracy",
      series: series { _, row in
        // The paired interval of the difference, drawn around the row's mean.
        let bar = row.paired.map {
          ErrorBar(
            low: row.test.mean + $0.ci95[0] - $0.delta, high: row.test.mean + $0.ci95[1] - $0.delta)
        }
        return (row.test.mean, bar)
      }, references: references, xRange: xRange, height: 460)
    // Forest plots: one row per method, so rows at the same kept share never overlap.
    func note(_ paired: PairedDifference, versus: String?) -> String {
      paired.pointsText
        + (versus.map { " vs \($0)" } ?? "")
        + " · \(paired.seeds.count) \(paired.seeds.count == 1 ? "seed" : "seeds")"
        + (paired.ci95Seeds == nil ? "" : "; with the seed spread \(paired.seedSpreadText)")
    }
    func forest(
      title: String, pick: (ComparisonRow) -> (PairedDifference, versus: String?)?,
      zero: String, width: Int
    ) -> String {
      let picked = rows.compactMap { row in pick(row).map { (row, $0.0, $0.versus) } }
      let items = picked.map { row, paired, versus in
        IntervalChart.Item(
          label: RowKey(method: row.method, rank: row.rank).description,
          estimate: 100 * paired.delta,
          interval: ErrorBar(low: 100 * paired.ci95[0], high: 100 * paired.ci95[1]),
          outerInterval: paired.ci95Seeds.map { ErrorBar(low: 100 * $0[0], high: 100 * $0[1]) },
          note: note(paired, versus: versus), color: color(row.method),
          marker: marker(row.method))
      }
      return IntervalChart(
        title: title,
        xLabel:
          "Δ test accuracy, points (95% bootstrap intervals: bar, over test examples; thin line, with the seed spread)",
        items: items, references: [(0, zero)],
        xRange: closeRange(
          picked.map { _, paired, _ in
            (
              paired.delta, min(paired.ci95[0], paired.ci95Seeds?[0] ?? .infinity),
              max(paired.ci95[1], paired.ci95Seeds?[1] ?? -.infinity)
            )
          }),
        width: width
      ).svg()
    }
    var figures = [
      ("accuracy-vs-kept.svg", scatter.svg()),
      (
        "paired-differences.svg",
        forest(
          title: "Paired test-accuracy difference to the reference",
          pick: { row in
            row.paired.map { ($0, $0.reference == reference ? nil : $0.reference) }
          }, zero: "reference (\(reference ?? "—"))", width: 900)
      ),
    ]
    if rows.contains(where: { $0.change != nil }) {
      figures.append(
        (
          "what-each-change-bought.svg",
          forest(
            title: "What each change bought: paired difference to the recipe it builds on",
            pick: { row in row.change.map { ($0, $0.reference) } },
            zero: "the recipe it builds on", width: 1000)
        ))
    }

    var curves: [Series] = []
    var wFree: [Series] = []
    var losses: [Series] = []
    let styles: [LineStyle] = [.solid, .dashed, .dotted]
    for (index, row) in rows.enumerated() {
      guard
        let first = results.filter({
          $0.cell.row == RowKey(method: row.method, rank: row.rank)
            && $0.cell.learningRate == row.learningRate
        }).min(by: { $0.cell.seed < $1.cell.seed })
      else { continue }
      let label = RowKey(method: row.method, rank: row.rank).description
      let style = styles[(index / Palette.distinct.count) % styles.count]
      let color = Palette.distinct[index % Palette.distinct.count]
      curves.append(
        Series(
          name: label, points: first.curve.map { (Double($0.step), $0.accuracy) }, style: style,
          color: color))
      wFree.append(
        Series(
          name: label, points: first.curve.map { (Double($0.step), $0.wFree) }, style: style,
          color: color))
      losses.append(
        Series(name: label, points: smoothed(first.losses), style: style, color: color))
    }
    let learning = Figure(
      charts: [
        LineChart(
          title: "Validation accuracy as trained (with W while d > 0)", xLabel: "step",
          yLabel: "validation accuracy", series: curves),
        LineChart(
          title: "Training loss (moving mean of 10 steps)", xLabel: "step", yLabel: "loss",
          series: losses, logY: true),
      ], columns: 2)
    let wFreeChart = LineChart(
      title: "W-free validation accuracy during training (frozen W deleted at that step)",
      xLabel: "step", yLabel: "validation accuracy, W-free", series: wFree)
    return figures + [
      ("learning-curves.svg", learning.svg()),
      ("w-free-during-training.svg", wFreeChart.svg()),
    ]
  }

  /// Kept shares with points closer than a marker's width spread symmetrically apart (in order,
  /// around their mean), so none hides another, and an x range with room for them.
  public static func spread(_ shares: [Double]) -> (xs: [Double], range: ClosedRange<Double>?) {
    guard let low = shares.min(), let high = shares.max(), shares.allSatisfy(\.isFinite) else {
      return (shares, nil)
    }
    let span = max(high - low, 1)
    let step = 0.018 * span
    var xs = shares
    var groups: [[Int]] = []
    for index in shares.indices.sorted(by: { shares[$0] < shares[$1] }) {
      if let last = groups.last?.last, shares[index] - shares[last] < step {
        groups[groups.count - 1].append(index)
      } else {
        groups.append([index])
      }
    }
    var widest = 0.0
    for group in groups {
      let center = group.map { shares[$0] }.reduce(0, +) / Double(group.count)
      for (position, index) in group.enumerated() {
        xs[index] = center + (Double(position) - Double(group.count - 1) / 2) * step
      }
      widest = max(widest, Double(group.count - 1) / 2 * step)
    }
    let pad = widest + 0.04 * span
    return (xs, (low - pad)...(high + pad))
  }

  static func smoothed(_ losses: [(step: Int, loss: Double)]) -> [(x: Double, y: Double)] {
    var result: [(x: Double, y: Double)] = []
    var window: [Double] = []
    for (step, loss) in losses {
      window.append(loss)
      if window.count > 10 { window.removeFirst() }
      if step % 5 == 0 || step == losses.last?.step {
        result.append((Double(step), window.reduce(0, +) / Double(window.count)))
      }
    }
    return result
  }
}
