import Tensor

/// Which examples train, which validate, which test: disjoint, together covering `0..<count`,
/// each side sorted ascending.
public struct DataSplit: Sendable, Equatable, Codable {
  public var train: [Int]
  public var validation: [Int]
  public var test: [Int]

  public init(train: [Int], validation: [Int], test: [Int]) {
    self.train = train
    self.validation = validation
    self.test = test
  }

  /// The stream splits draw from, apart from the ones batches and initialisation use, so one seed
  /// does not correlate them.
  static let stream: UInt64 = 0x5350_4C49_5400_0000  // "SPLIT"

  /// Splits `count` examples by a seeded shuffle.
  ///
  /// With `groups` (one value per example), whole groups go to one side, so test examples come
  /// from groups (movies) never seen in training; the fractions then approximate the example
  /// counts. Without, examples are shuffled one by one. The same seed gives the same split. A side
  /// with a fraction above 0 gets at least one example (group) while training keeps at least one.
  ///
  /// - Precondition: `0 <= validation`, `0 <= test`, `validation + test < 1` (the manifest
  ///   decoder checks this), and `groups`, when given, has `count` values.
  public static func make(
    count: Int, validation: Double, test: Double, groups: [String]? = nil, seed: UInt64
  ) -> DataSplit {
    precondition(count >= 0, "negative count")
    precondition(
      validation >= 0 && test >= 0 && validation + test < 1,
      "split fractions \(validation) + \(test) must be non-negative and below 1")
    var random = RandomStream(seed: seed, stream: stream)
    guard let groups else {
      let order = shuffled(Array(0..<count), &random)
      let (validationCount, testCount) = sideSizes(
        units: count, validation: validation, test: test)
      return DataSplit(
        train: order[(testCount + validationCount)...].sorted(),
        validation: order[testCount..<(testCount + validationCount)].sorted(),
        test: order[..<testCount].sorted())
    }
    precondition(groups.count == count, "\(groups.count) groups for \(count) examples")

    // Groups in order of first appearance, so the result does not depend on hashing.
    var groupIndex: [String: Int] = [:]
    var members: [[Int]] = []
    for (example, group) in groups.enumerated() {
      if let index = groupIndex[group] {
        members[index].append(example)
      } else {
        groupIndex[group] = members.count
        members.append([example])
      }
    }
    let order = shuffled(Array(members.indices), &random)
    let (minimumValidation, minimumTest) = sideSizes(
      units: members.count, validation: validation, test: test, minimumsOnly: true)
    let targetTest = test * Double(count)
    let targetValidation = validation * Double(count)

    // The first groups of the shuffled order give each side its guaranteed group, the last one
    // trains; every other group joins test, else validation, when that brings the side's
    // example count closer to its target, and trains otherwise.
    func improves(_ current: Int, by size: Int, toward target: Double) -> Bool {
      target > 0 && abs(Double(current + size) - target) < abs(Double(current) - target)
    }
    var sides = (train: [Int](), validation: [Int](), test: [Int]())
    for (position, group) in order.enumerated() {
      let size = members[group].count
      if position < minimumTest {
        sides.test += members[group]
      } else if position < minimumTest + minimumValidation {
        sides.validation += members[group]
      } else if position == order.count - 1 {
        sides.train += members[group]
      } else if improves(sides.test.count, by: size, toward: targetTest) {
        sides.test += members[group]
      } else if improves(sides.validation.count, by: size, toward: targetValidation) {
        sides.validation += members[group]
      } else {
        sides.train += members[group]
      }
    }
    return DataSplit(
      train: sides.train.sorted(), validation: sides.validation.sorted(),
      test: sides.test.sorted())
  }

  /// Validation and test sizes for `units` examples (or groups): the fractions rounded, at least
  /// one for a fraction above 0, and never leaving training empty (validation gives way first).
  /// With `minimumsOnly`, only the guaranteed one-per-side.
  private static func sideSizes(
    units: Int, validation: Double, test: Double, minimumsOnly: Bool = false
  ) -> (validation: Int, test: Int) {
    func size(_ fraction: Double) -> Int {
      guard fraction > 0 else { return 0 }
      return minimumsOnly ? 1 : max(1, Int((fraction * Double(units)).rounded()))
    }
    var validationCount = size(validation)
    var testCount = size(test)
    let room = max(units - 1, 0)
    while validationCount + testCount > room {
      if validationCount > 0 && validationCount >= testCount {
        validationCount -= 1
      } else if testCount > 0 {
        testCount -= 1
      } else {
        validationCount -= 1
      }
    }
    return (validationCount, testCount)
  }
}

/// A Fisher–Yates shuffle drawing from `random`.
func shuffled(_ values: [Int], _ random: inout RandomStream) -> [Int] {
  var result = values
  guard result.count > 1 else { return result }
  for index in stride(from: result.count - 1, to: 0, by: -1) {
    result.swapAt(index, random.nextInt(below: index + 1))
  }
  return result
}
