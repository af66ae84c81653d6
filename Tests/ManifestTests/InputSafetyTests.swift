import Foundation
import Manifest
import XCTest

/// Hostile or mistaken inputs: each is one clean diagnostic, quickly, never a crash.
final class InputSafetyTests: XCTestCase {
  func texts(_ bytes: [UInt8]) -> [String] {
    ManifestDecoder.decode(bytes: bytes, file: "x.yaml").diagnostics.map(\.text)
  }

  func seconds(_ body: () -> Void) -> Double {
    let start = Date()
    body()
    return Date().timeIntervalSince(start)
  }

  func testNULBytesAreRejectedWhereTheyAre() {
    XCTAssertEqual(
      texts(Array("surgeon: 1\nname: a\u{0}b\n".utf8)),
      [
        "x.yaml:2:8: error: manifest contains a NUL byte; a manifest is UTF-8 text; is this a binary file?"
      ])
    let result = ManifestDecoder.decode(text: "surgeon: 1\u{0}", file: "x.yaml")
    XCTAssertNil(result.manifest)
    XCTAssertEqual(result.diagnostics.map(\.location.lineColumn), ["1:11"])
  }

  func testInvalidUTF8IsReportedAtTheByte() {
    XCTAssertEqual(
      texts(Array("surgeon: 1\nname: ab".utf8) + [0xFF, 0x0A]),
      [
        "x.yaml:2:9: error: manifest is not valid UTF-8: invalid leading UTF-8 octet (byte 0xFF); "
          + "save the file as UTF-8 text"
      ])
    // libyaml points at the byte that breaks the sequence: 0x28 after the leading 0xC3.
    XCTAssertEqual(
      texts(Array("name: ".utf8) + [0xC3, 0x28]),
      [
        "x.yaml:1:8: error: manifest is not valid UTF-8: invalid trailing UTF-8 octet (byte 0x28); "
          + "save the file as UTF-8 text"
      ])
  }

  func testAUTF16FileIsNotSilentlyDecoded() {
    let utf16: [UInt8] = [0xFF, 0xFE] + Array("surgeon: 1\n".utf8).flatMap { [$0, 0] }
    let problems = texts(utf16)
    XCTAssertEqual(problems.count, 1)
    XCTAssertTrue(problems[0].hasPrefix("x.yaml:1:"), problems[0])
  }

  func testBinaryGarbageIsOneErrorNotACrash() {
    var seeded = SplitMix(seed: 42)
    for _ in 0..<20 {
      let bytes = (0..<4096).map { _ in UInt8.random(in: 1...255, using: &seeded) }
      let result = ManifestDecoder.decode(bytes: bytes, file: "x.yaml")
      XCTAssertNil(result.manifest)
      XCTAssertGreaterThanOrEqual(result.diagnostics.count, 1)
    }
    // An ELF header: NUL bytes in the first line.
    let elf: [UInt8] = [0x7F, 0x45, 0x4C, 0x46, 0x02, 0x01, 0x01, 0x00, 0x00]
    XCTAssertEqual(
      texts(elf),
      [
        "x.yaml:1:8: error: manifest contains a NUL byte; a manifest is UTF-8 text; is this a binary file?"
      ])
  }

  func testPositionsAfterAByteOrderMarkCountFromTheFirstCharacter() {
    XCTAssertEqual(
      texts([0xEF, 0xBB, 0xBF] + Array("a: ".utf8) + [0xFF]),
      [
        "x.yaml:1:4: error: manifest is not valid UTF-8: invalid leading UTF-8 octet (byte 0xFF); "
          + "save the file as UTF-8 text"
      ])
  }

  func testControlCharactersAreSyntaxErrors() {
    XCTAssertEqual(
      texts(Array("surgeon: 1\nname: a\u{1B}b\n".utf8)),
      [
        "x.yaml:2:8: error: YAML syntax error: control characters are not allowed (U+001B); "
          + "remove the character; a manifest is plain text"
      ])
  }

