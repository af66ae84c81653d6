import CBLAS

#if canImport(Glibc)
  import Glibc
#endif

/// What the processor can do, as far as choosing kernels goes (OpenBLAS's and surgeon's own).
public struct Processor: Sendable, Equatable {
  public enum Vendor: String, Sendable {
    case intel, amd, other
  }

  /// The instruction-set extensions that decide which OpenBLAS kernels and which build of
  /// surgeon's own loops can run, spelled as the Linux kernel lists them in `/proc/cpuinfo`.
  public enum Feature: String, CaseIterable, Sendable, Comparable {
    case sse3 = "pni"
    case ssse3
    case sse41 = "sse4_1"
    case sse42 = "sse4_2"
    case popcnt
    case avx
    case fma
    case avx2
    // With the lines above, what Haswell has: surgeon's AVX2 build of its own loops needs them.
    case bmi1
    case bmi2
    case f16c
    case movbe
    case lzcnt = "abm"
    case avx512f
    case avx512bw
    case avx512dq
    case avx512vl
    case avx512bf16 = "avx512_bf16"

    /// The name users know (`pni` is SSE3).
    public var name: String {
      switch self {
      case .sse3: "sse3"
      case .lzcnt: "lzcnt"
      case .sse41: "sse4.1"
      case .sse42: "sse4.2"
      default: rawValue
      }
    }

    public static func < (lhs: Feature, rhs: Feature) -> Bool {
      allCases.firstIndex(of: lhs)! < allCases.firstIndex(of: rhs)!
    }
  }

  public var vendor: Vendor
  /// The marketing name, e.g. "AMD EPYC" or "Intel(R) Xeon(R) Platinum 8488C".
  public var model: String
  public var features: Set<Feature>

  public init(vendor: Vendor, model: String, features: Set<Feature>) {
    self.vendor = vendor
    self.model = model
    self.features = features
  }

  /// The features as one space-separated line, in a fixed order ("sse3 avx fma avx2").
  public var featureList: [String] { features.sorted().map(\.name) }

  /// Reads the first processor's entry of `/proc/cpuinfo`; text without one gives an unknown
  /// processor with no features (so nothing is switched on a guess).
  public init(cpuinfo text: String) {
    var vendor = Vendor.other
    var model = "unknown"
    var features: Set<Feature> = []
    for line in text.split(separator: "\n", omittingEmptySubsequences: false) {
      if line.isEmpty { break }  // The first processor's entry ends at the first blank line.
      guard let colon = line.firstIndex(of: ":") else { continue }
      let key = line[..<colon].trimmingCharacters(in: " \t")
      let value = line[line.index(after: colon)...].trimmingCharacters(in: " \t")
      switch key {
      case "vendor_id":
        vendor =
          value == "GenuineIntel" ? .intel : value == "AuthenticAMD" ? .amd : .other
      case "model name":
        model = value
      case "flags":
        let flags = Set(value.split(separator: " ").map(String.init))
        features = Set(Feature.allCases.filter { flags.contains($0.rawValue) })
      default:
        break
      }
    }
    self.init(vendor: vendor, model: model, features: features)
  }

  /// This machine, from `/proc/cpuinfo` (an unknown processor where that file is absent).
  public static let current: Processor = {
    guard let file = fopen("/proc/cpuinfo", "r") else {
      return Processor(vendor: .other, model: "unknown", features: [])
    }
    defer { fclose(file) }
    var bytes: [UInt8] = []
    var buffer = [UInt8](repeating: 0, count: 1 << 16)
    while true {
      let count = fread(&buffer, 1, buffer.count, file)
      if count <= 0 { break }
      bytes += buffer[0..<count]
    }
    return Processor(cpuinfo: String(decoding: bytes, as: UTF8.self))
  }()
}

extension Substring {
  fileprivate func trimmingCharacters(in characters: String) -> String {
    var slice = self[...]
    while let first = slice.first, characters.contains(first) { slice = slice.dropFirst() }
    while let last = slice.last, characters.contains(last) { slice = slice.dropLast() }
    return String(slice)
  }
}

/// Which OpenBLAS kernel family ("core") to run on, given what the processor can do.
///
/// A dynamic-arch OpenBLAS picks its core from the CPU's family and model number, and an older
/// OpenBLAS that does not know a newer processor falls back to SSE-era kernels (Prescott) that
/// run a quarter as fast as the processor could. The CPU's features say what it can run;
/// `OPENBLAS_CORETYPE` is read once, when the library loads, so a correction needs a re-exec.
public enum BLASCore {
  /// The instruction level a core's kernels need.
  public enum Level: Int, Comparable, Sendable {
    case sse = 0
    case avx
    case avx2
    case avx512

    public static func < (lhs: Level, rhs: Level) -> Bool { lhs.rawValue < rhs.rawValue }
  }

