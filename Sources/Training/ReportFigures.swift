import Foundation
import Plots
import Plumbing
import Surgery

/// The figures the original research notes call important — schedule, noise, bias C — plus adapter norms and the
/// learning curves, as SVG files under `figures/`.
public enum ReportFigures {
  /// Writes every figure; returns their file names.
  public static func write(
    trainer: Trainer, test: EvaluationRecord, majority: Double, to directory: URL
  ) throws -> [String] {
    try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    var written: [String] = []
    for (name, svg) in figures(trainer: trainer, majority: majority) {
      try DurableFile.write(Data(svg.utf8), to: directory.appendingPathComponent(name))
      written.append(name)
    }
    return written
  }

  /// `(file name, SVG)` pairs.
  public static func figures(trainer: Trainer, majority: Double) -> [(String, String)] {
    let steps = trainer.state.steps
    let evaluations = trainer.state.evaluations
    let total = Double(trainer.settings.steps)
    var result: [(String, String)] = []

    // Schedule: d(step) per decay curve, with its stages shaded.
    let schedules = trainer.plan.schedules
    let curves = Set(
      schedules.values.compactMap(\.decay).map { "\($0.shape)|\($0.start)|\($0.end)" })
    var scheduleSeries: [Series] = []
    var bands: [Band] = []
    for (index, schedule) in uniqueSchedules(schedules).enumerated() {
      let points = (0...200).map { i -> (x: Double, y: Double) in
        let p = Double(i) / 200
        return (p * total, Double(schedule.state(at: p).decay))
      }
      let label = schedule.decay.map { "d: \($0.shape.rawValue) \($0.start)–\($0.end)" } ?? "d = 1"
      scheduleSeries.append(Series(name: label, points: points))
      if index == 0, let decay = schedule.decay {
        bands.append(
          Band(from: 0, to: decay.start * total, label: "warm-up", color: Palette.bandFills[0]))
        bands.append(
          Band(
            from: decay.start * total, to: decay.end * total, label: "decay",
            color: Palette.bandFills[1 % Palette.bandFills.count]))
        bands.append(
          Band(
            from: decay.end * total, to: total, label: "cool-down",
            color: Palette.bandFills[2 % Palette.bandFills.count]))
      }
      if schedule.noise != nil {
        let noisePoints = (0...200).map { i -> (x: Double, y: Double) in
          let p = Double(i) / 200
          return (p * total, schedule.state(at: p).noiseActive ? 1 : 0)
        }
        scheduleSeries.append(
          Series(name: "noise on (1) / off (0)", points: noisePoints, style: .stepped))
      }
    }
    if !curves.isEmpty || !scheduleSeries.isEmpty {
      result.append(
        (
          "schedule.svg",
          LineChart(
            title: "Decay schedule: d·(W x + b) fades out", xLabel: "step", yLabel: "d",
            series: scheduleSeries, bands: bands, yRange: -0.05...1.05
          ).svg()
        ))
    }

    // Noise: the effective weight's measured mean and std per group beside the original's.
    let roles = Set(evaluations.flatMap { $0.groups.keys }).sorted()
    if !roles.isEmpty {
      func moments(
        _ title: String, _ yLabel: String, _ value: (GroupStatistics) -> Double,
        _ original: (GroupStatistics) -> Double
      ) -> LineChart {
        var references: [ReferenceLine] = []
        for role in roles.prefix(2) {
          if let last = evaluations.last?.groups[role] {
            references.append(
              ReferenceLine(y: original(last), label: "W, \(role)"))
          }
        }
        return LineChart(
          title: title, xLabel: "step", yLabel: yLabel,
          series: roles.map { role in
            Series(
              name: "d·W + N, \(role)",
              points: evaluations.compactMap { record in
                record.groups[role].map { (x: Double(record.step), y: value($0)) }
              })
          }, references: references)
      }
      result.append(
        (
          "noise.svg",
          Figure(
            charts: [
              moments(
                "Noise: mean of the effective weight", "mean", \.effectiveMean, \.originalMean),
              moments(
                "Noise: spread of the effective weight", "standard deviation",
                \.effectiveStandardDeviation, \.originalStandardDeviation),
            ], columns: 2
          ).svg()
        ))
      func perGroup(_ title: String, _ yLabel: String, _ value: (GroupStatistics) -> Double)
        -> String
      {
        LineChart(
          title: title, xLabel: "step", yLabel: yLabel,
          series: roles.map { role in
            Series(
              name: role,
              points: evaluations.compactMap { record in
                record.groups[role].map { (x: Double(record.step), y: value($0)) }
              })
          }
        ).svg()
      }
      result.append(("bias.svg", perGroup("Bias C: mean ‖C‖ per layer group", "‖C‖", \.biasNorm)))
      result.append(
        (
          "adapters.svg",
          perGroup("Adapters: mean s·‖A‖·‖B‖ per layer group", "norm", \.adapterNorm)
        ))
    }

    // Learning curves: loss, and accuracy with W and W-free.
    let loss = LineChart(
      title: "Training loss", xLabel: "step", yLabel: "cross-entropy",
      series: [
        Series(name: "training loss", points: steps.map { (Double($0.step), $0.loss) }),
        Series(
          name: "validation loss (with W)",
          points: evaluations.map { (Double($0.step), $0.loss) }, style: .dashed),
      ])
    let accuracy = LineChart(
      title: "Validation accuracy", xLabel: "step", yLabel: "accuracy",
      series: [
        Series(
          name: "with W (current d)", points: evaluations.map { (Double($0.step), $0.accuracy) }),
        Series(
          name: "W-free (as exported)",
          points: evaluations.map { (Double($0.step), $0.exportedAccuracy) }, style: .dashed),
      ],
      references: [
        ReferenceLine(y: majority, label: String(format: "majority class %.3f", majority))
      ])
    result.append(("curves.svg", Figure(charts: [loss, accuracy], columns: 2).svg()))
    return result
  }

  /// The distinct schedules of a plan, in a stable order.
  static func uniqueSchedules(_ schedules: [String: AdapterSchedule]) -> [AdapterSchedule] {
    var seen: [AdapterSchedule] = []
    for name in schedules.keys.sorted() {
      let schedule = schedules[name]!
      if !seen.contains(schedule) { seen.append(schedule) }
    }
    return seen
  }
}
