import Foundation
import Tensor
import XCTest

/// The start-up choice of OpenBLAS kernels, seen from outside: `--version` names the core, a
/// fallback core (simulated) is corrected by one re-exec, a user's OPENBLAS_CORETYPE is kept.
final class BLASCoreCommandTests: XCTestCase {
  /// The core line `surgeon --version` prints, with the environment adjusted.
  private func coreLine(_ environment: [String: String?]) throws -> String {
    let run = try runSurgeon(["--version"], environment: environment)
    XCTAssertEqual(run.status, 0, run.error)
    let lines = run.output.split(separator: "\n").map(String.init)
    XCTAssertEqual(lines.count, 2, run.output)
    XCTAssertTrue(lines.first?.hasPrefix("surgeon 0.") ?? false, run.output)
    return lines.last ?? ""
  }

  /// The core name in "BLAS core NAME (…".
  private func core(in line: String) -> String? {
    guard line.hasPrefix("BLAS core ") else { return nil }
    return line.dropFirst("BLAS core ".count).split(separator: " ").first.map(String.init)
  }

  func testVersionNamesTheCoreAndTheProcessorsFeatures() throws {
    let line = try coreLine([
      "OPENBLAS_CORETYPE": nil, BLASCore.simulatedVariable: nil,
      BLASCore.correctedFromVariable: nil,
    ])
    let name = try XCTUnwrap(core(in: line), line)
    XCTAssertNotNil(BLASCore.level(of: name), line)
    XCTAssertTrue(line.contains(Processor.current.model), line)
    XCTAssertTrue(
      line.contains("[\(Processor.current.featureList.joined(separator: " "))]"), line)
    // Never below what the processor runs.
    if let best = BLASCore.best(for: .current) {
      XCTAssertGreaterThanOrEqual(BLASCore.level(of: name)!, BLASCore.level(of: best)!, line)
    }
  }

  func testSimulatedFallbackIsCorrectedByOneReExec() throws {
    let best = try XCTUnwrap(
      BLASCore.best(for: .current), "this test needs a processor with AVX2 or AVX-512")
    let line = try coreLine([
      "OPENBLAS_CORETYPE": nil, BLASCore.simulatedVariable: "Prescott",
      BLASCore.correctedFromVariable: nil,
    ])
    XCTAssertEqual(core(in: line), best, line)
    XCTAssertTrue(line.contains("OpenBLAS picked Prescott"), line)
    XCTAssertTrue(line.contains("re-ran with OPENBLAS_CORETYPE=\(best)"), line)
    let choice = try runSurgeon(
      ["--blas-core-choice"],
      environment: [
        "OPENBLAS_CORETYPE": nil, BLASCore.simulatedVariable: "Nehalem",
        BLASCore.correctedFromVariable: nil,
      ])
    XCTAssertEqual(choice.output, best + "\n", choice.error)
  }

  func testUserSetCoreIsRespectedAndSaid() throws {
    let line = try coreLine([
      "OPENBLAS_CORETYPE": "Prescott", BLASCore.simulatedVariable: "Prescott",
      BLASCore.correctedFromVariable: nil,
    ])
    XCTAssertEqual(core(in: line), "Prescott", line)
    XCTAssertTrue(line.contains("OPENBLAS_CORETYPE=Prescott set by the user, respected"), line)
  }
}
