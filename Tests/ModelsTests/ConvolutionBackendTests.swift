import Models
import Tensor
import XCTest

/// oneDNN's convolutions against the im2col reference: forward, input gradient and weight
/// gradient over a grid of geometries, plain and wrapped.
final class ConvolutionBackendTests: XCTestCase {
  override func setUp() { BLAS.setThreadCount(1) }
  override func tearDown() {
    ConvolutionBackend.forced = nil
    BLAS.setThreadCount(1)
  }

  /// The output, input gradient and parameter gradients of one forward and backward pass.
  private func pass(_ layer: Conv2d, _ input: Tensor, backend: ConvolutionBackend) -> (
    output: Tensor, inputGradient: Tensor, gradients: GradientSet
  ) {
    ConvolutionBackend.forced = backend
    var random = RandomStream(seed: 7)
    let (output, cache) = layer.forward(input, mode: .training, random: &random)
    let outputGradient = randomTensor(output.shape, seed: 8)
    var gradients = GradientSet()
    let inputGradient = layer.backward(
      cache: cache, outputGradient: outputGradient, gradients: &gradients)!
    return (output, inputGradient, gradients)
  }

  /// `max|a − b| / max|b|`: the error relative to the reference's scale.
  private func relativeError(_ a: Tensor, _ reference: Tensor) -> Float {
    XCTAssertEqual(a.shape, reference.shape)
    let scale = reference.withUnsafeBufferPointer { $0.map(abs).max() ?? 0 }
    return a.maxAbsoluteDifference(to: reference) / Swift.max(scale, .leastNormalMagnitude)
  }

  private func assertBackendsAgree(
    _ layer: Conv2d, _ input: Tensor, _ label: String, file: StaticString = #filePath,
    line: UInt = #line
  ) {
    let reference = pass(layer, input, backend: .im2col)
    let onednn = pass(layer, input, backend: .onednn)
    XCTAssertLessThanOrEqual(
      relativeError(onednn.output, reference.output), 1e-5, "forward \(label)", file: file,
      line: line)
    XCTAssertLessThanOrEqual(
      relativeError(onednn.inputGradient, reference.inputGradient), 1e-5, "dx \(label)",
      file: file, line: line)
    XCTAssertEqual(
      Set(onednn.gradients.tensors.keys), Set(reference.gradients.tensors.keys), label,
      file: file, line: line)
    for (name, gradient) in reference.gradients.tensors {
      XCTAssertLessThanOrEqual(
        relativeError(onednn.gradients[name]!, gradient), 1e-5, "\(name) \(label)", file: file,
        line: line)
    }
  }

  func testOneDNNMatchesIm2colOverAGridOfGeometries() {
    var cases = 0
    for kernel in [1, 3] {
      for stride in [1, 2] {
        for pad in [0, 1] {
          for dilation in [1, 2] {
            for groups in [1, 2, 4] {
              for batch in [1, 3] {
                let (inChannels, outChannels) = (8, 12)
                let layer = Conv2d(
                  name: "c",
                  weight: randomTensor(
                    [outChannels, inChannels / groups, kernel, kernel], seed: UInt64(cases)),
                  bias: randomTensor([outChannels], seed: 100), stride: (stride, stride),
                  padding: Padding2D(pad), dilation: (dilation, dilation), groups: groups)
                let input = randomTensor([batch, inChannels, 9, 7], seed: 200 + UInt64(cases))
                assertBackendsAgree(
                  layer, input,
                  "k \(kernel) stride \(stride) pad \(pad) dilation \(dilation) groups \(groups) "
                    + "batch \(batch)")
                cases += 1
              }
            }
          }
        }
      }
    }
    XCTAssertEqual(cases, 96)
  }

  func testOneDNNMatchesIm2colWithAsymmetricPadding() {
    let layer = Conv2d(
      name: "c", weight: randomTensor([6, 3, 4, 2], seed: 1), bias: nil,
      padding: .same(kernel: (4, 2), dilation: (1, 2)), dilation: (1, 2))
    // Batch 7: parts of 1 and 2 samples, whose weight gradients are summed.
    assertBackendsAgree(layer, randomTensor([7, 3, 8, 6], seed: 2), "same padding")
  }

