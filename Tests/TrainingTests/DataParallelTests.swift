import Distributed
import Models
import Surgery
import Tensor
import Training
import XCTest

/// The pieces of data-parallel training that need no MPI: how a batch is shared out, that a
/// share keeps the whole batch's padding, and that dropout masks do not depend on the split.
final class DataParallelTests: XCTestCase {
  func testSharesCoverTheBatchInOrderAndDifferByAtMostOne() {
    XCTAssertEqual(SingleProcess.share(of: 7, rank: 0, size: 2), 0..<4)
    XCTAssertEqual(SingleProcess.share(of: 7, rank: 1, size: 2), 4..<7)
    XCTAssertEqual(SingleProcess.share(of: 2, rank: 2, size: 3), 2..<2)
    XCTAssertEqual(SingleProcess().share(of: 5), 0..<5)
    for size in 1...5 {
      for count in 0...20 {
        let shares = (0..<size).map { SingleProcess.share(of: count, rank: $0, size: size) }
        XCTAssertEqual(shares.first?.lowerBound, 0)
        XCTAssertEqual(shares.last?.upperBound, count)
        for (left, right) in zip(shares, shares.dropFirst()) {
          XCTAssertEqual(left.upperBound, right.lowerBound)
        }
        let counts = shares.map(\.count)
        XCTAssertLessThanOrEqual(counts.max()! - counts.min()!, 1, "\(count) over \(size)")
      }
    }
  }

  func testATextShareKeepsTheWholeBatchLength() {
    let batch = Batch.text(
      TextBatch(
        batchSize: 3, length: 4, inputIDs: Array(0..<12).map(Int32.init),
        attentionMask: [1, 1, 0, 0, 1, 1, 1, 1, 1, 0, 0, 0], labels: [0, 1, 1]))
    guard case .text(let share) = batch.rows(1..<3) else { return XCTFail("not text") }
    XCTAssertEqual(share.batchSize, 2)
    XCTAssertEqual(share.length, 4)
    XCTAssertEqual(share.inputIDs, [4, 5, 6, 7, 8, 9, 10, 11])
    XCTAssertEqual(share.attentionMask, [1, 1, 1, 1, 1, 0, 0, 0])
    XCTAssertEqual(share.labels, [1, 1])
    let images = Batch.images(
      pixels: Tensor(shape: [3, 1, 2, 1], scalars: [0, 1, 2, 3, 4, 5]), labels: [7, 8, 9])
    guard case .images(let pixels, let labels) = images.rows(2..<3) else {
      return XCTFail("not images")
    }
    XCTAssertEqual(pixels.shape, [1, 1, 2, 1])
    XCTAssertEqual(pixels.scalars, [4, 5])
    XCTAssertEqual(labels, [9])
  }

  /// One batch of 6 examples, whole or as 4 + 2 (or 3 + 3): the same masks as one pass over the
  /// whole batch draws without a share, and the caller's stream moves the same way (the ranks
  /// stay in step for the noise drawn after dropout).
  func testDropoutMasksDoNotDependOnTheSplit() {
    let dropout = Dropout(probability: 0.5)
    let start = RandomStream(seed: 42, stream: 3)
    func masks(_ rows: Range<Int>?, _ random: inout RandomStream) -> [Float] {
      random.batchShare = rows.map { BatchShare(rows: $0, count: 6) }
      let input = Tensor(shape: [rows?.count ?? 6, 3, 5], repeating: 1)
      return dropout.forward(input, mode: .training, random: &random).output.scalars
    }
    var plain = start
    let whole = masks(nil, &plain)
    XCTAssertTrue(whole.contains(0) && whole.contains(2), "some kept, some dropped")
    for cut in [1, 3, 4] {
      var first = start
      var second = start
      let split = masks(0..<cut, &first) + masks(cut..<6, &second)
      XCTAssertEqual(split, whole, "split at \(cut)")
      XCTAssertEqual(first.position, plain.position)
      XCTAssertEqual(second.position, plain.position)
    }
  }
}
