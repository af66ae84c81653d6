import Compare
import Foundation
import Plots
import XCTest

/// The paired comparison behind `surgeon compare`'s Δ column: McNemar's test, the bootstrap
/// interval over test examples, the pairing of seeds, and reading `predictions.json`.
final class PairedStatisticsTests: XCTestCase {
  /// Predictions of `correct.count` examples whose label is 1: a correct answer predicts 1.
  private func predictions(_ correct: [Int], indices: [Int]? = nil) -> CellPredictions {
    CellPredictions(
      model: "w-free", indices: indices ?? Array(correct.indices),
      labels: [Int](repeating: 1, count: correct.count), predicted: correct)
  }

  private func paired(_ result: Result<PairedDifference, PairedStatistics.Unavailable>) throws
    -> PairedDifference
  {
    switch result {
    case .success(let difference): return difference
    case .failure(let problem): throw XCTSkip("not paired: \(problem)")
    }
  }

  private func problem(_ result: Result<PairedDifference, PairedStatistics.Unavailable>)
    -> String?
  {
    if case .failure(let problem) = result { return problem.description }
    return nil
  }

  func testMcNemarMatchesSciPy() {
    // `python3 Scripts/paired-statistics-reference.py` (SciPy 1.17.1: binomtest below 25
    // discordant pairs, chi2.sf of the continuity-corrected statistic from 25 on).
    let cases: [(b: Int, c: Int, p: Double, exact: Bool)] = [
      (0, 0, 1.0, true), (5, 5, 1.0, true), (1, 9, 0.021484375, true),
      (3, 12, 0.03515625, true), (0, 7, 0.015625, true), (12, 13, 1.0, false),
      (30, 12, 0.008711912962379598, false), (100, 130, 0.055850113675743426, false),
      (7, 31, 0.00019065106015951803, false),
    ]
    for test in cases {
      let result = PairedStatistics.mcnemar(rowOnly: test.b, referenceOnly: test.c)
      XCTAssertEqual(
        result.p, test.p, accuracy: 1e-12 * max(test.p, 1e-3), "b \(test.b) c \(test.c)")
      XCTAssertEqual(result.exact, test.exact, "b \(test.b) c \(test.c)")
      // The test is symmetric in its two counts.
      XCTAssertEqual(
        PairedStatistics.mcnemar(rowOnly: test.c, referenceOnly: test.b).p, result.p)
    }
    // By hand: 1 against 9 discordant pairs, 2·(C(10,0) + C(10,1)) / 2¹⁰ = 22/1024.
    XCTAssertEqual(PairedStatistics.mcnemar(rowOnly: 1, referenceOnly: 9).p, 22.0 / 1024)
  }

  func testPercentileInterpolatesLikeNumPy() {
    // np.percentile([0, 1, 2, 10], [2.5, 50, 97.5]) (same script).
    let sorted = [0.0, 1, 2, 10]
    XCTAssertEqual(PairedStatistics.percentile(sorted, 0.025), 0.07500000000000001, accuracy: 1e-15)
    XCTAssertEqual(PairedStatistics.percentile(sorted, 0.5), 1.5)
    XCTAssertEqual(PairedStatistics.percentile(sorted, 0.975), 9.399999999999999, accuracy: 1e-14)
    XCTAssertEqual(PairedStatistics.percentile([3], 0.975), 3)
  }

  /// Two seeds, 12 examples; correct (1) or not per example.
  private let tinyRow = [
    [1, 1, 0, 1, 1, 0, 1, 1, 1, 0, 1, 1], [1, 0, 1, 1, 1, 1, 1, 0, 1, 1, 1, 1],
  ]
  private let tinyReference = [
    [1, 0, 0, 1, 0, 0, 1, 1, 1, 1, 1, 0], [1, 0, 0, 1, 1, 0, 1, 1, 0, 1, 1, 1],
  ]