  /// The lowrank adapter's `A` (a k×k conv) and `B` (1×1) run on the same backend as the frozen
  /// path; noise and decay on, so every path contributes.
  func testWrappedConvolutionsAgreeAcrossBackends() {
    for form in [ConvAdapterForm.lowrank, .loralib] {
      for groups in [1, 2] {
        var layer = Conv2d(
          name: "c", weight: randomTensor([8, 4 / groups, 3, 3], seed: 1),
          bias: randomTensor([8], seed: 2), stride: (1, 1), padding: Padding2D(1),
          groups: groups)
        let rank = 2
        var adapter =
          form == .lowrank
          ? LowRankAdapter(
            node: "c", rank: rank, down: randomTensor([rank, 4 / groups, 3, 3], seed: 3),
            up: randomTensor([8, rank, 1, 1], seed: 4), bias: randomTensor([8], seed: 5),
            scale: 0.5)
          : LowRankAdapter(
            node: "c", rank: rank, down: randomTensor([rank * 3, 4 / groups * 3], seed: 3),
            up: randomTensor([8 * 3, rank * 3], seed: 4), bias: randomTensor([8], seed: 5),
            scale: 0.5)
        adapter.convForm = form
        adapter.decay = 0.6
        adapter.noise = NoiseModel(weight: layer.weight, statistics: .perOutput, scale: 1)
        adapter.noiseActive = true
        layer.adapter = adapter
        assertBackendsAgree(layer, randomTensor([3, 4, 10, 10], seed: 6), "\(form) g \(groups)")
        // At d = 0 without noise only the adapter runs.
        layer.adapter!.decay = 0
        layer.adapter!.noiseActive = false
        assertBackendsAgree(layer, randomTensor([3, 4, 10, 10], seed: 6), "\(form) d 0")
      }
    }
  }

  /// oneDNN gives the same bits run after run, and with 1 and 2 threads.
  func testOneDNNIsDeterministicAndThreadCountIndependent() {
    let layer = Conv2d(
      name: "c", weight: randomTensor([32, 16, 3, 3], seed: 1), bias: randomTensor([32], seed: 2),
      padding: Padding2D(1))
    let input = randomTensor([8, 16, 14, 14], seed: 3)
    let geometry = ConvolutionGeometry(
      batch: 8, inChannels: 16, outChannels: 32, height: 14, width: 14, kernel: (3, 3),
      stride: (1, 1), padding: (1, 1, 1, 1), dilation: (1, 1), groups: 1)
    XCTAssertEqual(ConvolutionBackend.choice(for: geometry), .onednn)
    for pass in [OneDNN.Pass.forward, .backwardData, .backwardWeights] {
      XCTAssertNotNil(OneDNN.implementation(geometry, pass), "\(pass)")
    }
    var runs: [(output: Tensor, inputGradient: Tensor, gradients: GradientSet)] = []
    for threads in [1, 2] {
      BLAS.setThreadCount(threads)
      let first = pass(layer, input, backend: .onednn)
      runs.append(first)
      let second = pass(layer, input, backend: .onednn)
      XCTAssertTrue(first.output.isBitwiseEqual(to: second.output), "threads \(threads)")
      XCTAssertTrue(
        first.inputGradient.isBitwiseEqual(to: second.inputGradient), "threads \(threads)")
      for (name, gradient) in first.gradients.tensors {
        XCTAssertTrue(gradient.isBitwiseEqual(to: second.gradients[name]!), name)
      }
    }
    XCTAssertTrue(runs[0].output.isBitwiseEqual(to: runs[1].output))
    XCTAssertTrue(runs[0].inputGradient.isBitwiseEqual(to: runs[1].inputGradient))
    for (name, gradient) in runs[0].gradients.tensors {
      XCTAssertTrue(gradient.isBitwiseEqual(to: runs[1].gradients[name]!), "1 vs 2 threads \(name)")
    }
  }

  func testTheRuleKeepsSingleChannelInputsOnIm2col() {
    ConvolutionBackend.forced = nil
    func geometry(inChannels: Int) -> ConvolutionGeometry {
      ConvolutionGeometry(
        batch: 4, inChannels: inChannels, outChannels: 16, height: 28, width: 28, kernel: (3, 3),
        stride: (1, 1), padding: (1, 1, 1, 1), dilation: (1, 1), groups: 1)
    }
    XCTAssertEqual(ConvolutionBackend.choice(for: geometry(inChannels: 1)), .im2col)
    XCTAssertEqual(ConvolutionBackend.choice(for: geometry(inChannels: 16)), .onednn)
    ConvolutionBackend.forced = .onednn
    XCTAssertEqual(ConvolutionBackend.choice(for: geometry(inChannels: 1)), .onednn)
    ConvolutionBackend.forced = .im2col
    XCTAssertEqual(ConvolutionBackend.choice(for: geometry(inChannels: 16)), .im2col)
  }

  func testEnvironmentForcesABackendAndRejectsOtherValues() throws {
    XCTAssertNil(try ConvolutionBackend.fromEnvironment([:]))
    XCTAssertEqual(try ConvolutionBackend.fromEnvironment(["SURGEON_CONV": "im2col"]), .im2col)
    XCTAssertEqual(try ConvolutionBackend.fromEnvironment(["SURGEON_CONV": "oneDNN"]), .onednn)
    XCTAssertThrowsError(try ConvolutionBackend.fromEnvironment(["SURGEON_CONV": "mkl"])) {
      XCTAssertEqual(
        "\($0)",
        "SURGEON_CONV=mkl is not a convolution backend; use im2col or onednn, or unset it to let "
          + "surgeon choose")
    }
  }
}
