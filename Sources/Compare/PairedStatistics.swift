import Foundation
import Plumbing

/// A cell's `predictions.json` (written by `surgeon apply`): the deployed model's class for every
/// test example, in the order of `indices`. Cells of one sweep share the data split's seed, so
/// their test examples are the same and two runs can be compared example by example.
public struct CellPredictions: Sendable, Equatable {
  /// "w-free" or "as-trained": which model the run deployed.
  public var model: String
  public var indices: [Int]
  public var labels: [Int]
  public var predicted: [Int]

  public init(model: String, indices: [Int], labels: [Int], predicted: [Int]) {
    self.model = model
    self.indices = indices
    self.labels = labels
    self.predicted = predicted
  }

  /// Whether each test example was classified correctly.
  public var correct: [Bool] { zip(labels, predicted).map { $0 == $1 } }

  /// The predictions in `url`; nil when the file does not exist (runs from before
  /// `predictions.json` was written). A file that exists but is not a test-split predictions
  /// file is an error naming it.
  public static func read(_ url: URL) throws -> CellPredictions? {
    guard let data = FileContents.read(url.path) else { return nil }
    func invalid(_ problem: String) -> CellReader.ReadError {
      CellReader.ReadError(
        description:
          "\(url.path): \(problem); rerun the cell (delete its results.json) to rewrite it")
    }
    guard let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any] else {
      throw invalid("not a JSON object")
    }
    guard object["split"] as? String == "test" else {
      throw invalid("'split' must be \"test\"")
    }
    return try decode(object, invalid: invalid)
  }

  /// The predictions in a JSON object's `indices`, `labels`, `predicted` and `model` (a
  /// predictions.json, or a cell record's `predictions`); `invalid` phrases a problem for the
  /// file it came from.
  static func decode(
    _ object: [String: Any], invalid: (String) -> CellReader.ReadError
  ) throws -> CellPredictions {
    guard let indices = object["indices"] as? [Int], let labels = object["labels"] as? [Int],
      let predicted = object["predicted"] as? [Int]
    else {
      throw invalid("'indices', 'labels' and 'predicted' must be lists of integers")
    }
    guard indices.count == labels.count, labels.count == predicted.count else {
      throw invalid(
        "'indices', 'labels' and 'predicted' have \(indices.count), \(labels.count) and \(predicted.count) entries; they must be equal"
      )
    }
    return CellPredictions(
      model: object["model"] as? String ?? "", indices: indices, labels: labels,
      predicted: predicted)
  }
}

/// A row's test accuracy against its reference row's, example by example on the shared test
/// set, pooled over the seeds both rows ran (`comparison.json`'s `paired`).
public struct PairedDifference: Sendable, Codable, Equatable {
  /// The reference row (a method, and its rank if it has one).
  public var reference: String
  /// Mean over the paired seeds of (row accuracy − reference accuracy), as a fraction.
  public var delta: Double
  /// The 95% percentile bootstrap interval of `delta`, resampling test examples.
  public var ci95: [Double]
  /// The 95% two-level bootstrap interval of `delta`, resampling the paired seeds and then the
  /// test examples: it covers the spread between training runs as well as the test set's
  /// sampling. Nil with one paired seed, where that spread is unknown.
  public var ci95Seeds: [Double]?
  public var mcnemarP: Double
  /// "exact binomial" or "chi-square, continuity-corrected".
  public var mcnemarTest: String
  /// Test examples per seed.
  public var examples: Int
  /// The seeds paired (both rows ran them), in order.
  public var seeds: [Int]
  /// Discordant pairs pooled over the seeds: examples only the row got right, and only the
  /// reference got right.
  public var rowOnlyCorrect: Int
  public var referenceOnlyCorrect: Int

  public init(
    reference: String, delta: Double, ci95: [Double], ci95Seeds: [Double]? = nil,
    mcnemarP: Double, mcnemarTest: String, examples: Int, seeds: [Int], rowOnlyCorrect: Int,
    referenceOnlyCorrect: Int
  ) {
    self.reference = reference
    self.delta = delta
    self.ci95 = ci95
    self.ci95Seeds = ci95Seeds
    self.mcnemarP = mcnemarP
    self.mcnemarTest = mcnemarTest
    self.examples = examples
    self.seeds = seeds
    self.rowOnlyCorrect = rowOnlyCorrect
    self.referenceOnlyCorrect = referenceOnlyCorrect
  }