  func testATwoMegabyteLineIsRejectedBySize() {
    let line = "name: " + String(repeating: "x", count: 2_000_000) + "\n"
    var problems: [String] = []
    let time = seconds { problems = texts(Array(line.utf8)) }
    XCTAssertEqual(
      problems,
      [
        "x.yaml:1:1: error: manifest is 2000007 bytes; the limit is 1048576 bytes; a manifest is "
          + "a short text file; is this the right file?"
      ])
    XCTAssertLessThan(time, 1)
  }

  func testTwentyThousandLevelsOfNestingAreAnErrorNotAStackOverflow() {
    let deep = String(repeating: "[", count: 20_000) + String(repeating: "]", count: 20_000)
    var problems: [String] = []
    let time = seconds { problems = texts(Array(deep.utf8)) }
    XCTAssertEqual(
      problems,
      [
        "x.yaml:1:65: error: nesting is deeper than 64 levels; a manifest needs only a few "
          + "levels; is this the right file?"
      ])
    XCTAssertLessThan(time, 1)
    let mappings = String(repeating: "{a: ", count: 20_000) + String(repeating: "}", count: 20_000)
    XCTAssertEqual(
      texts(Array(mappings.utf8)).first?.hasPrefix("x.yaml:1:257: error: nesting is deeper"),
      true)
  }

  func testSixtyFourLevelsAreStillFine() {
    let text =
      "surgeon: 1\nname: t\nmodel:\n  family: bert\n  preset: bert-tiny\n"
      + "  weights: random\n  config:\n    deep: "
      + String(repeating: "[", count: 61) + String(repeating: "]", count: 61) + "\n"
    let result = ManifestDecoder.decode(text: text, file: "x.yaml")
    XCTAssertEqual(result.diagnostics.map(\.text), [])
    XCTAssertNotNil(result.manifest)
  }

  func testABillionLaughsBombStopsAtTheAliasThatExplodes() {
    var lines = ["a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    for level in 1..<12 {
      let name = String(UnicodeScalar(UInt8(97 + level)))
      let previous = String(UnicodeScalar(UInt8(96 + level)))
      lines.append(
        "\(name): &\(name) [" + Array(repeating: "*\(previous)", count: 10).joined(separator: ", ")
          + "]")
    }
    var problems: [String] = []
    let time = seconds { problems = texts(Array(lines.joined(separator: "\n").utf8)) }
    XCTAssertEqual(
      problems,
      [
        "x.yaml:4:36: error: alias '*c' expands the manifest past 10000 nodes (an alias bomb?); "
          + "use fewer aliases, or aliases of smaller nodes"
      ])
    XCTAssertLessThan(time, 1)
  }

  func testManyAliasesOfASmallNodeAreFine() throws {
    let text = """
      surgeon: 1
      name: t
      model: {family: bert, preset: bert-tiny, weights: random}
      surgery:
        - lora: &rule {layers: [query], rank: 8}
        - lora: *rule
        - lora: *rule
      """
    let result = ManifestDecoder.decode(text: text, file: "x.yaml")
    XCTAssertEqual(result.diagnostics.map(\.text), [])
    XCTAssertEqual(result.manifest?.surgery.count, 3)
  }

  func testAHugeFileIsNotReadWhole() throws {
    let path = NSTemporaryDirectory() + "surgeon-huge-\(getpid()).yaml"
    defer { try? FileManager.default.removeItem(atPath: path) }
    let chunk = Data(repeating: UInt8(ascii: "#"), count: 1 << 20)
    XCTAssertTrue(FileManager.default.createFile(atPath: path, contents: chunk + chunk + chunk))
    let result = ManifestDecoder.decode(contentsOf: path)
    XCTAssertEqual(
      result.diagnostics.map(\.text),
      [
        "\(path):1:1: error: manifest is 3145728 bytes; the limit is 1048576 bytes; a manifest "
          + "is a short text file; is this the right file?"
      ])
  }
}

/// A small seeded generator, so the garbage is the same on every run.
struct SplitMix: RandomNumberGenerator {
  var state: UInt64

  init(seed: UInt64) { state = seed }

  mutating func next() -> UInt64 {
    state &+= 0x9E37_79B9_7F4A_7C15
    var z = state
    z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
    z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
    return z ^ (z >> 31)
  }
}