  func testBootstrapMatchesAnIndependentComputation() throws {
    // `python3 Scripts/paired-statistics-reference.py`: the same SplitMix64 stream and index
    // rule in Python, NumPy's percentile; 2,000 draws, seed 20240601.
    let result = PairedStatistics.compare(
      row: tinyRow.enumerated().map { ($0.offset, predictions($0.element)) },
      reference: tinyReference.enumerated().map { ($0.offset, predictions($0.element)) },
      referenceName: "full", draws: 2000, seed: 20_240_601)
    let difference = try paired(result)
    XCTAssertEqual(difference.reference, "full")
    XCTAssertEqual(difference.delta, 0.16666666666666666, accuracy: 1e-15)
    XCTAssertEqual(difference.ci95[0], -0.041666666666666664, accuracy: 1e-15)
    XCTAssertEqual(difference.ci95[1], 0.375, accuracy: 1e-15)
    // With the seed spread (the same script): seeds, then examples, from one stream.
    let withSeeds = try XCTUnwrap(difference.ci95Seeds)
    XCTAssertEqual(withSeeds[0], -0.08333333333333333, accuracy: 1e-15)
    XCTAssertEqual(withSeeds[1], 0.4166666666666667, accuracy: 1e-15)
    XCTAssertEqual(difference.rowOnlyCorrect, 6)
    XCTAssertEqual(difference.referenceOnlyCorrect, 2)
    XCTAssertEqual(difference.mcnemarP, 0.2890625)
    XCTAssertEqual(difference.mcnemarTest, "exact binomial")
    XCTAssertEqual(difference.examples, 12)
    XCTAssertEqual(difference.seeds, [0, 1])
    // The per-example sums over seeds, and the first draw of the stream (same script).
    let differences = [0, 1, 1, 0, 1, 1, 0, -1, 1, -1, 0, 1]
    let first = PairedStatistics.bootstrapInterval(
      differences: differences, seeds: 2, draws: 1, seed: 20_240_601)
    XCTAssertEqual(first.lower, -0.08333333333333333, accuracy: 1e-15)
    XCTAssertEqual(first.upper, first.lower)
    let perSeed = zip(tinyRow, tinyReference).map { row, reference in
      zip(row, reference).map { Int8($0 - $1) }
    }
    let firstWithSeeds = PairedStatistics.seedsAndExamplesInterval(
      perSeed: perSeed, draws: 1, seed: 20_240_601)
    XCTAssertEqual(firstWithSeeds.lower, -0.041666666666666664, accuracy: 1e-15)
    // Same inputs, same table: the default draws are reproducible.
    XCTAssertEqual(
      PairedStatistics.bootstrapInterval(differences: differences, seeds: 2).lower,
      PairedStatistics.bootstrapInterval(differences: differences, seeds: 2).lower)
  }

