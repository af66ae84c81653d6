import Datasets
import Foundation
import Models
import XCTest

final class BatchOrderTests: XCTestCase {
  func testEveryIndexOncePerEpoch() {
    let indices = Array(stride(from: 3, to: 103, by: 1))  // 100 indices, not starting at 0
    var order = BatchOrder(indices: indices, seed: 1)
    var drawn: [Int] = []
    for _ in 0..<10 { drawn += order.next(32) }  // 320 = 3.2 epochs: batches cross epochs
    for epoch in 0..<3 {
      XCTAssertEqual(drawn[(epoch * 100)..<(epoch * 100 + 100)].sorted(), indices, "epoch \(epoch)")
    }
    XCTAssertEqual(order.epoch, 3)
    XCTAssertEqual(order.position, 20)
    let epochs = (0..<3).map { Array(drawn[($0 * 100)..<($0 * 100 + 100)]) }
    XCTAssertNotEqual(epochs[0], epochs[1], "each epoch is reshuffled")
    XCTAssertNotEqual(epochs[0], indices, "shuffled, not in order")
  }

  func testSameSeedSameBatchesOtherSeedOthers() {
    var first = BatchOrder(indices: Array(0..<50), seed: 7)
    var second = BatchOrder(indices: Array(0..<50), seed: 7)
    var other = BatchOrder(indices: Array(0..<50), seed: 8)
    let a = (0..<6).map { _ in first.next(16) }
    XCTAssertEqual(a, (0..<6).map { _ in second.next(16) })
    XCTAssertNotEqual(a, (0..<6).map { _ in other.next(16) })
    XCTAssertEqual(first, second)
  }

  func testResumingFromASavedStateDrawsTheSameBatches() throws {
    var running = BatchOrder(indices: Array(0..<37), seed: 42)
    for _ in 0..<5 { _ = running.next(10) }
    XCTAssertEqual(running.epoch, 1)
    XCTAssertEqual(running.position, 13)
    let saved = try JSONEncoder().encode(running)
    var resumed = try JSONDecoder().decode(BatchOrder.self, from: saved)
    XCTAssertEqual(resumed, running)
    XCTAssertEqual(resumed.epoch, 1)
    XCTAssertEqual(resumed.position, 13)
    for _ in 0..<12 { XCTAssertEqual(resumed.next(10), running.next(10)) }
    // The saved state is small: the order is recomputed, not stored.
    let json = try XCTUnwrap(String(data: saved, encoding: .utf8))
    XCTAssertFalse(json.contains("order"))
  }

  func testDecodingRefusesAPositionOutsideTheEpoch() {
    let json = Data(#"{"indices": [0, 1, 2], "seed": 1, "epoch": 0, "position": 3}"#.utf8)
    XCTAssertThrowsError(try JSONDecoder().decode(BatchOrder.self, from: json))
    let negative = Data(#"{"indices": [0, 1, 2], "seed": 1, "epoch": -1, "position": 0}"#.utf8)
    XCTAssertThrowsError(try JSONDecoder().decode(BatchOrder.self, from: negative))
  }

  func testBatchLargerThanTheEpochAndEmptyIndices() {
    var small = BatchOrder(indices: [5, 6], seed: 0)
    let batch = small.next(5)
    XCTAssertEqual(batch.count, 5)
    XCTAssertEqual(Set(batch), [5, 6])
    XCTAssertEqual(small.epoch, 2)
    var empty = BatchOrder(indices: [], seed: 0)
    XCTAssertEqual(empty.next(4), [])
  }
}

final class TextBatchTests: XCTestCase {
  private func tokenizer() throws -> WordPieceTokenizer {
    let url = try XCTUnwrap(Bundle.module.url(forResource: "Fixtures", withExtension: nil))
    return try WordPieceTokenizer(vocabularyFile: url.appendingPathComponent("vocab.txt"))
  }

  func testShapesPaddingTruncationAndLabels() throws {
    let tokenizer = try tokenizer()
    let texts = LabeledTexts(
      texts: ["ab", "Hello, world!", "", "z y x w v u t"], labels: [1, 0, 1, 0],
      labelNames: ["neg", "pos"])
    let batch = makeTextBatch(texts, [1, 0, 3, 2], tokenizer: tokenizer, maxLength: 6)
    XCTAssertEqual(batch.batchSize, 4)
    XCTAssertEqual(batch.length, 6)
    XCTAssertEqual(batch.inputIDs.count, 24)
    XCTAssertEqual(batch.labels, [0, 1, 0, 1])
    XCTAssertEqual(batch.tokenTypeIDs, [Int32](repeating: 0, count: 24))
    let rows = (0..<4).map { Array(batch.inputIDs[($0 * 6)..<($0 * 6 + 6)]) }
    let masks = (0..<4).map { Array(batch.attentionMask[($0 * 6)..<($0 * 6 + 6)]) }
    let (cls, sep, pad) = (
      tokenizer.classifierTokenID, tokenizer.separatorTokenID, tokenizer.paddingTokenID
    )
    // "hello, world!" is longer than 4 wordpieces: truncated, [SEP] still last.
    XCTAssertEqual(rows[0].first, cls)
    XCTAssertEqual(rows[0].last, sep)
    XCTAssertEqual(masks[0], [1, 1, 1, 1, 1, 1])
    XCTAssertEqual(
      rows[1], [cls] + tokenizer.encode("ab").dropFirst().dropLast() + [sep, pad, pad])
    XCTAssertEqual(masks[1], [1, 1, 1, 1, 0, 0])
    XCTAssertEqual(rows[3], [cls, sep, pad, pad, pad, pad])
    XCTAssertEqual(masks[3], [1, 1, 0, 0, 0, 0])
    XCTAssertEqual(
      rows[2], Array(tokenizer.encode("z y x w v u t").prefix(5)) + [sep])
  }
}
