import Models
import Tensor
import XCTest

/// Wrapped layers: `y = d·(W x + b) + N x + s·B A x + C`.
final class AdapterTests: XCTestCase {
  override func setUp() { BLAS.setThreadCount(1) }

  private func wrappedLinear(decay: Float, noise: Bool, bias: Bool = true) -> Linear {
    var layer = Linear(
      name: "fc", weight: randomTensor([5, 6], seed: 1),
      bias: bias ? randomTensor([5], seed: 2) : nil)
    var adapter = LowRankAdapter(
      node: "fc", rank: 2, down: randomTensor([2, 6], seed: 3), up: randomTensor([5, 2], seed: 4),
      bias: randomTensor([5], seed: 5), scale: 0.5)
    adapter.decay = decay
    if noise {
      adapter.noise = NoiseModel(weight: layer.weight, statistics: .perOutput, scale: 1)
      adapter.noiseActive = true
    }
    layer.adapter = adapter
    return layer
  }

  func testFreshLinearWrapEqualsTheOriginal() {
    let plain = Linear(
      name: "fc", weight: randomTensor([5, 6], seed: 1), bias: randomTensor([5], seed: 2))
    var wrapped = plain
    wrapped.adapter = LowRankAdapter(
      node: "fc", rank: 2, down: randomTensor([2, 6], seed: 3), up: Tensor(zeros: [5, 2]),
      bias: Tensor(zeros: [5]), scale: 2)
    let x = randomTensor([4, 6], seed: 6)
    var random = RandomStream(seed: 0)
    let y = wrapped.forward(x, mode: .training, random: &random).output
    XCTAssertLessThanOrEqual(y.maxAbsoluteDifference(to: plain.forward(x)), 1e-6)
  }

  func testFreshConvWrapEqualsTheOriginal() {
    for form in [ConvAdapterForm.lowrank, .loralib] {
      let plain = Conv2d(
        name: "c", weight: randomTensor([4, 2, 3, 3], seed: 1), bias: randomTensor([4], seed: 2),
        stride: (2, 2), padding: Padding2D(2), dilation: (2, 2), groups: 2)
      var wrapped = plain
      let rank = 2
      var adapter: LowRankAdapter
      if form == .lowrank {
        adapter = LowRankAdapter(
          node: "c", rank: rank, down: randomTensor([rank, 2, 3, 3], seed: 3),
          up: Tensor(zeros: [4, rank, 1, 1]), bias: Tensor(zeros: [4]), scale: 1)
      } else {
        adapter = LowRankAdapter(
          node: "c", rank: rank, down: randomTensor([rank * 3, 2 * 3], seed: 3),
          up: Tensor(zeros: [4 * 3, rank * 3]), bias: Tensor(zeros: [4]), scale: 1)
      }
      adapter.convForm = form
      wrapped.adapter = adapter
      let x = randomTensor([2, 4, 9, 9], seed: 4)
      var random = RandomStream(seed: 0)
      let y = wrapped.forward(x, mode: .training, random: &random).output
      XCTAssertLessThanOrEqual(y.maxAbsoluteDifference(to: plain.forward(x)), 1e-6, "\(form)")
    }
  }

  func testFusedNoisePathEqualsTheTwoPassFormula() {
    let layer = wrappedLinear(decay: 0.4, noise: true)
    let adapter = layer.adapter!
    let x = randomTensor([3, 6], seed: 7)
    let stream = RandomStream(seed: 11)
    var random = stream
    let fused = layer.forward(x, mode: .training, random: &random).output
    // The same sample, drawn again; N = (d·W + N) − d·W.
    var again = stream
    var noise = adapter.noise!.effectiveWeight(weight: layer.weight, decay: 0.4, random: &again)
    noise.add(layer.weight, scaledBy: -0.4)
    var expected = Linear(name: "w", weight: layer.weight, bias: layer.bias).forward(x)
    expected.scale(by: 0.4)
    expected.add(Linear(name: "n", weight: noise, bias: nil).forward(x))
    let hidden = Linear(name: "a", weight: adapter.down, bias: nil).forward(x)
    expected.add(Linear(name: "b", weight: adapter.up, bias: nil).forward(hidden), scaledBy: 0.5)
    expected.addRowBias(adapter.bias!)
    XCTAssertLessThanOrEqual(fused.maxAbsoluteDifference(to: expected), 1e-5)
  }