  /// OpenBLAS's x86-64 dynamic cores (as `openblas_get_corename()` spells them) and the level
  /// of their kernels.
  static let levels: [String: Level] = [
    "unknown": .sse, "katmai": .sse, "coppermine": .sse, "northwood": .sse, "prescott": .sse,
    "banias": .sse, "atom": .sse, "core2": .sse, "penryn": .sse, "dunnington": .sse,
    "nehalem": .sse, "athlon": .sse, "opteron": .sse, "opteron_sse3": .sse, "barcelona": .sse,
    "nano": .sse, "bobcat": .sse,
    "sandybridge": .avx, "bulldozer": .avx, "piledriver": .avx, "steamroller": .avx,
    "haswell": .avx2, "excavator": .avx2, "zen": .avx2,
    "skylakex": .avx512, "cooperlake": .avx512, "sapphirerapids": .avx512,
  ]

  /// The level of a core's kernels; nil for a name this table does not know.
  public static func level(of core: String) -> Level? { levels[core.lowercased()] }

  /// The best core for the processor's features; nil when nothing above SSE applies.
  public static func best(for processor: Processor) -> String? {
    let features = processor.features
    if features.isSuperset(of: [.avx512f, .avx512bw, .avx512dq, .avx512vl]) {
      return features.contains(.avx512bf16) ? "Cooperlake" : "SkylakeX"
    }
    if features.isSuperset(of: [.avx2, .fma]) {
      return processor.vendor == .amd ? "Zen" : "Haswell"
    }
    return nil
  }

  /// What to do at start-up.
  public enum Decision: Equatable, Sendable {
    /// OpenBLAS's pick matches the processor (or nothing better is known).
    case keep
    /// The user set `OPENBLAS_CORETYPE`; it is respected even where the CPU could do more.
    case userSet(String)
    /// OpenBLAS picked `from`, below what the processor runs: re-execute with
    /// `OPENBLAS_CORETYPE` = `to`.
    case switchCore(from: String, to: String)
  }

  /// The decision for a processor, the core OpenBLAS loaded, and the user's `OPENBLAS_CORETYPE`
  /// (nil or empty when unset). A pure function so every case can be tested on any machine.
  public static func decide(processor: Processor, loaded: String, userSetting: String?)
    -> Decision
  {
    if let setting = userSetting, !setting.isEmpty { return .userSet(setting) }
    guard let best = best(for: processor), let bestLevel = level(of: best),
      let loadedLevel = level(of: loaded), loadedLevel < bestLevel
    else { return .keep }
    return .switchCore(from: loaded, to: best)
  }

  /// The environment variable surgeon sets on its one re-exec, holding the core OpenBLAS had
  /// picked; its presence means `OPENBLAS_CORETYPE` is surgeon's, not the user's.
  public static let correctedFromVariable = "SURGEON_BLAS_CORE_CORRECTED_FROM"
  /// Test hook: the detection sees this core as OpenBLAS's pick (e.g. `Prescott`), so the
  /// correction can be shown on a machine whose OpenBLAS knows its processor.
  public static let simulatedVariable = "SURGEON_SIMULATE_BLAS_CORE"

  /// The start-up decision from the process environment: `nil` when this process is already the
  /// corrected re-exec (never re-execute twice).
  public static func startupDecision(environment: [String: String]) -> Decision? {
    if environment[correctedFromVariable] != nil { return nil }
    let loaded = environment[simulatedVariable].flatMap { $0.isEmpty ? nil : $0 } ?? loadedCore
    return decide(
      processor: .current, loaded: loaded, userSetting: environment["OPENBLAS_CORETYPE"])
  }

  /// The core whose kernels this process runs, from `openblas_get_corename()`.
  public static var loadedCore: String {
    guard let name = openblas_get_corename() else { return "unknown" }
    return String(cString: name)
  }

  /// One line for logs and `--version`: the core, how it was chosen, the CPU and its features.
  public static func description(environment: [String: String]) -> String {
    let processor = Processor.current
    let core = loadedCore
    var how: String
    if let from = environment[correctedFromVariable] {
      how = "OpenBLAS picked \(from), below this CPU; surgeon re-ran with OPENBLAS_CORETYPE=\(core)"
    } else if let setting = environment["OPENBLAS_CORETYPE"], !setting.isEmpty {
      how = "OPENBLAS_CORETYPE=\(setting) set by the user, respected"
      if let best = best(for: processor), let bestLevel = level(of: best),
        let loadedLevel = level(of: core), loadedLevel < bestLevel
      {
        how += "; this CPU could run \(best)"
      }
    } else {
      how = "OpenBLAS's own pick"
    }
    let features = processor.featureList.joined(separator: " ")
    return
      "BLAS core \(core) (\(how)); CPU \(processor.model) [\(features)]; "
      + "surgeon's vector kernels: \(VectorKernelChoice.active.name)"
  }
}
