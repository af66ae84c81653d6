import Models
import Tensor
import XCTest

#if canImport(Glibc)
  import Glibc
#elseif canImport(Darwin)
  import Darwin
#endif

final class LayerGradientTests: XCTestCase {
  override func setUp() { BLAS.setThreadCount(1) }

  func testLinear() {
    let x = randomTensor([5, 4], seed: 1)
    let layer = Linear(
      name: "fc", weight: randomTensor([3, 4], seed: 2), bias: randomTensor([3], seed: 3))
    let projection = Projection(shape: [5, 3])
    var gradients = GradientSet()
    let dx = layer.backward(input: x, outputGradient: projection.weights, gradients: &gradients)!
    assertGradient("dx", analytic: dx, at: x) { projection(layer.forward($0)) }
    assertGradient("dW", analytic: gradients["fc.weight"]!, at: layer.weight) {
      projection(Linear(name: "fc", weight: $0, bias: layer.bias).forward(x))
    }
    assertGradient("db", analytic: gradients["fc.bias"]!, at: layer.bias!) {
      projection(Linear(name: "fc", weight: layer.weight, bias: $0).forward(x))
    }
  }

  func testFrozenLinearComputesNoWeightGradient() {
    let layer = Linear(name: "fc", weight: randomTensor([3, 4], seed: 2), bias: nil)
    var gradients = GradientSet(trainable: [])
    _ = layer.backward(
      input: randomTensor([2, 4], seed: 1), outputGradient: randomTensor([2, 3], seed: 4),
      gradients: &gradients)
    XCTAssertTrue(gradients.tensors.isEmpty)
  }

  func testActivations() {
    // Keep ReLU inputs away from its kink at 0, where finite differences are meaningless.
    let x = randomTensor([6, 5], seed: 5).map { $0 >= 0 ? $0 + 0.1 : $0 - 0.1 }
    let projection = Projection(shape: [6, 5])
    for activation in Activation.allCases {
      let y = activation.forward(x)
      let dx = activation.backward(input: x, output: y, outputGradient: projection.weights)
      assertGradient(activation.rawValue, analytic: dx, at: x, step: 1e-3) {
        projection(activation.forward($0))
      }
    }
  }

  /// GELU's backward takes Φ(x) = y / x from the forward output; check the slope against the
  /// closed form across the range, including inputs near 0 and far in the negative tail.
  func testGELUSlopeMatchesClosedFormEverywhere() {
    var inputs: [Float] = [0, 1e-8, -1e-8, 9e-4, -9e-4, 1.1e-3, -1.1e-3, -20, 20]
    var value: Float = -12
    while value < 12 {
      inputs.append(value)
      value += 0.0173
    }
    let x = Tensor(shape: [inputs.count], scalars: inputs)
    let y = Activation.gelu.forward(x)
    let ones = Tensor(shape: [inputs.count], repeating: 1)
    let slope = Activation.gelu.backward(input: x, output: y, outputGradient: ones).scalars
    for (index, input) in inputs.enumerated() {
      let v = Double(input)
      let exact =
        0.5 * (1 + erf(v / 2.0.squareRoot())) + v * exp(-0.5 * v * v) / (2 * Double.pi).squareRoot()
      XCTAssertEqual(Double(slope[index]), exact, accuracy: 2e-6, "x = \(input)")
    }
  }

  func testGELUValuesMatchReference() {
    // Reference values from the closed forms in double precision.
    let x = Tensor(shape: [4], scalars: [-2, -0.5, 0.5, 3])
    let exact = Activation.gelu.forward(x).scalars
    let tanhForm = Activation.geluTanh.forward(x).scalars
    for (index, value) in x.scalars.enumerated() {
      let v = Double(value)
      XCTAssertEqual(
        Double(exact[index]), 0.5 * v * (1 + erf(v / 2.0.squareRoot())), accuracy: 1e-6)
      let inner = (2 / Double.pi).squareRoot() * (v + 0.044715 * v * v * v)
      XCTAssertEqual(Double(tanhForm[index]), 0.5 * v * (1 + tanh(inner)), accuracy: 1e-6)
    }
  }

