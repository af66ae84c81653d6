import VectorKernels
import VectorKernelsAVX2

/// Runs every kernel of both builds on the same inputs (special values included) and lists the
/// ones whose bits differ. The unit tests run in a debug build, where the AVX2 module calls the
/// baseline code instead of inlining it; `surgeon --check-vector-kernels` runs this in the release
/// binary, where the AVX2 build is really compiled for AVX2 (the test command runs it).
public enum VectorKernelAgreement {
  /// Inputs of every kind: normal values at several scales, GELU's near-zero band, the tails,
  /// ±0, ±inf, NaN, subnormals; 1,003 values so the 16-, 8- and partial-lane paths all run.
  public static func sampleInputs() -> [Float] {
    var random = RandomStream(seed: 7)
    var values = [Float](repeating: 0, count: 1_003)
    values.withUnsafeMutableBufferPointer { random.fillNormal($0, mean: 0, standardDeviation: 3) }
    let special: [Float] = [
      0, -0, .infinity, -.infinity, .nan, 1e-3, -1e-3, 9.9e-4, .leastNormalMagnitude / 4,
      -.leastNonzeroMagnitude, 4, -4, 5.7, -5.7, 30, -30, 88, -88, 100, -100,
    ]
    for (index, value) in special.enumerated() { values[index * 37] = value }
    values[1_000] = 2e-4
    return values
  }

  /// The kernels whose outputs differ between the builds (empty: they agree); nil when this CPU
  /// cannot run the AVX2 build.
  public static func differences() -> [String]? {
    guard VectorKernelChoice.canRunAVX2(.current) else { return nil }
    let sets = [KernelSet.baseline, KernelSet.avx2]
    var differing: [String] = []
    func compare(_ name: String, _ run: (KernelSet) -> [Float]) {
      let (a, b) = (run(sets[0]), run(sets[1]))
      if a.map(\.bitPattern) != b.map(\.bitPattern) { differing.append(name) }
    }
    let inputs = sampleInputs()

    compare("gelu") { set in
      var values = inputs
      values.withUnsafeMutableBufferPointer { set.gelu($0.baseAddress!, $0.count) }
      return values
    }
    compare("geluBackward") { set in
      var gradient = inputs.map { $0 * 0.5 + 1 }
      var output = inputs
      output.withUnsafeMutableBufferPointer { KernelSet.baseline.gelu($0.baseAddress!, $0.count) }
      inputs.withUnsafeBufferPointer { x in
        output.withUnsafeBufferPointer { y in
          gradient.withUnsafeMutableBufferPointer {
            set.geluBackward(x.baseAddress!, y.baseAddress!, $0.baseAddress!, $0.count)
          }
        }
      }
      return gradient
    }
    compare("softmax") { set in
      var values = inputs.map { $0.isNaN ? 0 : $0 }
      values.withUnsafeMutableBufferPointer { buffer in
        for row in 0..<(buffer.count / 77) { set.softmax(buffer.baseAddress! + row * 77, 77) }
      }
      return values
    }
    for (kind, name) in ["fillNormal", "fillUniform", "fillDropoutMask"].enumerated() {
      compare(name) { set in
        var values = [Float](repeating: -1, count: 983)
        values.withUnsafeMutableBufferPointer { buffer in
          let fill = RandomFill(
            base: buffer.baseAddress!, begin: 17, end: 1_000, seed: 0xABCD, stream: 3, start: 40)
          switch kind {
          case 0: set.fillNormal(fill, 0..<32, 0.5, 2)
          case 1: set.fillUniform(fill, 0..<32, -1, 3)
          default: set.fillDropoutMask(fill, 0..<32, 0.3, 1 / 0.7)
          }
        }
        return values
      }
    }
    compare("channelMoments, channelGradientSums") { set in
      let finite = inputs.map { $0.isFinite ? $0 : 1 }
      return finite.withUnsafeBufferPointer { xs in
        // 4 planes of 49 pixels, 5 channels apart: a partial last vector in every plane.
        let planes = ChannelPlanes(base: xs.baseAddress! + 49, count: 4, pixels: 49, stride: 245)
        let moments = set.channelMoments(planes)
        let sums = set.channelGradientSums(planes, xs.baseAddress! + 98, Float(moments.mean), 0.5)
        return [
          Float(bitPattern: UInt32(truncatingIfNeeded: moments.mean.bitPattern)),
          Float(bitPattern: UInt32(truncatingIfNeeded: moments.mean.bitPattern >> 32)),
          Float(bitPattern: UInt32(truncatingIfNeeded: moments.squares.bitPattern)),
          Float(bitPattern: UInt32(truncatingIfNeeded: moments.squares.bitPattern >> 32)),
          sums.sum, sums.sumTimesNorm,
        ]
      }
    }
    return differing
  }
}
