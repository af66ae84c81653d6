import Foundation
import Plots

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

  public init(
    cell: Cell, validationAccuracy: Double, testAccuracy: Double, trainSeconds: Double = 0,
    endsWFree: Bool = false, stuckAtChance: Bool = false, deployedParameters: Int = 0,
    keptShare: Double = 1, curve: [(step: Int, accuracy: Double, wFree: Double)] = [],
    losses: [(step: Int, loss: Double)] = []
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

  enum CodingKeys: String, CodingKey {
    case method, rank, seeds, test, validation
    case learningRate = "lr"
    case validationByLearningRate = "validation_by_lr"
    case keptShare = "kept_share"
    case deployedParameters = "deployed_params"
    case trainSeconds = "train_seconds_mean"
    case endsWFree = "w_free"
    case stuckSeeds = "stuck_seeds"
  }
}

public enum Aggregation {
  /// One row per (method, rank) with a chosen learning rate: test accuracy mean ± std over the
  /// seeds that ran at that rate.
  public static func rows(_ sweep: Sweep, results: [CellResult], chosen: [RowKey: String])
    -> [ComparisonRow]
  {
    let considered = Set(sweep.selectionCells)
    return sweep.rows.compactMap { row in
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
      return ComparisonRow(
        method: row.method, rank: row.rank, learningRate: rate, validationByLearningRate: byRate,
        seeds: cells.map(\.cell.seed), test: MeanStd(cells.map(\.testAccuracy)),
        validation: MeanStd(cells.map(\.validationAccuracy)), keptShare: cells[0].keptShare,
        deployedParameters: cells[0].deployedParameters,
        trainSeconds: MeanStd(cells.map(\.trainSeconds)).mean, endsWFree: cells[0].endsWFree,
        stuckSeeds: cells.filter(\.stuckAtChance).count)
    }
  }

  /// The Markdown table; `reference` (a method name) adds a Δ column against its first row.
  public static func markdown(_ rows: [ComparisonRow], reference: String?) -> String {
    let referenceMean = rows.first { $0.method == reference }?.test.mean
    var lines = [
      "| method | rank | lr (chosen on validation) | validation acc by lr | seeds | test acc (mean ± std) | Δ vs \(reference ?? "—") | kept share of wrapped weights | deployed params | train s (mean) | W-free |",
      "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows {
      let tried = row.validationByLearningRate.sorted {
        (Double($0.key) ?? 0) < (Double($1.key) ?? 0)
      }.map { String(format: "%@: %.3f", $0.key, $0.value) }.joined(separator: ", ")
      let delta =
        referenceMean.map { String(format: "%+.1f", 100 * (row.test.mean - $0)) } ?? "—"
      let stuck = row.stuckSeeds > 0 ? " (\(row.stuckSeeds) stuck at chance)" : ""
      lines.append(
        "| \(row.method) | \(row.rank.map(String.init) ?? "—") | \(row.learningRate) | \(tried) | \(row.seeds.map(String.init).joined(separator: ",")) | "
          + String(format: "%.4f ± %.4f", row.test.mean, row.test.std) + stuck
          + " | \(delta) | " + String(format: "%.3f (1/%.1f)", row.keptShare, 1 / row.keptShare)
          + " | \(row.deployedParameters) | " + String(format: "%.0f", row.trainSeconds)
          + " | \(row.endsWFree ? "yes" : "no") |")
    }
    return lines.joined(separator: "\n") + "\n"
  }
}

/// The comparison's SVG figures.
public enum ComparisonFigures {
  /// `(file name, SVG)`: accuracy vs kept share, learning curves, W-free accuracy in training.
  /// Curves are the first seed's run at each row's chosen learning rate.
  public static func figures(
    _ rows: [ComparisonRow], results: [CellResult], reference: String?
  ) -> [(String, String)] {
    var byMethod: [String: [(x: Double, y: Double)]] = [:]
    var order: [String] = []
    for row in rows {
      if byMethod[row.method] == nil { order.append(row.method) }
      byMethod[row.method, default: []].append((100 * row.keptShare, row.test.mean))
    }
    let references =
      rows.first { $0.method == reference }.map {
        [
          ReferenceLine(
            y: $0.test.mean, label: "\($0.method) \(String(format: "%.3f", $0.test.mean))")
        ]
      } ?? []
    let scatter = LineChart(
      title: "Test accuracy vs kept share of the wrapped weights (mean over seeds)",
      xLabel: "deployed share of the wrapped layers' parameters (%)", yLabel: "test accuracy",
      series: order.map { method in
        Series(
          name: method, points: byMethod[method]!.sorted { $0.x < $1.x },
          style: byMethod[method]!.count > 1 ? .solid : .markers)
      }, references: references)

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
      let style = styles[(index / Palette.colors.count) % styles.count]
      curves.append(
        Series(
          name: label, points: first.curve.map { (Double($0.step), $0.accuracy) }, style: style))
      wFree.append(
        Series(name: label, points: first.curve.map { (Double($0.step), $0.wFree) }, style: style))
      losses.append(
        Series(name: label, points: smoothed(first.losses), style: style))
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
    return [
      ("accuracy-vs-kept.svg", scatter.svg()), ("learning-curves.svg", learning.svg()),
      ("w-free-during-training.svg", wFreeChart.svg()),
    ]
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