  func testLayerNorm() {
    let x = randomTensor([4, 6], seed: 6)
    let layer = LayerNorm(
      name: "ln", weight: randomTensor([6], seed: 7), bias: randomTensor([6], seed: 8),
      epsilon: 1e-5)
    let projection = Projection(shape: [4, 6])
    let (_, cache) = layer.forward(x)
    var gradients = GradientSet()
    let dx = layer.backward(cache: cache, outputGradient: projection.weights, gradients: &gradients)
    assertGradient("dx", analytic: dx, at: x, step: 1e-3) { projection(layer.forward($0).output) }
    assertGradient("dγ", analytic: gradients["ln.weight"]!, at: layer.weight) {
      projection(
        LayerNorm(name: "ln", weight: $0, bias: layer.bias, epsilon: 1e-5).forward(x).output)
    }
    assertGradient("dβ", analytic: gradients["ln.bias"]!, at: layer.bias) {
      projection(
        LayerNorm(name: "ln", weight: layer.weight, bias: $0, epsilon: 1e-5).forward(x).output)
    }
  }

  func testEmbeddingScattersRepeatedIndices() {
    let table = randomTensor([5, 3], seed: 9)
    let indices: [Int32] = [4, 1, 4, 0]
    let layer = Embedding(name: "emb", weight: table)
    let projection = Projection(shape: [4, 3])
    var gradients = GradientSet()
    layer.backward(indices: indices, outputGradient: projection.weights, gradients: &gradients)
    assertGradient("dE", analytic: gradients["emb.weight"]!, at: table) {
      projection(Embedding(name: "emb", weight: $0).forward(indices))
    }
  }

  func testAttentionWithPaddingAndDropout() {
    let (batch, length, hidden) = (2, 5, 8)
    let attention = MultiHeadAttention(heads: 2, dropoutProbability: 0.2)
    let q = randomTensor([batch * length, hidden], seed: 10)
    let k = randomTensor([batch * length, hidden], seed: 11)
    let v = randomTensor([batch * length, hidden], seed: 12)
    let mask: [Int32] = [1, 1, 1, 0, 0, 1, 1, 1, 1, 1]
    let projection = Projection(shape: [batch * length, hidden])
    let seed = RandomStream(seed: 3)
    func run(_ q: Tensor, _ k: Tensor, _ v: Tensor) -> (Tensor, MultiHeadAttention.Cache) {
      var random = seed  // the same dropout mask on every evaluation
      let result = attention.forward(
        query: q, key: k, value: v, mask: mask, batch: batch, length: length, mode: .training,
        random: &random)
      return (result.output, result.cache)
    }
    let (_, cache) = run(q, k, v)
    XCTAssertNotNil(cache.dropoutMask)
    // Padded keys get exactly zero probability.
    let probabilities = cache.probabilities.scalars
    for head in 0..<2 {
      for i in 0..<length {
        let row = (head * length + i) * length
        XCTAssertEqual(probabilities[row + 3], 0)
        XCTAssertEqual(probabilities[row + 4], 0)
      }
    }
    let (dq, dk, dv) = attention.backward(
      cache: cache, outputGradient: projection.weights, batch: batch, length: length)
    assertGradient("dQ", analytic: dq, at: q, step: 1e-3) { projection(run($0, k, v).0) }
    assertGradient("dK", analytic: dk, at: k, step: 1e-3) { projection(run(q, $0, v).0) }
    assertGradient("dV", analytic: dv, at: v, step: 1e-3) { projection(run(q, k, $0).0) }
  }

