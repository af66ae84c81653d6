import Foundation
import Tensor

/// How `Conv2d` computes its convolutions (forward, input gradient and weight gradient alike).
public enum ConvolutionBackend: String, Sendable, CaseIterable {
  /// Per-sample im2col and one OpenBLAS GEMM per group: the reference the tests compare with.
  case im2col
  /// oneDNN's convolution primitives, in the blocked layouts oneDNN prefers.
  case onednn

  /// The variable that forces one backend for every convolution of a process.
  public static let environmentVariable = "SURGEON_CONV"

  /// The backend every convolution uses; nil applies the measured rule (`choice(for:)`).
  /// Starts as `SURGEON_CONV`; tests and benchmarks set it directly.
  nonisolated(unsafe) public static var forced: ConvolutionBackend? = try? fromEnvironment()

  /// `SURGEON_CONV`'s backend (nil when unset or empty).
  public static func fromEnvironment(
    _ environment: [String: String] = ProcessInfo.processInfo.environment
  ) throws -> ConvolutionBackend? {
    guard let value = environment[environmentVariable], !value.isEmpty else { return nil }
    guard let backend = ConvolutionBackend(rawValue: value.lowercased()) else {
      throw ConvolutionBackendError(value: value)
    }
    return backend
  }

  /// The backend for one convolution: the forced one, else oneDNN (when it has a primitive for
  /// the geometry) unless the input has a single channel.
  ///
  /// The rule is measured, not timed at run time (so the backend, and with it the bits, is the
  /// same in every run): on the VGG ConvLoRA workload oneDNN was 1.4–2.7× faster than im2col for
  /// every convolution, 1×1 and 3×3, adapters included, except the first layer's (one input
  /// channel, 28×28), where it was 1.2× (1 thread) to 2× (2 threads) slower (docs/engine.md).
  public static func choice(for geometry: ConvolutionGeometry) -> ConvolutionBackend {
    let wanted = forced ?? (geometry.inChannels == 1 ? .im2col : .onednn)
    if wanted == .onednn, !OneDNN.supports(geometry) { return .im2col }
    return wanted
  }
}

/// `SURGEON_CONV` holds something other than a backend's name.
public struct ConvolutionBackendError: Error, CustomStringConvertible {
  public var value: String
  public var description: String {
    "\(ConvolutionBackend.environmentVariable)=\(value) is not a convolution backend; use "
      + ConvolutionBackend.allCases.map(\.rawValue).joined(separator: " or ")
      + ", or unset it to let surgeon choose"
  }
}
