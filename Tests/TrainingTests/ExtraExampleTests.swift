import Datasets
import Models
import Tensor
import Training
import XCTest

/// The extra distillation sources never hold a validation or test example.
final class ExtraExampleTests: XCTestCase {
  func testAugmentedCopiesComeFromTheTrainingSplitAlone() throws {
    let texts = (0..<10).map { "text number \($0) of the table" }
    let split = DataSplit.make(count: 10, validation: 0.2, test: 0.3, seed: 3)
    let vocabulary = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "text", "number", "of", "the"]
    let tokenizer = try WordPieceTokenizer(vocabulary: vocabulary)
    let pool = AugmentedTexts(
      texts: texts, training: split.train, copies: 3, seed: 1,
      augmenter: TextAugmenter(edits: [.delete, .swap, .mask], rate: 0.2), tokenizer: tokenizer,
      maxLength: 16)
    XCTAssertEqual(pool.count, 3 * split.train.count)
    var origins: [Int: Int] = [:]
    for index in 0..<pool.count { origins[pool.origin(of: index), default: 0] += 1 }
    XCTAssertEqual(Set(origins.keys), Set(split.train))
    XCTAssertTrue(origins.values.allSatisfy { $0 == 3 }, "3 copies of each")
    // A copy is a fixed function of (seed, example, copy), and copies of one text differ.
    XCTAssertEqual(pool.text(4), pool.text(4))
    let copies = Set((0..<3).map { pool.text($0 * split.train.count) })
    XCTAssertEqual(copies.count, 3)
    // [MASK] is encoded as the mask token, not as "[", "mask", "]".
    guard case .text(let batch) = try pool.batch(Array(0..<pool.count)) else {
      return XCTFail("not a text batch")
    }
    XCTAssertNil(batch.labels)
    let maskID = try XCTUnwrap(tokenizer.maskTokenID)
    XCTAssertTrue(batch.inputIDs.contains(maskID))
    XCTAssertEqual(
      batch.inputIDs.filter { $0 == maskID }.count,
      (0..<pool.count).map { pool.text($0).components(separatedBy: "[MASK]").count - 1 }
        .reduce(0, +))
  }

  func testUnlabeledRowsOfHeldOutGroupsOrTextsAreDropped() {
    let texts = ["plot a", "plot b", "plot c", "plot d", "a held-out review"]
    let groups = ["m1", "m2", "m3", "m4", "m5"]
    let kept = UnlabeledTexts.keptRows(
      texts: texts, groups: groups, heldOutGroups: ["m2", "m4"],
      heldOutTexts: ["a held-out review", "plot b"])
    XCTAssertEqual(kept.kept, [0, 2])
    XCTAssertEqual(kept.droppedForGroups, 2)
    XCTAssertEqual(kept.droppedForTexts, 1)
    // Without groups only the texts can be checked.
    let ungrouped = UnlabeledTexts.keptRows(
      texts: texts, groups: nil, heldOutGroups: ["m2"], heldOutTexts: ["plot b"])
    XCTAssertEqual(ungrouped.kept, [0, 2, 3, 4])
  }

  func testAugmentedImagesAreEditedCopiesOfTrainingImages() throws {
    var random = RandomStream(seed: 2)
    let pixels = Tensor.uniform(shape: [6, 1, 4, 4], low: 0, high: 1, random: &random)
    let images = LabeledImages(pixels: pixels, labels: [0, 1, 0, 1, 0, 1])
    let pool = AugmentedImages(
      images: images, training: [1, 3, 4], copies: 2, seed: 0,
      augmenter: ImageAugmenter(edits: [.flip], pad: 1, noise: 0.1))
    XCTAssertEqual(pool.count, 6)
    XCTAssertEqual(Set((0..<6).map(pool.origin)), [1, 3, 4])
    guard case .images(let batch, let labels) = try pool.batch([0, 1, 2, 3, 4, 5]) else {
      return XCTFail("not an image batch")
    }
    XCTAssertNil(labels)
    XCTAssertEqual(batch.shape, [6, 1, 4, 4])
    // Flip only: each copy is its training image or that image mirrored.
    for index in 0..<6 {
      let copy = Array(batch.scalars[(index * 16)..<(index * 16 + 16)])
      let source = images.batch([pool.origin(of: index)]).pixels.scalars
      let mirrored = (0..<4).flatMap { row in source[(row * 4)..<(row * 4 + 4)].reversed() }
      XCTAssertTrue(copy == source || copy == mirrored, "copy \(index)")
    }
  }
}