  /// As synthesised, except that `ci95_seeds` is always written (null with one paired seed).
  public func encode(to encoder: Encoder) throws {
    var container = encoder.container(keyedBy: CodingKeys.self)
    try container.encode(reference, forKey: .reference)
    try container.encode(delta, forKey: .delta)
    try container.encode(ci95, forKey: .ci95)
    try container.encode(ci95Seeds, forKey: .ci95Seeds)
    try container.encode(mcnemarP, forKey: .mcnemarP)
    try container.encode(mcnemarTest, forKey: .mcnemarTest)
    try container.encode(examples, forKey: .examples)
    try container.encode(seeds, forKey: .seeds)
    try container.encode(rowOnlyCorrect, forKey: .rowOnlyCorrect)
    try container.encode(referenceOnlyCorrect, forKey: .referenceOnlyCorrect)
  }

  enum CodingKeys: String, CodingKey {
    case reference, delta, ci95, examples, seeds
    case ci95Seeds = "ci95_seeds"
    case mcnemarP = "mcnemar_p"
    case mcnemarTest = "mcnemar_test"
    case rowOnlyCorrect = "row_only_correct"
    case referenceOnlyCorrect = "reference_only_correct"
  }
}

/// The paired bootstrap and McNemar's test behind `surgeon compare`'s Δ column.
public enum PairedStatistics {
  /// Bootstrap draws per row: enough that the 2.5% and 97.5% percentiles move by well under
  /// a tenth of a point between generator seeds on a few thousand test examples.
  public static let bootstrapDraws = 10_000
  /// One fixed generator seed for every row, so a table is reproducible byte for byte.
  public static let bootstrapSeed: UInt64 = 20_240_601
  /// Discordant pairs below this use the exact binomial test; from here on the chi-square
  /// approximation (with continuity correction) is within a few percent of it.
  public static let exactBelow = 25

  /// Why a row has no paired comparison.
  public struct Unavailable: Error, Sendable, Equatable, CustomStringConvertible {
    public var description: String
  }

