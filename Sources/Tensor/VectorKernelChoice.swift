@_exported import VectorKernels
import VectorKernelsAVX2

#if canImport(Glibc)
  import Glibc
#endif

/// Which build of surgeon's own elementwise loops (`KernelSet`) this process runs: the AVX2 one
/// where the processor has what code compiled for Haswell needs, else the baseline one. Both
/// give the same bits; the choice is speed only. `SURGEON_VECTOR_KERNELS=baseline` forces the baseline (to compare,
/// or to rule the AVX2 build out); `avx2` asks for AVX2 and is refused where the CPU lacks it.
public enum VectorKernelChoice {
  public static let variable = "SURGEON_VECTOR_KERNELS"

  /// The features code compiled for Haswell may use (the AVX2 build's target).
  public static let avx2Requirements: Set<Processor.Feature> = [
    .sse3, .ssse3, .sse41, .sse42, .popcnt, .avx, .avx2, .fma, .bmi1, .bmi2, .f16c, .movbe, .lzcnt,
  ]

  /// Whether `processor` can run the AVX2 build (an x86-64 processor with every requirement).
  public static func canRunAVX2(_ processor: Processor) -> Bool {
    #if arch(x86_64)
      processor.features.isSuperset(of: avx2Requirements)
    #else
      false
    #endif
  }

  /// What a setting asks for on a processor: the set's name, or the reason it cannot be had.
  public static func decide(setting: String?, processor: Processor) -> Result<
    String, KernelChoiceError
  > {
    let capable = canRunAVX2(processor)
    switch setting.map({ $0.lowercased() }) {
    case nil, "", "auto":
      return .success(capable ? "avx2" : "baseline")
    case "baseline":
      return .success("baseline")
    case "avx2":
      if capable { return .success("avx2") }
      let missing = avx2Requirements.subtracting(processor.features).sorted().map(\.name)
      return .failure(
        KernelChoiceError(
          message:
            "\(variable)=avx2, but this CPU lacks \(missing.joined(separator: ", ")); "
            + "unset it (surgeon then runs the baseline build) or set it to baseline"))
    case let other?:
      return .failure(
        KernelChoiceError(
          message: "\(variable)=\(other) is not a kernel build; use auto, baseline or avx2"))
    }
  }

  /// The setting in this process's environment, checked (the command line reports a failure
  /// before any work).
  public static func checkedSetting() -> Result<String, KernelChoiceError> {
    let setting = getenv(variable).map { String(cString: $0) }
    return decide(setting: setting, processor: .current)
  }

  /// The set this process runs. A refused setting falls back to what the CPU can run; the
  /// command line has already stopped with the error by then.
  public static let active: KernelSet = {
    let name =
      (try? checkedSetting().get())
      ?? ((try? decide(setting: nil, processor: .current).get()) ?? "baseline")
    return name == "avx2" ? .avx2 : .baseline
  }()
}

public struct KernelChoiceError: Error, CustomStringConvertible, Sendable {
  public let message: String
  public var description: String { message }
}