  func testFrozenPathIsSkippedAtZeroDecayWithoutNoise() {
    var layer = wrappedLinear(decay: 0, noise: false)
    layer.weight = Tensor(shape: layer.weight.shape, repeating: .nan)  // never read
    let x = randomTensor([3, 6], seed: 7)
    let y = layer.forward(x)
    XCTAssertTrue(y.isFinite)
    // The as-exported view: s·B A x + C with s = 0.5.
    var scaled = Linear(name: "b", weight: layer.adapter!.up, bias: nil)
      .forward(Linear(name: "a", weight: layer.adapter!.down, bias: nil).forward(x))
    scaled.scale(by: 0.5)
    scaled.addRowBias(layer.adapter!.bias!)
    XCTAssertLessThanOrEqual(y.maxAbsoluteDifference(to: scaled), 1e-6)
  }

  func testLinearWrapperGradients() {
    for (decay, noise) in [(Float(1), false), (0.6, true), (0, false)] {
      var layer = wrappedLinear(decay: decay, noise: noise)
      let x = randomTensor([4, 6], seed: 8)
      let stream = RandomStream(seed: 12)
      var random = stream
      let (y, cache) = layer.forward(x, mode: .training, random: &random)
      let projection = Projection(shape: y.shape)
      var gradients = GradientSet()  // everything, W and b included
      let dx = layer.backward(
        cache: cache, outputGradient: projection.weights, gradients: &gradients)!
      func loss(_ modify: (inout Linear) -> Void, _ input: Tensor = x) -> Double {
        var copy = layer
        modify(&copy)
        var sample = stream  // the same noise sample every time
        return projection(copy.forward(input, mode: .training, random: &sample).output)
      }
      let label = "d=\(decay) noise=\(noise)"
      assertGradient("\(label) dx", analytic: dx, at: x) { input in loss({ _ in }, input) }
      assertGradient("\(label) dA", analytic: gradients["fc.lora_A"]!, at: layer.adapter!.down) {
        a in loss { $0.adapter!.down = a }
      }
      assertGradient("\(label) dB", analytic: gradients["fc.lora_B"]!, at: layer.adapter!.up) {
        b in loss { $0.adapter!.up = b }
      }
      assertGradient("\(label) dC", analytic: gradients["fc.lora_C"]!, at: layer.adapter!.bias!) {
        c in loss { $0.adapter!.bias = c }
      }
      if decay > 0 && !noise {
        assertGradient("\(label) dW", analytic: gradients["fc.weight"]!, at: layer.weight) {
          w in loss { $0.weight = w }
        }
        assertGradient("\(label) db", analytic: gradients["fc.bias"]!, at: layer.bias!) {
          b in loss { $0.bias = b }
        }
      }
      if decay == 0 && !noise {
        XCTAssertNil(gradients["fc.weight"], "the skipped frozen path has no weight gradient")
      }
      layer.adapter = nil
    }
  }

  func testConvWrapperGradients() {
    for form in [ConvAdapterForm.lowrank, .loralib] {
      for (decay, noise) in [(Float(0.7), true), (0, false)] {
        var layer = Conv2d(
          name: "c", weight: randomTensor([4, 2, 3, 3], seed: 1), bias: randomTensor([4], seed: 2),
          stride: (2, 2), padding: Padding2D(1), groups: 1)
        let rank = 2
        var adapter =
          form == .lowrank
          ? LowRankAdapter(
            node: "c", rank: rank, down: randomTensor([rank, 2, 3, 3], seed: 3),
            up: randomTensor([4, rank, 1, 1], seed: 4), bias: randomTensor([4], seed: 5),
            scale: 0.5)
          : LowRankAdapter(
            node: "c", rank: rank, down: randomTensor([rank * 3, 2 * 3], seed: 3),
            up: randomTensor([4 * 3, rank * 3], seed: 4), bias: randomTensor([4], seed: 5),
            scale: 0.5)
        adapter.convForm = form
        adapter.decay = decay
        if noise {
          adapter.noise = NoiseModel(weight: layer.weight, statistics: .global, scale: 1)
          adapter.noiseActive = true
        }
        layer.adapter = adapter
        let x = randomTensor([2, 2, 7, 7], seed: 6)
        let stream = RandomStream(seed: 13)
        var random = stream
        let (y, cache) = layer.forward(x, mode: .training, random: &random)
        let projection = Projection(shape: y.shape)
        var gradients = GradientSet(trainable: ["c.lora_A", "c.lora_B", "c.lora_C"])
        let dx = layer.backward(
          cache: cache, outputGradient: projection.weights, gradients: &gradients)!
        XCTAssertNil(gradients["c.weight"], "frozen: no weight-gradient work")
        func loss(_ modify: (inout Conv2d) -> Void, _ input: Tensor = x) -> Double {
          var copy = layer
          modify(&copy)
          var sample = stream
          return projection(copy.forward(input, mode: .training, random: &sample).output)
        }
        let label = "\(form) d=\(decay)"
        assertGradient("\(label) dx", analytic: dx, at: x) { input in loss({ _ in }, input) }
        assertGradient("\(label) dA", analytic: gradients["c.lora_A"]!, at: adapter.down) {
          a in loss { $0.adapter!.down = a }
        }
        assertGradient("\(label) dB", analytic: gradients["c.lora_B"]!, at: adapter.up) {
          b in loss { $0.adapter!.up = b }
        }
        assertGradient("\(label) dC", analytic: gradients["c.lora_C"]!, at: adapter.bias!) {
          c in loss { $0.adapter!.bias = c }
        }
      }
    }
  }

