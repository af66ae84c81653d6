import XCTest

@testable import Tensor

/// The choice of OpenBLAS core from the processor's features, for processors this machine is not.
final class BLASCoreTests: XCTestCase {
  private let avx2: Set<Processor.Feature> = [.sse3, .avx, .fma, .avx2]
  private var avx512: Set<Processor.Feature> {
    avx2.union([.avx512f, .avx512bw, .avx512dq, .avx512vl])
  }

  private func decide(
    _ vendor: Processor.Vendor, _ features: Set<Processor.Feature>, loaded: String,
    user: String? = nil
  ) -> BLASCore.Decision {
    BLASCore.decide(
      processor: Processor(vendor: vendor, model: "test", features: features), loaded: loaded,
      userSetting: user)
  }

  func testAVX512WithBF16IntelFallingBackToPrescottGetsCooperlake() {
    XCTAssertEqual(
      decide(.intel, avx512.union([.avx512bf16]), loaded: "Prescott"),
      .switchCore(from: "Prescott", to: "Cooperlake"))
  }

  func testAVX512WithoutBF16GetsSkylakeX() {
    XCTAssertEqual(
      decide(.intel, avx512, loaded: "Sandybridge"),
      .switchCore(from: "Sandybridge", to: "SkylakeX"))
    // An AVX2 core on an AVX-512 processor is a fallback too.
    XCTAssertEqual(
      decide(.intel, avx512, loaded: "Haswell"), .switchCore(from: "Haswell", to: "SkylakeX"))
  }

  func testAVX2IntelGetsHaswell() {
    XCTAssertEqual(
      decide(.intel, avx2, loaded: "Nehalem"), .switchCore(from: "Nehalem", to: "Haswell"))
    XCTAssertEqual(
      decide(.intel, avx2, loaded: "Core2"), .switchCore(from: "Core2", to: "Haswell"))
  }

  func testAVX2AMDGetsZen() {
    XCTAssertEqual(
      decide(.amd, avx2, loaded: "Barcelona"), .switchCore(from: "Barcelona", to: "Zen"))
    XCTAssertEqual(
      decide(.amd, avx2, loaded: "Prescott"), .switchCore(from: "Prescott", to: "Zen"))
  }

  func testAVX2WithoutFMAIsNotSwitched() {
    XCTAssertEqual(decide(.intel, [.sse3, .avx, .avx2], loaded: "Sandybridge"), .keep)
  }

  func testSSEOnlyProcessorKeepsOpenBLASsPick() {
    XCTAssertEqual(decide(.intel, [.sse3], loaded: "Prescott"), .keep)
    XCTAssertEqual(decide(.other, [], loaded: "Atom"), .keep)
  }

  func testMatchingOrBetterPickIsKept() {
    XCTAssertEqual(decide(.amd, avx2, loaded: "Zen"), .keep)
    XCTAssertEqual(decide(.intel, avx2, loaded: "Haswell"), .keep)
    XCTAssertEqual(decide(.intel, avx512, loaded: "SkylakeX"), .keep)
    XCTAssertEqual(decide(.intel, avx512.union([.avx512bf16]), loaded: "SapphireRapids"), .keep)
    // Same level, another family: not a fallback.
    XCTAssertEqual(decide(.intel, avx512.union([.avx512bf16]), loaded: "SkylakeX"), .keep)
  }

  func testUnknownCoreNameIsKept() {
    XCTAssertEqual(decide(.intel, avx512, loaded: "Neoverse"), .keep)
  }

  func testUserSettingIsRespected() {
    XCTAssertEqual(
      decide(.intel, avx512, loaded: "Prescott", user: "Prescott"), .userSet("Prescott"))
    XCTAssertEqual(decide(.amd, avx2, loaded: "Zen", user: "haswell"), .userSet("haswell"))
    // An empty value is unset.
    XCTAssertEqual(
      decide(.amd, avx2, loaded: "Prescott", user: ""), .switchCore(from: "Prescott", to: "Zen"))
  }

  func testCoreNamesAreCaseInsensitive() {
    XCTAssertEqual(BLASCore.level(of: "SKYLAKEX"), .avx512)
    XCTAssertEqual(BLASCore.level(of: "zen"), .avx2)
    XCTAssertEqual(BLASCore.level(of: "PRESCOTT"), .sse)
  }

  func testCPUInfoParsing() {
    let text = """
      processor\t: 0
      vendor_id\t: GenuineIntel
      model name\t: Intel(R) Xeon(R) Platinum 8488C
      flags\t\t: fpu pni ssse3 fma avx avx2 avx512f avx512dq avx512bw avx512vl avx512_bf16 amx_tile

      processor\t: 1
      vendor_id\t: AuthenticAMD
      flags\t\t: fpu
      """
    let processor = Processor(cpuinfo: text)
    XCTAssertEqual(processor.vendor, .intel)
    XCTAssertEqual(processor.model, "Intel(R) Xeon(R) Platinum 8488C")
    XCTAssertEqual(
      processor.featureList,
      [
        "sse3", "ssse3", "avx", "fma", "avx2", "avx512f", "avx512bw", "avx512dq", "avx512vl",
        "avx512_bf16",
      ])
    XCTAssertEqual(BLASCore.best(for: processor), "Cooperlake")
    XCTAssertNil(BLASCore.best(for: Processor(cpuinfo: "")))
  }

  func testTheRunningProcessIsNotBelowItsProcessor() throws {
    // What the binaries guarantee after their start-up re-exec; Scripts/test.sh gives the test
    // process the same core. Only a user's deliberate choice of a lower core is exempt.
    let environment = ProcessInfo.processInfo.environment
    if let setting = environment["OPENBLAS_CORETYPE"], let chosen = BLASCore.level(of: setting),
      let best = BLASCore.best(for: .current), chosen < BLASCore.level(of: best)!
    {
      throw XCTSkip("OPENBLAS_CORETYPE=\(setting) is set below \(best) (respected)")
    }
    XCTAssertEqual(
      BLASCore.decide(processor: .current, loaded: BLASCore.loadedCore, userSetting: nil), .keep,
      "OpenBLAS runs \(BLASCore.loadedCore) on \(Processor.current.featureList)")
  }
}
