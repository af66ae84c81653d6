import Foundation
import Plumbing
import XCTest

final class BuildIdentityTests: XCTestCase {
  /// The checksum is zlib's CRC-32 (the standard check value of "123456789" is cbf43926), over
  /// every chunk of a file longer than one read.
  func testTheChecksumIsZlibsCRC32OfTheWholeFile() throws {
    let file = FileManager.default.temporaryDirectory.appendingPathComponent(
      "surgeon-build-\(UUID().uuidString)")
    defer { try? FileManager.default.removeItem(at: file) }
    try Data("123456789".utf8).write(to: file)
    var checksum = try BuildIdentity.fileChecksum(atPath: file.path)
    XCTAssertEqual(checksum.crc32, "cbf43926")
    XCTAssertEqual(checksum.bytes, 9)

    try Data().write(to: file)
    checksum = try BuildIdentity.fileChecksum(atPath: file.path)
    XCTAssertEqual(checksum.crc32, "00000000")
    XCTAssertEqual(checksum.bytes, 0)

    // 2.5 MiB of zeros: three reads. CRC-32 of n zero bytes, bit by bit (reflected polynomial
    // 0xEDB88320, initial and final XOR 0xFFFFFFFF), as an independent reference.
    let count = (5 << 20) / 2
    try Data(count: count).write(to: file)
    var crc: UInt32 = 0xFFFF_FFFF
    for _ in 0..<count {
      for _ in 0..<8 { crc = crc & 1 == 1 ? (crc >> 1) ^ 0xEDB8_8320 : crc >> 1 }
    }
    checksum = try BuildIdentity.fileChecksum(atPath: file.path)
    XCTAssertEqual(checksum.crc32, String(format: "%08x", crc ^ 0xFFFF_FFFF))
    XCTAssertEqual(checksum.bytes, count)

    XCTAssertThrowsError(try BuildIdentity.fileChecksum(atPath: file.path + "-missing"))
  }

  /// A file's fingerprint is its checksum and length; a directory or a missing path has none.
  func testAFingerprintIsOfARegularFileOnly() throws {
    let directory = try makeTemporaryDirectory("surgeon-fingerprint")
    let file = directory.appendingPathComponent("weights")
    try Data("123456789".utf8).write(to: file)
    XCTAssertEqual(
      FileFingerprint.of(path: file.path), FileFingerprint(crc32: "cbf43926", bytes: 9))
    XCTAssertEqual(
      FileFingerprint(crc32: "cbf43926", bytes: 9).description, "CRC-32 cbf43926, 9 bytes")
    XCTAssertNil(FileFingerprint.of(path: directory.path))
    XCTAssertNil(FileFingerprint.of(path: file.path + "-missing"))
  }

  /// This process's identity: the release version and the checksum of the executable that runs
  /// the tests.
  func testTheCurrentBuildNamesItsVersionAndExecutable() throws {
    let current = BuildIdentity.current
    XCTAssertEqual(current.version, BuildIdentity.releaseVersion)
    let crc = try XCTUnwrap(current.executableCRC32)
    XCTAssertEqual(crc.count, 8)
    XCTAssertTrue(crc.allSatisfy(\.isHexDigit), crc)
    XCTAssertGreaterThan(current.executableBytes ?? 0, 0)
    XCTAssertEqual(current.description, "\(BuildIdentity.releaseVersion), executable crc32 \(crc)")
    let json = String(decoding: try JSONEncoder().encode(current), as: UTF8.self)
    XCTAssertTrue(json.contains(#""executable_crc32":"\#(crc)""#), json)
  }
}