  func testEffectiveWeightKeepsTheMoments() {
    // A weight with distinct row means and spreads, so per-output and global differ.
    var weight = randomTensor([8, 4000], seed: 20)
    weight.withUnsafeMutableBufferPointer { w in
      for row in 0..<8 {
        for i in 0..<4000 {
          w[row * 4000 + i] = Float(row) * 0.1 + w[row * 4000 + i] * Float(row + 1) * 0.02
        }
      }
    }
    for statistics in [NoiseModel.Statistics.global, .perOutput] {
      let model = NoiseModel(weight: weight, statistics: statistics, scale: 1)
      for decay: Float in [0.2, 0.5, 0.9] {
        var random = RandomStream(seed: 21)
        let effective = model.effectiveWeight(weight: weight, decay: decay, random: &random)
        let groups = statistics == .global ? 1 : 8
        let perGroup = weight.count / groups
        let values = effective.scalars
        for group in 0..<groups {
          let slice = values[(group * perGroup)..<((group + 1) * perGroup)].map(Double.init)
          let mean = slice.reduce(0, +) / Double(perGroup)
          let variance = slice.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Double(perGroup)
          let targetMean = Double(model.mean[group])
          let targetVariance = Double(model.variance[group])
          // Five standard errors of the noise part's sample mean and variance.
          let noiseVariance = Double(1 - decay * decay) * targetVariance
          let meanTolerance = 5 * (noiseVariance / Double(perGroup)).squareRoot()
          let varianceTolerance =
            5 * noiseVariance * (2 / Double(perGroup)).squareRoot()
            + 5 * (targetVariance * noiseVariance / Double(perGroup)).squareRoot()
          XCTAssertEqual(mean, targetMean, accuracy: meanTolerance, "\(statistics) d=\(decay)")
          XCTAssertEqual(
            variance, targetVariance, accuracy: varianceTolerance, "\(statistics) d=\(decay)")
        }
      }
    }
  }

  func testSpectralCapKeepsTheNoiseBelowTheSignal() throws {
    // A weight with one strong direction (like a trained layer) over a random background.
    let (rows, columns) = (48, 96)
    var weight = randomTensor([rows, columns], seed: 30)
    let left = randomTensor([rows], seed: 31).scalars
    let right = randomTensor([columns], seed: 32).scalars
    weight.withUnsafeMutableBufferPointer { w in
      for row in 0..<rows {
        for column in 0..<columns { w[row * columns + column] += 0.3 * left[row] * right[column] }
      }
    }
    func spectralNorm(_ matrix: Tensor) throws -> Float {
      try matrix.truncatedSVD(rank: 1).singularValues[0]
    }
    let signal = try spectralNorm(weight)
    let capped = NoiseModel(weight: weight, statistics: .perOutput, scale: 1, spectralCap: 0.5)
    XCTAssertEqual(capped.weightSpectralNorm, signal, accuracy: 1e-3 * signal)
    let uncapped = NoiseModel(weight: weight, statistics: .perOutput, scale: 1)
    for decay: Float in [0.2, 0.44, 0.7] {
      func noise(_ model: NoiseModel) throws -> Float {
        var random = RandomStream(seed: 33)
        var drawn = model.effectiveWeight(weight: weight, decay: decay, random: &random)
        drawn.add(weight, scaledBy: -decay)
        // Without the (tiny) mean shift, the noise matrix itself.
        drawn.withUnsafeMutableBufferPointer { n in
          for row in 0..<rows {
            for column in 0..<columns { n[row * columns + column] -= (1 - decay) * model.mean[row] }
          }
        }
        return try spectralNorm(drawn)
      }
      let bound = 0.5 * decay * signal
      XCTAssertGreaterThan(try noise(uncapped), bound, "the cap binds at d = \(decay)")
      // The Bai–Yin estimate is an upper bound's asymptote; finite Gaussian matrices fall a
      // little under it.
      let measured = try noise(capped)
      XCTAssertLessThanOrEqual(measured, 1.05 * bound, "d = \(decay)")
      XCTAssertGreaterThan(measured, 0.8 * bound, "d = \(decay): the cap scales, not silences")
    }
    XCTAssertEqual(capped.capFactor(decay: 0, rows: rows, perRow: columns), 0)
    XCTAssertEqual(uncapped.capFactor(decay: 0.3, rows: rows, perRow: columns), 1)
  }
}
