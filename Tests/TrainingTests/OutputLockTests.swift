import Foundation
import Training
import XCTest

/// The output lock `apply` holds while it writes, and the claim `compare` takes before it
/// starts `apply`: exclusive, naming the holder, free again once released.
final class OutputLockTests: XCTestCase {
  private var directory: URL!

  override func setUpWithError() throws {
    directory = FileManager.default.temporaryDirectory.appendingPathComponent(
      "surgeon-lock-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    addTeardownBlock { [directory] in try? FileManager.default.removeItem(at: directory!) }
  }

  func testAClaimIsExclusiveNamesItsHolderAndIsFreeOnceReleased() throws {
    let cell = directory.appendingPathComponent("cells/full_lr5e-5_s0")
    let me = "\(getpid())"
    XCTAssertNil(OutputLock.claimant(of: cell))
    let first = try OutputLock.claim(cell).get()
    XCTAssertEqual(OutputLock.claimant(of: cell), me)
    XCTAssertNil(OutputLock.holder(of: cell), "a claim is not the output lock")
    // flock conflicts between two opens even within one process: a second runner is refused.
    XCTAssertEqual(OutputLock.claim(cell).map { _ in "taken" }, .failure(.init(pid: me)))
    first.release()
    XCTAssertNil(OutputLock.claimant(of: cell))
    let again = try OutputLock.claim(cell).get()
    again.release()
  }

  func testARunWritingTheDirectoryRefusesTheClaim() throws {
    let cell = directory.appendingPathComponent("cells/full_lr5e-5_s1")
    let writing = try OutputLock(destination: cell)
    XCTAssertEqual(OutputLock.claimant(of: cell), "\(getpid())")
    XCTAssertEqual(
      OutputLock.claim(cell).map { _ in "taken" }, .failure(.init(pid: "\(getpid())")))
    // The refused claim left nothing held: once the run ends the cell can be claimed.
    writing.release()
    let claim = try OutputLock.claim(cell).get()
    // The claimant's own apply takes the output lock while the claim is held.
    XCTAssertNoThrow(try OutputLock(destination: cell).release())
    claim.release()
  }
}
