import Models
import Tensor
import XCTest

/// The same seed gives bitwise-identical outputs and gradients with 1 and 2 BLAS threads.
final class DeterminismTests: XCTestCase {
  override func tearDown() { BLAS.setThreadCount(1) }

  private func bertRun(threads: Int) throws -> (Tensor, GradientSet) {
    BLAS.setThreadCount(threads)
    // Large enough (256 × 256 GEMMs) that OpenBLAS really splits the work across threads.
    let configuration = BertConfiguration(
      vocabularySize: 100, hiddenSize: 256, layerCount: 2, headCount: 4, intermediateSize: 512,
      maxPositions: 64)
    let model = BertModel(configuration: configuration, classes: 3, initialization: .seeded(1))
    var random = RandomStream(seed: 5)
    let (batchSize, length) = (8, 32)
    let ids = (0..<(batchSize * length)).map { _ in Int32(random.nextInt(below: 100)) }
    let mask = (0..<(batchSize * length)).map { Int32($0 % length < length - $0 / length ? 1 : 0) }
    let batch = TextBatch(
      batchSize: batchSize, length: length, inputIDs: ids, attentionMask: mask,
      labels: (0..<batchSize).map { Int32($0 % 3) })
    var dropoutStream = RandomStream(seed: 9)
    let (outputs, tape) = try model.forward(batch, mode: .training, random: &dropoutStream)
    var gradients = GradientSet()
    model.backward(tape: try XCTUnwrap(tape), outputs: outputs, gradients: &gradients)
    return (try XCTUnwrap(outputs.logits), gradients)
  }

  func testBERTTrainingStepIsThreadCountIndependent() throws {
    let (logits1, gradients1) = try bertRun(threads: 1)
    let (logits2, gradients2) = try bertRun(threads: 2)
    XCTAssertTrue(logits1.isBitwiseEqual(to: logits2))
    XCTAssertEqual(Set(gradients1.tensors.keys), Set(gradients2.tensors.keys))
    for (name, gradient) in gradients1.tensors {
      XCTAssertTrue(gradient.isBitwiseEqual(to: gradients2[name]!), name)
    }
  }

  private func vggRun(threads: Int) throws -> (Tensor, GradientSet) {
    BLAS.setThreadCount(threads)
    let configuration = VGGConfiguration(
      stages: [.convolution(channels: 32), .maxPool, .convolution(channels: 64), .maxPool],
      batchNorm: true, inChannels: 1, imageSize: 28, classCount: 10, classifierHidden: [128],
      averagePool: nil, dropout: 0.5)
    var model = VGGModel(configuration: configuration, initialization: .seeded(2))
    let pixels = randomTensor([16, 1, 28, 28], seed: 3)
    var random = RandomStream(seed: 4)
    let (outputs, tape) = try model.forward(
      pixels: pixels, labels: (0..<16).map { Int32($0 % 10) }, mode: .training, random: &random)
    var gradients = GradientSet()
    model.backward(tape: try XCTUnwrap(tape), gradients: &gradients)
    return (outputs.logits, gradients)
  }

  /// Both convolution backends: oneDNN's primitives run single-threaded on fixed sample ranges.
  func testVGGTrainingStepIsThreadCountIndependent() throws {
    defer { ConvolutionBackend.forced = nil }
    for backend in ConvolutionBackend.allCases {
      ConvolutionBackend.forced = backend
      let (logits1, gradients1) = try vggRun(threads: 1)
      let (logits2, gradients2) = try vggRun(threads: 2)
      XCTAssertTrue(logits1.isBitwiseEqual(to: logits2), "\(backend)")
      for (name, gradient) in gradients1.tensors {
        XCTAssertTrue(gradient.isBitwiseEqual(to: gradients2[name]!), "\(backend) \(name)")
      }
    }
  }
}