  /// Pairs `row` with `reference` (seed → that seed's predictions; a nil value is a finished
  /// cell without `predictions.json`). The seeds paired are those both rows ran, in the row's
  /// order: with more reference seeds, the matching ones are used; seeds only one side ran are
  /// left out. Every paired cell must have predictions of the same test examples.
  public static func compare(
    row: [(seed: Int, predictions: CellPredictions?)],
    reference: [(seed: Int, predictions: CellPredictions?)], referenceName: String,
    draws: Int = bootstrapDraws, seed: UInt64 = bootstrapSeed
  ) -> Result<PairedDifference, Unavailable> {
    let referenceBySeed = Dictionary(reference.map { ($0.seed, $0.predictions) }) { a, _ in a }
    let seeds = row.map(\.seed).filter { referenceBySeed[$0] != nil }
    guard !seeds.isEmpty else {
      return .failure(
        Unavailable(
          description:
            "no seed in common with \(referenceName) (row: \(row.map { String($0.seed) }.joined(separator: ",")); \(referenceName): \(reference.map { String($0.seed) }.joined(separator: ",")))"
        ))
    }
    let rowBySeed = Dictionary(row.map { ($0.seed, $0.predictions) }) { a, _ in a }
    var missing: [String] = []
    var pairs: [(row: CellPredictions, reference: CellPredictions)] = []
    for seed in seeds {
      let mine = rowBySeed[seed]!
      let theirs = referenceBySeed[seed]!
      if mine == nil { missing.append("seed \(seed)") }
      if theirs == nil { missing.append("\(referenceName) seed \(seed)") }
      if let mine, let theirs { pairs.append((mine, theirs)) }
    }
    guard missing.isEmpty else {
      return .failure(
        Unavailable(
          description:
            "no predictions.json for \(missing.joined(separator: ", ")) (run before apply wrote it)"
        ))
    }
    let first = pairs[0].reference
    let sameExamples = pairs.allSatisfy {
      $0.row.indices == first.indices && $0.reference.indices == first.indices
        && $0.row.labels == first.labels && $0.reference.labels == first.labels
    }
    guard sameExamples else {
      return .failure(
        Unavailable(
          description:
            "the test examples differ from \(referenceName)'s (another data split); nothing to pair"
        ))
    }
    let examples = first.indices.count
    guard examples > 0 else {
      return .failure(Unavailable(description: "the test split is empty"))
    }
    // Row minus reference correct (−1, 0, 1), example-major: example e's k seeds sit at
    // e·k ..< (e + 1)·k, the layout both bootstraps read.
    let k = pairs.count
    var byExample = [Int8](repeating: 0, count: examples * k)
    var rowOnly = 0
    var referenceOnly = 0
    for (seedIndex, pair) in pairs.enumerated() {
      for (index, (mine, theirs)) in zip(pair.row.correct, pair.reference.correct).enumerated() {
        if mine && !theirs {
          byExample[index * k + seedIndex] = 1
          rowOnly += 1
        } else if theirs && !mine {
          byExample[index * k + seedIndex] = -1
          referenceOnly += 1
        }
      }
    }
    let differences = (0..<examples).map { example in
      byExample[example * k..<(example + 1) * k].reduce(0) { $0 + Int($1) }
    }
    let delta = Double(rowOnly - referenceOnly) / Double(examples * k)
    let interval = bootstrapInterval(
      differences: differences, seeds: k, draws: draws, seed: seed)
    let withSeeds =
      k > 1
      ? seedsAndExamplesInterval(
        byExample: byExample, seeds: k, draws: draws, seed: seed) : nil
    let test = mcnemar(rowOnly: rowOnly, referenceOnly: referenceOnly)
    return .success(
      PairedDifference(
        reference: referenceName, delta: delta, ci95: [interval.lower, interval.upper],
        ci95Seeds: withSeeds.map { [$0.lower, $0.upper] }, mcnemarP: test.p,
        mcnemarTest: test.exact ? "exact binomial" : "chi-square, continuity-corrected",
        examples: examples, seeds: seeds, rowOnlyCorrect: rowOnly,
        referenceOnlyCorrect: referenceOnly))
  }

  /// The 2.5% and 97.5% percentiles of the bootstrap distribution of the mean paired
  /// difference. Each draw resamples the test examples with replacement — the same draw for
  /// every seed, so a draw's mean over seeds of (row − reference accuracy) is the mean of the
  /// resampled `differences` (per-example sums over `seeds` seeds) divided by `seeds`.
  public static func bootstrapInterval(
    differences: [Int], seeds: Int, draws: Int = bootstrapDraws, seed: UInt64 = bootstrapSeed
  ) -> (lower: Double, upper: Double) {
    let n = differences.count
    guard n > 0, seeds > 0, draws > 0 else { return (.nan, .nan) }
    var generator = SplitMix64(seed: seed)
    let scale = Double(n * seeds)
    var means = [Double](repeating: 0, count: draws)
    for draw in 0..<draws {
      var sum = 0
      for _ in 0..<n { sum += differences[generator.index(below: n)] }
      means[draw] = Double(sum) / scale
    }
    means.sort()
    return (percentile(means, 0.025), percentile(means, 0.975))
  }

  /// The 2.5% and 97.5% percentiles of a two-level bootstrap of the mean paired difference.
  /// Each draw first resamples the k paired seeds with replacement (k indices, each seed pair
  /// kept whole), then the test examples (n indices, the same for every seed), and takes the
  /// mean of `perSeed[seed][example]` (row − reference correct, −1…1) over both resamples.
  /// Seeds are drawn before examples from one stream, so the interval is reproducible.
  public static func seedsAndExamplesInterval(
    perSeed: [[Int8]], draws: Int = bootstrapDraws, seed: UInt64 = bootstrapSeed
  ) -> (lower: Double, upper: Double) {
    let k = perSeed.count
    let n = perSeed.first?.count ?? 0
    guard perSeed.allSatisfy({ $0.count == n }) else { return (.nan, .nan) }
    var byExample = [Int8](repeating: 0, count: n * k)
    for (seedIndex, differences) in perSeed.enumerated() {
      for (example, difference) in differences.enumerated() {
        byExample[example * k + seedIndex] = difference
      }
    }
    return seedsAndExamplesInterval(byExample: byExample, seeds: k, draws: draws, seed: seed)
  }