  func testDropoutIsIdentityInEvaluationAndSeededInTraining() {
    let x = randomTensor([100], seed: 13)
    let dropout = Dropout(probability: 0.5)
    var random = RandomStream(seed: 1)
    XCTAssertTrue(
      dropout.forward(x, mode: .evaluation, random: &random).output.isBitwiseEqual(to: x))
    var first = RandomStream(seed: 1)
    var second = RandomStream(seed: 1)
    let a = dropout.forward(x, mode: .training, random: &first)
    let b = dropout.forward(x, mode: .training, random: &second)
    XCTAssertTrue(a.output.isBitwiseEqual(to: b.output))
    let kept = a.mask!.scalars.filter { $0 != 0 }
    XCTAssertTrue(kept.allSatisfy { $0 == 2 }, "kept elements are scaled by 1/(1-p)")
    XCTAssertGreaterThan(kept.count, 30)
    XCTAssertLessThan(kept.count, 70)
  }

  func testCrossEntropy() {
    let logits = randomTensor([4, 3], seed: 14)
    let labels: [Int32] = [0, 2, 1, 2]
    let (loss, gradient) = CrossEntropy.lossAndGradient(logits: logits, labels: labels)
    // Direct definition in double precision.
    var expected = 0.0
    let z = logits.scalars
    for row in 0..<4 {
      let values = (0..<3).map { Double(z[row * 3 + $0]) }
      let logSum = log(values.map { exp($0) }.reduce(0, +))
      expected += logSum - values[Int(labels[row])]
    }
    XCTAssertEqual(Double(loss), expected / 4, accuracy: 1e-6)
    assertGradient("dlogits", analytic: gradient, at: logits, step: 1e-3) {
      Double(CrossEntropy.lossAndGradient(logits: $0, labels: labels).loss)
    }
  }

  private func checkConvolution(
    _ label: String, inChannels: Int, outChannels: Int, kernel: Int, stride: (Int, Int) = (1, 1),
    padding: Padding2D = Padding2D(0), dilation: (Int, Int) = (1, 1), groups: Int = 1,
    size: Int = 7
  ) {
    let weight = randomTensor([outChannels, inChannels / groups, kernel, kernel], seed: 20)
    let bias = randomTensor([outChannels], seed: 21)
    func conv(_ weight: Tensor, _ bias: Tensor) -> Conv2d {
      Conv2d(
        name: "conv", weight: weight, bias: bias, stride: stride, padding: padding,
        dilation: dilation, groups: groups)
    }
    let layer = conv(weight, bias)
    let x = randomTensor([2, inChannels, size, size], seed: 22)
    let y = layer.forward(x)
    let projection = Projection(shape: y.shape)
    var gradients = GradientSet()
    let dx = layer.backward(input: x, outputGradient: projection.weights, gradients: &gradients)!
    assertGradient("\(label) dx", analytic: dx, at: x) { projection(layer.forward($0)) }
    assertGradient("\(label) dW", analytic: gradients["conv.weight"]!, at: weight) {
      projection(conv($0, bias).forward(x))
    }
    assertGradient("\(label) db", analytic: gradients["conv.bias"]!, at: bias) {
      projection(conv(weight, $0).forward(x))
    }
  }

  func testConvolutionGradients() {
    checkConvolution("padded", inChannels: 3, outChannels: 4, kernel: 3, padding: Padding2D(1))
    checkConvolution("stride 2", inChannels: 2, outChannels: 3, kernel: 3, stride: (2, 2))
    checkConvolution("dilation 2", inChannels: 2, outChannels: 3, kernel: 3, dilation: (2, 2))
    checkConvolution("groups 2", inChannels: 4, outChannels: 6, kernel: 3, groups: 2)
    checkConvolution("depthwise", inChannels: 3, outChannels: 3, kernel: 3, groups: 3)
    checkConvolution(
      "same, even kernel", inChannels: 2, outChannels: 2, kernel: 4,
      padding: .same(kernel: (4, 4), dilation: (1, 1)))
  }

