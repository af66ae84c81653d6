import Models
import Tensor
import XCTest

/// Backward computes no input gradient that feeds nothing trained, as autograd does.
final class BackwardPruningTests: XCTestCase {
  private let configuration = BertConfiguration(
    vocabularySize: 50, hiddenSize: 32, layerCount: 3, headCount: 2, intermediateSize: 64,
    maxPositions: 16)

  private func backward(trainable: Set<String>?) throws -> (GradientSet, [GEMMCall]) {
    let model = BertModel(configuration: configuration, classes: 2, initialization: .seeded(3))
    var random = RandomStream(seed: 4)
    let (batchSize, length) = (2, 8)
    let batch = TextBatch(
      batchSize: batchSize, length: length,
      inputIDs: (0..<(batchSize * length)).map { _ in Int32(random.nextInt(below: 50)) },
      attentionMask: [Int32](repeating: 1, count: batchSize * length), labels: [0, 1])
    var dropout = RandomStream(seed: 5)
    let (outputs, tape) = try model.forward(batch, mode: .training, random: &dropout)
    let tapeValue = try XCTUnwrap(tape)
    var gradients = GradientSet(trainable: trainable)
    let calls = GEMMRecorder.record {
      model.backward(tape: tapeValue, outputs: outputs, gradients: &gradients)
    }
    return (gradients, calls)
  }

  /// The `rows × hidden` products through a `hidden × hidden` weight (query, key, value and the
  /// attention output): their input gradients.
  private func hiddenInputGradientCount(_ calls: [GEMMCall]) -> Int {
    let hidden = configuration.hiddenSize
    return calls.filter {
      !$0.transposeA && !$0.transposeB && $0.m == 16 && $0.n == hidden && $0.k == hidden
    }.count
  }

  func testLowestBlockSkipsTheQueryKeyValueInputGradients() throws {
    let (everything, allCalls) = try backward(trainable: nil)
    let layers = configuration.layerCount
    XCTAssertEqual(hiddenInputGradientCount(allCalls), 4 * layers)

    // Embeddings frozen: layer 0's Q/K/V input gradient would only feed them.
    let trained = Set(everything.tensors.keys.filter { !$0.contains("embeddings.") })
    let (pruned, prunedCalls) = try backward(trainable: trained)
    XCTAssertEqual(hiddenInputGradientCount(prunedCalls), 4 * layers - 3)
    XCTAssertEqual(Set(pruned.tensors.keys), trained)
    for name in trained {
      XCTAssertTrue(try XCTUnwrap(pruned[name]).isBitwiseEqual(to: everything[name]!), name)
    }

    // Only the top block trained: nothing below it runs, and its Q/K/V stop there too.
    let top = Set(trained.filter { $0.contains("layer.\(layers - 1).") })
    let (topOnly, topCalls) = try backward(trainable: top)
    XCTAssertEqual(hiddenInputGradientCount(topCalls), 1)
    XCTAssertEqual(Set(topOnly.tensors.keys), top)
    for name in top {
      XCTAssertTrue(try XCTUnwrap(topOnly[name]).isBitwiseEqual(to: everything[name]!), name)
    }
  }
}
