import Datasets
import Foundation
import Tensor
import XCTest

final class SplitTests: XCTestCase {
  /// Disjoint sides that together hold every example once.
  private func assertPartition(
    _ split: DataSplit, count: Int, file: StaticString = #filePath, line: UInt = #line
  ) {
    let all = split.train + split.validation + split.test
    XCTAssertEqual(all.count, count, "every example once", file: file, line: line)
    XCTAssertEqual(Set(all), Set(0..<count), "covers 0..<count", file: file, line: line)
    for side in [split.train, split.validation, split.test] {
      XCTAssertEqual(side, side.sorted(), "sides are sorted", file: file, line: line)
    }
  }

  /// Groups of uneven sizes 1...12, like movies with different numbers of reviews.
  private func groups(count: Int, seed: UInt64) -> [String] {
    var random = RandomStream(seed: seed)
    var result: [String] = []
    var group = 0
    while result.count < count {
      let size = 1 + random.nextInt(below: 12)
      result += repeatElement("movie \(group)", count: min(size, count - result.count))
      group += 1
    }
    // Interleave, as rows of a real file need not be grouped.
    return result.enumerated().sorted { ($0.offset * 7919) % count < ($1.offset * 7919) % count }
      .map(\.element)
  }

  func testExampleSplitIsDeterministicPerSeedAndExact() throws {
    let split = DataSplit.make(count: 1000, validation: 0.1, test: 0.2, seed: 3)
    XCTAssertEqual(split, DataSplit.make(count: 1000, validation: 0.1, test: 0.2, seed: 3))
    assertPartition(split, count: 1000)
    XCTAssertEqual(split.validation.count, 100)
    XCTAssertEqual(split.test.count, 200)
    XCTAssertEqual(split.train.count, 700)
    XCTAssertNotEqual(split, DataSplit.make(count: 1000, validation: 0.1, test: 0.2, seed: 4))
    // Shuffled, not a contiguous slice.
    let first = try XCTUnwrap(split.test.first)
    XCTAssertNotEqual(split.test, Array(first..<(first + 200)))
  }

  func testDifferentSeedsGiveDifferentSplits() {
    let splits = (0..<8).map {
      DataSplit.make(count: 200, validation: 0.1, test: 0.2, seed: UInt64($0))
    }
    XCTAssertEqual(Set(splits.map(\.test)).count, 8)
  }

  func testGroupedSplitKeepsGroupsWholeAndApproximatesTheFractions() {
    let count = 5000
    let labels = groups(count: count, seed: 11)
    for seed: UInt64 in [0, 1, 2] {
      let split = DataSplit.make(
        count: count, validation: 0.1, test: 0.2, groups: labels, seed: seed)
      XCTAssertEqual(
        split,
        DataSplit.make(count: count, validation: 0.1, test: 0.2, groups: labels, seed: seed))
      assertPartition(split, count: count)
      let sides = [split.train, split.validation, split.test].map { Set($0.map { labels[$0] }) }
      XCTAssertTrue(sides[0].isDisjoint(with: sides[1]), "train and validation share groups")
      XCTAssertTrue(sides[0].isDisjoint(with: sides[2]), "train and test share groups")
      XCTAssertTrue(sides[1].isDisjoint(with: sides[2]), "validation and test share groups")
      // Within one group's size (at most 12) of the target.
      XCTAssertEqual(Double(split.test.count), 0.2 * Double(count), accuracy: 12)
      XCTAssertEqual(Double(split.validation.count), 0.1 * Double(count), accuracy: 12)
    }
    let first = DataSplit.make(count: count, validation: 0.1, test: 0.2, groups: labels, seed: 0)
    let second = DataSplit.make(count: count, validation: 0.1, test: 0.2, groups: labels, seed: 1)
    XCTAssertNotEqual(first.test, second.test)
  }

  func testEveryRequestedSideGetsOneExampleOrGroupWhileTrainingKeepsOne() {
    let tiny = DataSplit.make(count: 3, validation: 0.01, test: 0.01, seed: 0)
    assertPartition(tiny, count: 3)
    XCTAssertEqual([tiny.train.count, tiny.validation.count, tiny.test.count], [1, 1, 1])
    // Two examples: training and test (validation gives way first).
    let two = DataSplit.make(count: 2, validation: 0.1, test: 0.2, seed: 0)
    XCTAssertEqual([two.train.count, two.validation.count, two.test.count], [1, 0, 1])
    let one = DataSplit.make(count: 1, validation: 0.1, test: 0.2, seed: 0)
    XCTAssertEqual(one, DataSplit(train: [0], validation: [], test: []))
    XCTAssertEqual(
      DataSplit.make(count: 0, validation: 0.1, test: 0.2, seed: 0),
      DataSplit(train: [], validation: [], test: []))
    // Three groups, one of them huge: each side still gets a group.
    let skewed = ["a"] + Array(repeating: "b", count: 50) + ["c"]
    let grouped = DataSplit.make(
      count: skewed.count, validation: 0.1, test: 0.1, groups: skewed, seed: 0)
    assertPartition(grouped, count: skewed.count)
    XCTAssertFalse(grouped.train.isEmpty)
    XCTAssertFalse(grouped.validation.isEmpty)
    XCTAssertFalse(grouped.test.isEmpty)
  }

  func testZeroFractionsLeaveSidesEmpty() {
    let split = DataSplit.make(count: 50, validation: 0, test: 0.5, seed: 9)
    XCTAssertTrue(split.validation.isEmpty)
    XCTAssertEqual(split.test.count, 25)
    let grouped = DataSplit.make(
      count: 50, validation: 0, test: 0, groups: groups(count: 50, seed: 1), seed: 9)
    XCTAssertEqual(grouped.train, Array(0..<50))
  }

  func testCodableRoundTrip() throws {
    let split = DataSplit.make(count: 40, validation: 0.25, test: 0.25, seed: 5)
    let decoded = try JSONDecoder().decode(DataSplit.self, from: JSONEncoder().encode(split))
    XCTAssertEqual(decoded, split)
  }

  func testMajorityClassShare() {
    let labels: [Int32] = [0, 1, 1, 2, 1, 0]
    XCTAssertEqual(majorityClassShare(labels, over: [0, 1, 2, 3]), 0.5)
    XCTAssertEqual(majorityClassShare(labels, over: [1, 2, 4]), 1)
    XCTAssertEqual(majorityClassShare(labels, over: Array(0..<6)), 0.5)
    XCTAssertEqual(majorityClassShare(labels, over: [0, 3, 5]), 2.0 / 3.0, accuracy: 1e-12)
    XCTAssertEqual(majorityClassShare(labels, over: []), 0)
  }
}