  func testConvolutionMatchesDirectSum() {
    // Stride 2, dilation 2, padding 1, groups 2 against the definition, loop by loop.
    let weight = randomTensor([4, 1, 3, 3], seed: 30)
    let x = randomTensor([1, 2, 8, 8], seed: 31)
    let layer = Conv2d(
      name: "c", weight: weight, bias: nil, stride: (2, 2), padding: Padding2D(1),
      dilation: (2, 2), groups: 2)
    let y = layer.forward(x)
    XCTAssertEqual(y.shape, [1, 4, 3, 3])
    let w = weight.scalars
    let input = x.scalars
    for o in 0..<4 {
      let channel = o / 2
      for oh in 0..<3 {
        for ow in 0..<3 {
          var sum: Float = 0
          for i in 0..<3 {
            for j in 0..<3 {
              let ih = oh * 2 - 1 + i * 2
              let iw = ow * 2 - 1 + j * 2
              if ih >= 0, ih < 8, iw >= 0, iw < 8 {
                sum += w[o * 9 + i * 3 + j] * input[channel * 64 + ih * 8 + iw]
              }
            }
          }
          XCTAssertEqual(y[flat: (o * 3 + oh) * 3 + ow], sum, accuracy: 1e-5)
        }
      }
    }
  }

  func testSamePaddingKeepsSize() {
    let padding = Padding2D.same(kernel: (4, 4), dilation: (2, 2))
    XCTAssertEqual(padding, Padding2D(top: 3, bottom: 3, left: 3, right: 3))
    let layer = Conv2d(
      name: "c", weight: randomTensor([2, 2, 4, 4], seed: 1), bias: nil, padding: padding,
      dilation: (2, 2))
    XCTAssertEqual(layer.forward(randomTensor([1, 2, 9, 9], seed: 2)).shape, [1, 2, 9, 9])
  }

  func testMaxPool() {
    let pool = MaxPool2d(kernel: (2, 2))
    let x = randomTensor([2, 3, 6, 6], seed: 40)
    let (y, argmax) = pool.forward(x)
    XCTAssertEqual(y.shape, [2, 3, 3, 3])
    let projection = Projection(shape: y.shape)
    let dx = pool.backward(argmax: argmax, inputShape: x.shape, outputGradient: projection.weights)
    assertGradient("maxpool dx", analytic: dx, at: x, step: 1e-3) {
      projection(pool.forward($0).output)
    }
    let padded = MaxPool2d(kernel: (3, 3), stride: (2, 2), padding: (1, 1))
    XCTAssertEqual(padded.forward(x).output.shape, [2, 3, 3, 3])
  }

  /// The padded windows, ties (the first maximum wins, as in PyTorch) and NaN (it wins), against
  /// values worked out by hand.
  func testMaxPoolPaddingTiesAndNaN() {
    let x = Tensor(
      shape: [1, 1, 3, 4],
      scalars: [
        1, 5, 5, 2,
        -3, 0, .nan, 4,
        7, 7, -1, 6,
      ])
    let padded = MaxPool2d(kernel: (3, 3), stride: (2, 2), padding: (1, 1))
    let (y, argmax) = padded.forward(x)
    // Windows: rows −1…1 × columns −1…1, −1…1 × 1…3, 1…3 × −1…1, 1…3 × 1…3.
    XCTAssertEqual(y.shape, [1, 1, 2, 2])
    XCTAssertEqual(y.scalars[0], 5)
    XCTAssertEqual(argmax[0], 1, "the first of the tied 5s")
    XCTAssertTrue(y.scalars[1].isNaN)
    XCTAssertEqual(argmax[1], 6)
    XCTAssertEqual(y.scalars[2], 7)
    XCTAssertEqual(argmax[2], 8, "the first of the tied 7s")
    XCTAssertTrue(y.scalars[3].isNaN)
    XCTAssertEqual(argmax[3], 6)
    let relu = Activation.relu.forward(
      Tensor(
        shape: [9],
        scalars: [
          -1, 0, -0.0, 2, .infinity, -.infinity, .nan, .leastNonzeroMagnitude,
          -.leastNonzeroMagnitude,
        ]))
    XCTAssertEqual(
      relu.scalars.map(\.bitPattern),
      [0, 0, 0, 2, Float.infinity, 0, 0, .leastNonzeroMagnitude, 0].map(\.bitPattern))
  }