  func testTheSeedSpreadWidensTheIntervalWhenSeedsDisagree() throws {
    // A third seed on which the row does much worse than the reference; the values are from
    // `python3 Scripts/paired-statistics-reference.py`.
    let third = [0, 0, 0, 1, 0, 0, 1, 0, 1, 0, 0, 1]
    let thirdReference = [1, 1, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1]
    let difference = try paired(
      PairedStatistics.compare(
        row: (tinyRow + [third]).enumerated().map { ($0.offset, predictions($0.element)) },
        reference: (tinyReference + [thirdReference]).enumerated().map {
          ($0.offset, predictions($0.element))
        }, referenceName: "full", draws: 2000, seed: 20_240_601))
    XCTAssertEqual(difference.delta, -0.08333333333333333, accuracy: 1e-15)
    XCTAssertEqual(difference.ci95[0], -0.2777777777777778, accuracy: 1e-15)
    XCTAssertEqual(difference.ci95[1], 0.08333333333333333, accuracy: 1e-15)
    let withSeeds = try XCTUnwrap(difference.ci95Seeds)
    XCTAssertEqual(withSeeds[0], -0.5833333333333334, accuracy: 1e-15)
    XCTAssertEqual(withSeeds[1], 0.3333333333333333, accuracy: 1e-15)
    XCTAssertGreaterThan(withSeeds[1] - withSeeds[0], 2 * (difference.ci95[1] - difference.ci95[0]))
    // One seed: the spread between runs is unknown, and the table says so.
    let one = try paired(
      PairedStatistics.compare(
        row: [(0, predictions(third))], reference: [(0, predictions(thirdReference))],
        referenceName: "full", draws: 200))
    XCTAssertNil(one.ci95Seeds)
    XCTAssertEqual(one.seedSpreadText, "— (one seed)")
    XCTAssertEqual(difference.seedSpreadText, "[-58.3, +33.3]")
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys]
    XCTAssertTrue(
      String(decoding: try encoder.encode(one), as: UTF8.self).contains(#""ci95_seeds":null"#))
    XCTAssertEqual(
      try JSONDecoder().decode(PairedDifference.self, from: encoder.encode(difference)),
      difference)
  }

  func testIdenticalPredictionsGiveZeroWithAZeroIntervalAndPOne() throws {
    let cells = tinyRow.enumerated().map { ($0.offset, Optional(predictions($0.element))) }
    let difference = try paired(
      PairedStatistics.compare(row: cells, reference: cells, referenceName: "full"))
    XCTAssertEqual(difference.delta, 0)
    XCTAssertEqual(difference.ci95, [0, 0])
    XCTAssertEqual(difference.ci95Seeds, [0, 0])
    XCTAssertEqual(difference.mcnemarP, 1)
    XCTAssertEqual(difference.rowOnlyCorrect + difference.referenceOnlyCorrect, 0)
  }

  func testIntervalContainsTheEstimateAndHasTheNormalWidth() throws {
    // 3 seeds × 2,000 examples, correct with probability 0.82 (row) and 0.80 (reference),
    // from a fixed linear congruential stream.
    var state: UInt64 = 12_345
    func uniform() -> Double {
      state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
      return Double(state >> 11) / Double(1 << 53)
    }
    let n = 2000
    let seeds = [0, 1, 2]
    let row = seeds.map { _ in (0..<n).map { _ in uniform() < 0.82 ? 1 : 0 } }
    let reference = seeds.map { _ in (0..<n).map { _ in uniform() < 0.80 ? 1 : 0 } }
    let difference = try paired(
      PairedStatistics.compare(
        row: zip(seeds, row).map { ($0, predictions($1)) },
        reference: zip(seeds, reference).map { ($0, predictions($1)) }, referenceName: "full"))
    XCTAssertLessThanOrEqual(difference.ci95[0], difference.delta)
    XCTAssertGreaterThanOrEqual(difference.ci95[1], difference.delta)
    // The bootstrap's width against the normal approximation's, 2·1.96·sd(d̄ᵢ)/√n, where d̄ᵢ is
    // example i's mean difference over seeds: within 5% at 10,000 draws.
    let perExample = (0..<n).map { i in
      Double(seeds.indices.map { row[$0][i] - reference[$0][i] }.reduce(0, +)) / 3
    }
    let mean = perExample.reduce(0, +) / Double(n)
    XCTAssertEqual(mean, difference.delta, accuracy: 1e-12)
    let variance = perExample.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Double(n - 1)
    let normalWidth = 2 * 1.959964 * (variance / Double(n)).squareRoot()
    XCTAssertEqual(
      difference.ci95[1] - difference.ci95[0], normalWidth, accuracy: 0.05 * normalWidth)
    XCTAssertEqual(difference.mcnemarTest, "chi-square, continuity-corrected")
  }

  func testSeedsArePairedByMatchingSeed() throws {
    let row: [(seed: Int, predictions: CellPredictions?)] = [
      (0, predictions(tinyRow[0])), (1, predictions(tinyRow[1])), (7, predictions(tinyRow[0])),
    ]
    // The reference ran more seeds; 2 and 3 predict everything wrong and must not count.
    let wrong = predictions([Int](repeating: 0, count: 12))
    let reference: [(seed: Int, predictions: CellPredictions?)] = [
      (0, predictions(tinyReference[0])), (1, predictions(tinyReference[1])), (2, wrong),
      (3, wrong),
    ]
    let difference = try paired(
      PairedStatistics.compare(row: row, reference: reference, referenceName: "full", draws: 2000))
    XCTAssertEqual(difference.seeds, [0, 1], "seed 7 has no reference; 2 and 3 no row")
    XCTAssertEqual(difference.delta, 0.16666666666666666, accuracy: 1e-15)
    XCTAssertEqual(difference.ci95, [-0.041666666666666664, 0.375])

    XCTAssertEqual(
      problem(
        PairedStatistics.compare(row: [(4, wrong)], reference: reference, referenceName: "full")),
      "no seed in common with full (row: 4; full: 0,1,2,3)")
    XCTAssertEqual(
      problem(
        PairedStatistics.compare(
          row: [(0, nil), (1, predictions(tinyRow[1]))], reference: [(0, wrong), (1, nil)],
          referenceName: "full")),
      "no predictions.json for seed 0, full seed 1 (run before apply wrote it)")
    let shifted = predictions(tinyRow[0], indices: Array(100..<112))
    XCTAssertEqual(
      problem(
        PairedStatistics.compare(
          row: [(0, shifted)], reference: reference, referenceName: "full")),
      "the test examples differ from full's (another data split); nothing to pair")
  }

  func testPredictionsFileIsReadAndBadOnesAreNamed() throws {
    let directory = FileManager.default.temporaryDirectory
      .appendingPathComponent("surgeon-predictions-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(at: directory) }
    let file = directory.appendingPathComponent("predictions.json")
    XCTAssertNil(try CellPredictions.read(file), "no file: a run from before predictions.json")
    // As `surgeon apply` writes it (TestPredictions, sorted keys).
    try
      #"{"indices":[7,3,12],"labels":[1,0,1],"model":"w-free","predicted":[1,1,1],"split":"test"}"#
      .write(to: file, atomically: true, encoding: .utf8)
    let read = try XCTUnwrap(try CellPredictions.read(file))
    XCTAssertEqual(read.indices, [7, 3, 12])
    XCTAssertEqual(read.correct, [true, false, true])
    XCTAssertEqual(read.model, "w-free")
    // The cell reader picks it up beside results.json.
    try #"{"test_accuracy": 0.6667}"#.write(
      to: directory.appendingPathComponent("results.json"), atomically: true, encoding: .utf8)
    let cell = Cell(method: "m", rank: nil, learningRate: "1e-3", seed: 0)
    XCTAssertEqual(try CellReader.read(cell, directory: directory)?.predictions, read)
    XCTAssertNil(try CellReader.read(cell, directory: directory)?.build, "no build recorded")
    try #"{"test_accuracy": 0.6667, "build": {"version": "0.1.0", "executable_crc32": "0badf00d"}}"#
      .write(
        to: directory.appendingPathComponent("results.json"), atomically: true, encoding: .utf8)
    XCTAssertEqual(try CellReader.read(cell, directory: directory)?.build, "0badf00d")

    for (text, message) in [
      (#"{"split":"validation","indices":[],"labels":[],"predicted":[]}"#, "'split' must be"),
      (#"{"split":"test","indices":[1],"labels":[1,0],"predicted":[1]}"#, "have 1, 2 and 1"),
      (#"{"split":"test","indices":[1],"labels":["a"],"predicted":[1]}"#, "lists of integers"),
      ("[1, 2", "not a JSON object"),
    ] {
      try text.write(to: file, atomically: true, encoding: .utf8)
      XCTAssertThrowsError(try CellPredictions.read(file)) { error in
        let description = "\(error)"
        XCTAssertTrue(description.hasPrefix(file.path + ": "), description)
        XCTAssertTrue(description.contains(message), description)
      }
    }
  }

  // MARK: - In the comparison

  private let sweepText = """
    sweep: 1
    name: tiny
    base: manifests/base.yaml
    seeds: [0, 1]
    methods:
      - name: full
        lr: [1.0e-4]
      - name: svd
        lr: [1.0e-3]
        rank: [4, 8]
      - name: full-600
        lr: [1.0e-4]
      - name: svd-600
        reference: full-600
        lr: [1.0e-3]
    """

  private func result(_ method: String, rank: Int? = nil, seed: Int, _ correct: [Int]?)
    -> CellResult
  {
    CellResult(
      cell: Cell(
        method: method, rank: rank, learningRate: method.hasPrefix("svd") ? "1.0e-3" : "1.0e-4",
        seed: seed), validationAccuracy: 0.5,
      testAccuracy: Double((correct ?? []).reduce(0, +)) / 12, keptShare: 0.125,
      predictions: correct.map { predictions($0) })
  }

  func testRowsArePairedWithTheirReferenceAndTheTableSaysWhy() throws {
    let (decoded, diagnostics) = SweepDecoder.decode(sweepText, file: "s.yaml")
    XCTAssertEqual(diagnostics, [])
    let sweep = try XCTUnwrap(decoded)
    XCTAssertEqual(sweep.method(named: "svd-600")?.reference, "full-600")
    let results = [
      result("full", seed: 0, tinyReference[0]), result("full", seed: 1, tinyReference[1]),
      result("svd", rank: 4, seed: 0, tinyRow[0]), result("svd", rank: 4, seed: 1, tinyRow[1]),
      // An older run without predictions.json.
      result("svd", rank: 8, seed: 0, tinyRow[0]), result("svd", rank: 8, seed: 1, nil),
      result("full-600", seed: 0, tinyRow[0]), result("svd-600", seed: 0, tinyRow[0]),
    ]
    var chosen: [RowKey: String] = [:]
    for row in sweep.rows { chosen[row] = row.method.hasPrefix("svd") ? "1.0e-3" : "1.0e-4" }
    let rows = Aggregation.rows(sweep, results: results, chosen: chosen, draws: 2000)
    XCTAssertEqual(rows.map(\.method), ["full", "svd", "svd", "full-600", "svd-600"])
    XCTAssertNil(rows[0].paired)
    XCTAssertEqual(rows[0].pairedNote, "reference")
    let svd4 = try XCTUnwrap(rows[1].paired)
    XCTAssertEqual(svd4.reference, "full")
    XCTAssertEqual(svd4.delta, 0.16666666666666666, accuracy: 1e-15)
    XCTAssertNil(rows[2].paired)
    XCTAssertEqual(rows[2].referenceRow, "full")
    XCTAssertEqual(
      rows[2].pairedNote, "no predictions.json for seed 1 (run before apply wrote it)")
    XCTAssertEqual(rows[3].paired?.reference, "full", "full-600 is paired with the first method")
    let own = try XCTUnwrap(rows[4].paired)
    XCTAssertEqual(own.reference, "full-600", "the method's reference: wins")
    XCTAssertEqual(own.delta, 0)
    XCTAssertEqual(own.ci95, [0, 0])
    XCTAssertEqual(own.mcnemarP, 1)

    let table = Aggregation.markdown(rows, reference: "full")
    let lines = table.split(separator: "\n").map(String.init)
    XCTAssertTrue(
      lines[0].contains("Δ vs full, points [95% CI] | 95% CI with the seed spread | McNemar p"),
      lines[0])
    XCTAssertTrue(lines[2].contains("| reference | — | — |"), lines[2])
    XCTAssertTrue(lines[3].contains("| +16.7 [-4.2, +37.5] | [-8.3, +41.7] | 0.289 |"), lines[3])
    XCTAssertTrue(
      lines[4].contains(
        "— (vs full: no predictions.json for seed 1 (run before apply wrote it); difference of means -25.0)"
      ), lines[4])
    XCTAssertTrue(
      lines[6].contains("| +0.0 [+0.0, +0.0] vs full-600 | — (one seed) | 1.000 |"), lines[6])

    // comparison.json: `paired` is always there, null when the row is not paired.
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys]
    let json = String(decoding: try encoder.encode(rows), as: UTF8.self)
    XCTAssertTrue(json.contains(#""paired":null,"paired_note":"reference""#), json)
    XCTAssertTrue(
      json.contains(
        #""paired":{"ci95":[-0.041666666666666664,0.375],"ci95_seeds":[-0.08333333333333333,0.4166666666666667],"delta":0.16666666666666666,"examples":12,"mcnemar_p":0.2890625,"mcnemar_test":"exact binomial","reference":"full","reference_only_correct":2,"row_only_correct":6,"seeds":[0,1]}"#
      ), json)
  }

  func testBuildsOnPairsEachIngredientRowWithTheRecipeItChanges() throws {
    let text = """
      sweep: 1
      name: tiny
      base: manifests/base.yaml
      seeds: [0, 1]
      methods:
        - name: full
          lr: [1.0e-4]
        - name: svd
          lr: [1.0e-3]
        - name: svd-deep
          builds_on: svd
          lr: [1.0e-3]
        - name: svd-aug
          builds_on: svd-old
          lr: [1.0e-3]
        - name: svd-old
          lr: [1.0e-3]
      """
    let (decoded, diagnostics) = SweepDecoder.decode(text, file: "s.yaml")
    XCTAssertEqual(diagnostics, [])
    let sweep = try XCTUnwrap(decoded)
    XCTAssertEqual(sweep.method(named: "svd-deep")?.buildsOn, "svd")
    XCTAssertNil(sweep.method(named: "svd-deep")?.reference, "builds_on is not the reference")
    let results = [
      result("full", seed: 0, tinyRow[0]), result("full", seed: 1, tinyRow[1]),
      result("svd", seed: 0, tinyReference[0]), result("svd", seed: 1, tinyReference[1]),
      result("svd-deep", seed: 0, tinyRow[0]), result("svd-deep", seed: 1, tinyRow[1]),
      result("svd-aug", seed: 0, tinyRow[0]),
    ]
    var chosen: [RowKey: String] = [:]
    for row in sweep.rows { chosen[row] = row.method.hasPrefix("svd") ? "1.0e-3" : "1.0e-4" }
    let rows = Aggregation.rows(sweep, results: results, chosen: chosen, draws: 2000)
    XCTAssertEqual(rows.map(\.method), ["full", "svd", "svd-deep", "svd-aug"])
    // Against full (the reference) svd-deep is level; against svd, what it changes, it gained.
    XCTAssertEqual(try XCTUnwrap(rows[2].paired).delta, 0)
    let change = try XCTUnwrap(rows[2].change)
    XCTAssertEqual(change.reference, "svd")
    XCTAssertEqual(change.delta, 0.16666666666666666, accuracy: 1e-15)
    XCTAssertEqual(change.seeds, [0, 1])
    XCTAssertNil(rows[1].change)
    XCTAssertNil(rows[1].buildsOn)
    XCTAssertNil(rows[3].change)
    XCTAssertEqual(rows[3].changeNote, "no finished cells of svd-old")

    let lines = Aggregation.changesMarkdown(rows).split(separator: "\n").map(String.init)
    XCTAssertEqual(lines.count, 4)
    XCTAssertTrue(lines[0].hasPrefix("| method | builds on | seeds paired |"), lines[0])
    XCTAssertEqual(
      lines[2], "| svd-deep | svd | 0,1 | +16.7 [-4.2, +37.5] | [-8.3, +41.7] | 0.289 |")
    XCTAssertEqual(
      lines[3], "| svd-aug | svd-old | — | — (no finished cells of svd-old) | — | — |")
    XCTAssertEqual(Aggregation.changesMarkdown([rows[0], rows[1]]), "", "no builds_on: no table")
    // The figure of what each change bought: one row per method that builds on another and
    // was paired with it, its numbers beside it; none when no method builds on another.
    let figures = Dictionary(
      uniqueKeysWithValues: ComparisonFigures.figures(rows, results: results, reference: "full"))
    let changes = try XCTUnwrap(figures["what-each-change-bought.svg"])
    XCTAssertTrue(changes.contains(">svd-deep</text>"), changes)
    XCTAssertTrue(
      changes.contains(
        ">+16.7 [-4.2, +37.5] vs svd · 2 seeds; with the seed spread [-8.3, +41.7]</text>"),
      changes)
    XCTAssertEqual(changes.components(separatedBy: "class=\"outer-intervals\"").count - 1, 1)
    XCTAssertFalse(changes.contains(">svd-aug</text>"), "not paired: no row")
    XCTAssertEqual(changes.components(separatedBy: "class=\"markers\"").count - 1, 1)
    XCTAssertNil(
      Dictionary(
        uniqueKeysWithValues: ComparisonFigures.figures(
          Array(rows.prefix(2)), results: results, reference: "full"))[
          "what-each-change-bought.svg"])

    let encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys]
    let json = String(decoding: try encoder.encode(rows), as: UTF8.self)
    XCTAssertTrue(json.contains(#""builds_on":{"ci95":[-0.041666666666666664,0.375]"#), json)
    XCTAssertTrue(
      json.contains(#""builds_on":null,"builds_on_note":"no finished cells of svd-old""#), json)
    XCTAssertEqual(
      json.components(separatedBy: "builds_on").count - 1, 3, "only rows that build on")

    let misspelt = text.replacingOccurrences(of: "builds_on: svd\n", with: "builds_on: svdd\n")
    let (bad, problems) = SweepDecoder.decode(misspelt, file: "s.yaml")
    XCTAssertNil(bad)
    XCTAssertEqual(
      problems.map { "\($0.location.line):\($0.location.column): \($0.message)" },
      ["11:16: builds_on 'svdd' must name another method of this sweep (did you mean 'svd'?)"])
  }

  func testReferenceKeyMustNameAnotherMethod() {
    let bad = """
      sweep: 1
      name: tiny
      base: m.yaml
      methods:
        - name: full
          lr: [1.0e-4]
          reference: full
        - name: svd
          lr: [1.0e-3]
          reference: ful-600
        - name: full-600
          lr: [1.0e-4]
      """
    let (sweep, diagnostics) = SweepDecoder.decode(bad, file: "s.yaml")
    XCTAssertNil(sweep)
    let lines = diagnostics.map { "\($0.location.line):\($0.location.column): \($0.message)" }
    XCTAssertEqual(
      lines,
      [
        "7:16: reference 'full' must name another method of this sweep",
        "10:16: reference 'ful-600' must name another method of this sweep (did you mean 'full-600'?)",
      ])
    XCTAssertEqual(diagnostics.first?.fix, "the methods are svd, full-600")
  }

  func testFiguresGiveEveryMethodItsColourAndMarkerAndSpreadSharedShares() throws {
    let (decoded, _) = SweepDecoder.decode(sweepText, file: "s.yaml")
    let sweep = try XCTUnwrap(decoded)
    let results = [
      result("full", seed: 0, tinyReference[0]), result("svd", rank: 4, seed: 0, tinyRow[0]),
      result("svd", rank: 8, seed: 0, tinyRow[1]), result("full-600", seed: 0, tinyRow[0]),
      result("svd-600", seed: 0, tinyRow[1]),
    ]
    var chosen: [RowKey: String] = [:]
    for row in sweep.rows { chosen[row] = row.method.hasPrefix("svd") ? "1.0e-3" : "1.0e-4" }
    let rows = Aggregation.rows(sweep, results: results, chosen: chosen, draws: 2000)
    let figures = Dictionary(
      uniqueKeysWithValues: ComparisonFigures.figures(rows, results: results, reference: "full"))
    let scatter = try XCTUnwrap(figures["accuracy-vs-kept.svg"])
    XCTAssertNotNil(figures["paired-differences.svg"])
    // One marker path per method, each in its own colour; four error bars (every row but the
    // reference).
    let markerFills = scatter.components(separatedBy: "<path class=\"markers\"").dropFirst()
      .map { $0.components(separatedBy: "fill=\"")[1].prefix(7) }
    XCTAssertEqual(markerFills.count, 4)
    XCTAssertEqual(Set(markerFills).count, 4, "\(markerFills)")
    XCTAssertEqual(scatter.components(separatedBy: "class=\"error-bars\"").count - 1, 3)
    XCTAssertTrue(scatter.contains("svd-600 (Δ vs full-600)"), "the legend names own references")
    // The paired differences as a forest plot: a row per paired row (not the reference), each
    // labelled, in the table's order, with its interval and seeds beside it.
    let forest = try XCTUnwrap(figures["paired-differences.svg"])
    let labels = forest.components(separatedBy: "<g class=\"row-labels\"")[1]
      .components(separatedBy: "</g>")[0].components(separatedBy: "</text>").dropLast()
      .map { $0.components(separatedBy: ">").last ?? "" }
    XCTAssertEqual(
      labels,
      rows.filter { $0.paired != nil }.map {
        RowKey(method: $0.method, rank: $0.rank).description
      })
    XCTAssertTrue(labels.contains("svd-600"), "\(labels)")
    XCTAssertTrue(forest.contains(" vs full-600 · 1 seed</text>"), forest)
    // All five rows sit at a kept share of 12.5%: their x positions must all differ.
    let (xs, range) = ComparisonFigures.spread([12.5, 12.5, 12.5, 100, 12.5])
    XCTAssertEqual(Set(xs).count, 5, "\(xs)")
    XCTAssertEqual(xs[3], 100)
    XCTAssertEqual(xs.filter { $0 != 100 }.reduce(0, +) / 4, 12.5, accuracy: 1e-12)
    let bounds = try XCTUnwrap(range)
    XCTAssertTrue(xs.allSatisfy { bounds.contains($0) })
  }

  /// A collapsed row 20 points down gets the close rows' forest plot an axis around their
  /// intervals and the reference line; with no row far out the axis fits every row.
  func testCloseRowsGetAnEnlargedPanelWhenAnotherRowIsFarAway() throws {
    let close = (delta: -0.005, low: -0.008, high: -0.002)
    let nearZero = (delta: 0.001, low: -0.001, high: 0.004)
    let collapsed = (delta: -0.2, low: -0.21, high: -0.19)
    let range = try XCTUnwrap(ComparisonFigures.closeRange([close, collapsed, nearZero]))
    // Points: the intervals span −0.8 … +0.4; the margin is max(0.25, 10% of 1.2).
    XCTAssertEqual(range.lowerBound, -1.05, accuracy: 1e-9)
    XCTAssertEqual(range.upperBound, 0.65, accuracy: 1e-9)
    XCTAssertNil(ComparisonFigures.closeRange([close, nearZero]))
    // A row 2 points out among rows within half a point is not far out: nothing is cut.
    let gain = (delta: 0.02, low: 0.009, high: 0.032)
    XCTAssertNil(ComparisonFigures.closeRange([close, nearZero, gain]))
    XCTAssertNil(ComparisonFigures.closeRange([collapsed]))
  }
}
