import Foundation
import Manifest
import XCTest

final class DiagnosticTests: XCTestCase {
  let unknownKey = Diagnostic(
    location: SourceLocation(file: "manifests/bad.yaml", line: 9, column: 9), severity: .error,
    message: "unknown key 'rnak' in lora (did you mean 'rank'?)")
  let rankTooLarge = Diagnostic(
    location: SourceLocation(file: "manifests/bad.yaml", line: 14, column: 13), severity: .error,
    message: "rank 512 is not below min(in, out) = 384 for encoder.layer.0.attention.self.query",
    fix: "use rank < 384")
  let warning = Diagnostic(
    location: SourceLocation(file: "m.yaml", line: 2, column: 1), severity: .warning,
    message: "something to look at")

  func testTextIsTheCompilerStyleLineOfMANIFESTmd() {
    XCTAssertEqual(
      unknownKey.text,
      "manifests/bad.yaml:9:9: error: unknown key 'rnak' in lora (did you mean 'rank'?)")
    XCTAssertEqual(
      rankTooLarge.text,
      "manifests/bad.yaml:14:13: error: rank 512 is not below min(in, out) = 384 for "
        + "encoder.layer.0.attention.self.query; use rank < 384")
    XCTAssertEqual(warning.text, "m.yaml:2:1: warning: something to look at")
  }

  func testTheDecoderProducesMANIFESTmdsExampleLine() {
    let text = """
      surgeon: 1
      name: bad
      model: {family: bert, preset: bert-tiny, weights: random}
      surgery:
          - lora:
              layers: [query]
              rank: 8
              alpha: 8
              rnak: 16

      """
    XCTAssertEqual(
      ManifestDecoder.decode(text: text, file: "manifests/bad.yaml").diagnostics.map(\.text),
      ["manifests/bad.yaml:9:9: error: unknown key 'rnak' in lora (did you mean 'rank'?)"])
  }

  func testRenderText() {
    XCTAssertEqual(
      render([unknownKey, warning], as: .text),
      "manifests/bad.yaml:9:9: error: unknown key 'rnak' in lora (did you mean 'rank'?)\n"
        + "m.yaml:2:1: warning: something to look at")
    XCTAssertEqual(render([], as: .text), "")
  }

  func testRenderGitHub() {
    XCTAssertEqual(
      render([unknownKey, rankTooLarge, warning], as: .github),
      """
      ::error file=manifests/bad.yaml,line=9,col=9::unknown key 'rnak' in lora (did you mean 'rank'?)
      ::error file=manifests/bad.yaml,line=14,col=13::rank 512 is not below min(in, out) = 384 for \
      encoder.layer.0.attention.self.query; use rank < 384
      ::warning file=m.yaml,line=2,col=1::something to look at
      """)
    XCTAssertEqual(render([], as: .github), "")
  }

  func testGitHubEscapesWhatWouldBreakTheCommand() {
    let odd = Diagnostic(
      location: SourceLocation(file: "a,b:c%.yaml", line: 1, column: 2), severity: .error,
      message: "50% of\nit", fix: "a:b,c")
    XCTAssertEqual(
      render([odd], as: .github),
      "::error file=a%2Cb%3Ac%25.yaml,line=1,col=2::50%25 of%0Ait; a:b,c")
  }

  func testRenderJSON() throws {
    let json = render([unknownKey, rankTooLarge, warning], as: .json)
    XCTAssertEqual(
      json,
      """
      [
        {
          "column": 9,
          "file": "manifests/bad.yaml",
          "line": 9,
          "message": "unknown key 'rnak' in lora (did you mean 'rank'?)",
          "severity": "error"
        },
        {
          "column": 13,
          "file": "manifests/bad.yaml",
          "line": 14,
          "message": "rank 512 is not below min(in, out) = 384 for encoder.layer.0.attention.self.query; use rank < 384",
          "severity": "error"
        },
        {
          "column": 1,
          "file": "m.yaml",
          "line": 2,
          "message": "something to look at",
          "severity": "warning"
        }
      ]
      """)
    XCTAssertEqual(render([], as: .json), "[]")
  }

  func testJSONEscapesAndParsesBack() throws {
    let odd = Diagnostic(
      location: SourceLocation(file: "dir/\"q\".yaml", line: 3, column: 4), severity: .error,
      message: "back\\slash\ttab\u{1}ctrl é\nnew", fix: "fix")
    let json = render([odd], as: .json)
    XCTAssertTrue(json.contains(#""message": "back\\slash\ttab\u0001ctrl é\nnew; fix""#), json)
    let parsed = try XCTUnwrap(
      try JSONSerialization.jsonObject(with: Data(json.utf8)) as? [[String: Any]])
    XCTAssertEqual(parsed.first?["file"] as? String, "dir/\"q\".yaml")
    XCTAssertEqual(parsed.first?["message"] as? String, "back\\slash\ttab\u{1}ctrl é\nnew; fix")
    XCTAssertEqual(parsed.first?["line"] as? Int, 3)
    XCTAssertEqual(parsed.first?["column"] as? Int, 4)
    XCTAssertEqual(parsed.first?["severity"] as? String, "error")
  }

  func testEveryFormatIsListed() {
    XCTAssertEqual(DiagnosticFormat.allCases.map(\.rawValue), ["text", "github", "json"])
  }
}