  func testAdaptiveAveragePool() {
    for (size, output) in [(5, 3), (2, 3), (7, 7), (6, 1)] {
      let pool = AdaptiveAvgPool2d(outputHeight: output, outputWidth: output)
      let x = randomTensor([2, 2, size, size], seed: 41)
      let y = pool.forward(x)
      XCTAssertEqual(y.shape, [2, 2, output, output])
      let projection = Projection(shape: y.shape)
      let dx = pool.backward(inputShape: x.shape, outputGradient: projection.weights)
      assertGradient("avgpool \(size)→\(output)", analytic: dx, at: x) {
        projection(pool.forward($0))
      }
    }
    // 5 → 3 windows are rows 0..<2, 1..<4, 3..<5 (PyTorch's floor/ceil rule).
    let x = Tensor(shape: [1, 1, 1, 5], scalars: [1, 2, 3, 4, 5])
    let y = AdaptiveAvgPool2d(outputHeight: 1, outputWidth: 3).forward(x).scalars
    XCTAssertEqual(y, [1.5, 3, 4.5])
  }

  func testBatchNormTraining() {
    let x = randomTensor([3, 2, 4, 4], seed: 50, scale: 2)
    let weight = randomTensor([2], seed: 51)
    let bias = randomTensor([2], seed: 52)
    func norm(_ weight: Tensor, _ bias: Tensor) -> BatchNorm2d {
      BatchNorm2d(
        name: "bn", weight: weight, bias: bias, runningMean: Tensor(zeros: [2]),
        runningVariance: Tensor(shape: [2], repeating: 1))
    }
    var layer = norm(weight, bias)
    let (y, cache) = layer.forward(x, mode: .training)
    let projection = Projection(shape: y.shape)
    var gradients = GradientSet()
    let dx = layer.backward(cache: cache, outputGradient: projection.weights, gradients: &gradients)
    func training(_ layer: BatchNorm2d, _ x: Tensor) -> Double {
      var copy = layer
      return projection(copy.forward(x, mode: .training).output)
    }
    assertGradient("bn dx", analytic: dx, at: x, step: 1e-2) { training(norm(weight, bias), $0) }
    assertGradient("bn dγ", analytic: gradients["bn.weight"]!, at: weight) {
      training(norm($0, bias), x)
    }
    assertGradient("bn dβ", analytic: gradients["bn.bias"]!, at: bias) {
      training(norm(weight, $0), x)
    }
    // Running statistics moved by momentum 0.1 towards the batch mean and unbiased variance.
    let values = x.scalars
    let channel0 = (0..<3).flatMap { n in (0..<16).map { Double(values[n * 32 + $0]) } }
    let mean = channel0.reduce(0, +) / 48
    let unbiased = channel0.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / 47
    XCTAssertEqual(Double(layer.runningMean[flat: 0]), 0.1 * mean, accuracy: 1e-5)
    XCTAssertEqual(Double(layer.runningVariance[flat: 0]), 0.9 + 0.1 * unbiased, accuracy: 1e-5)
    XCTAssertEqual(layer.batchesTracked, 1)
  }

  func testBatchNormEvaluationUsesRunningStatistics() {
    var layer = BatchNorm2d(
      name: "bn", weight: Tensor(shape: [1], scalars: [2]), bias: Tensor(shape: [1], scalars: [1]),
      runningMean: Tensor(shape: [1], scalars: [3]),
      runningVariance: Tensor(shape: [1], scalars: [4]), epsilon: 0)
    let x = Tensor(shape: [1, 1, 1, 2], scalars: [5, 1])
    let (y, cache) = layer.forward(x, mode: .evaluation)
    XCTAssertEqual(y.scalars, [3, -1])
    XCTAssertEqual(layer.runningMean.scalars, [3], "evaluation leaves running statistics alone")
    let projection = Projection(shape: y.shape)
    var gradients = GradientSet()
    let dx = layer.backward(cache: cache, outputGradient: projection.weights, gradients: &gradients)
    assertGradient("bn eval dx", analytic: dx, at: x) {
      var copy = layer
      return projection(copy.forward($0, mode: .evaluation).output)
    }
  }
}