  /// The same interval from the differences laid out example-major: `byExample[e·seeds + s]`
  /// is seed s's difference on example e (so one drawn example's differences sit together).
  static func seedsAndExamplesInterval(
    byExample: [Int8], seeds k: Int, draws: Int = bootstrapDraws, seed: UInt64 = bootstrapSeed
  ) -> (lower: Double, upper: Double) {
    guard k > 0, draws > 0, !byExample.isEmpty, byExample.count % k == 0 else {
      return (.nan, .nan)
    }
    let n = byExample.count / k
    var generator = SplitMix64(seed: seed)
    let scale = Double(n * k)
    var multiplicity = [Int32](repeating: 0, count: k)
    var means = [Double](repeating: 0, count: draws)
    byExample.withUnsafeBufferPointer { differences in
      for draw in 0..<draws {
        for index in 0..<k { multiplicity[index] = 0 }
        for _ in 0..<k { multiplicity[generator.index(below: k)] += 1 }
        // Σ over drawn examples of Σ_s multiplicity_s · difference(s, example).
        var sum = 0
        for _ in 0..<n {
          let base = generator.index(below: n) * k
          var here: Int32 = 0
          for index in 0..<k { here &+= multiplicity[index] &* Int32(differences[base + index]) }
          sum += Int(here)
        }
        means[draw] = Double(sum) / scale
      }
    }
    means.sort()
    return (percentile(means, 0.025), percentile(means, 0.975))
  }

  /// The `q` quantile of ascending `sorted` values, interpolating linearly between the two
  /// nearest ranks (position `q·(n − 1)`; NumPy's default).
  public static func percentile(_ sorted: [Double], _ q: Double) -> Double {
    guard !sorted.isEmpty else { return .nan }
    let position = q * Double(sorted.count - 1)
    let below = Int(position.rounded(.down))
    let above = min(below + 1, sorted.count - 1)
    let fraction = position - Double(below)
    // Equal neighbours give exactly their value (no 0 × ∞ or rounding away from it).
    if sorted[below] == sorted[above] { return sorted[below] }
    return sorted[below] + fraction * (sorted[above] - sorted[below])
  }

  /// McNemar's two-sided p for `rowOnly` (b) and `referenceOnly` (c) discordant pairs: with
  /// b + c < `exactBelow`, the exact binomial test, min(1, 2·P(X ≤ min(b, c))) for
  /// X ~ Binomial(b + c, ½); otherwise χ² = (max(|b − c| − 1, 0))² / (b + c) against the
  /// chi-square distribution with one degree of freedom. No discordant pairs: p = 1.
  public static func mcnemar(rowOnly b: Int, referenceOnly c: Int) -> (p: Double, exact: Bool) {
    let n = b + c
    guard n > 0 else { return (1, true) }
    if n < exactBelow {
      // C(n, i) / 2ⁿ summed exactly in doubles (n < 25: every term is exact).
      var term = 1.0
      var tail = 0.0
      for i in 0...min(b, c) {
        if i > 0 { term = term * Double(n - i + 1) / Double(i) }
        tail += term
      }
      return (min(1, 2 * tail / pow(2, Double(n))), true)
    }
    let excess = max(Double(abs(b - c)) - 1, 0)
    let statistic = excess * excess / Double(n)
    // The chi-square(1) survival function: P(χ² > s) = P(|Z| > √s) = erfc(√(s/2)).
    return (erfc((statistic / 2).squareRoot()), false)
  }
}

/// SplitMix64 (Steele, Lea and Flood, 2014): a tiny generator whose output depends only on its
/// seed, so bootstrap draws are the same on every platform and toolchain.
struct SplitMix64 {
  var state: UInt64

  init(seed: UInt64) { state = seed }

  mutating func next() -> UInt64 {
    state &+= 0x9E37_79B9_7F4A_7C15
    var z = state
    z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
    z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
    return z ^ (z >> 31)
  }

  /// An index in 0..<n: the high word of next() × n (bias below n / 2⁶⁴, negligible here).
  mutating func index(below n: Int) -> Int {
    Int(next().multipliedFullWidth(by: UInt64(n)).high)
  }
}
