import Manifest
import XCTest

final class YAMLParserTests: XCTestCase {
  func parse(_ text: String) -> (root: YAMLNode?, diagnostics: [Diagnostic]) {
    YAMLParser.parse(text, file: "y.yaml")
  }

  func root(_ text: String, file: StaticString = #filePath, line: UInt = #line) throws -> YAMLNode {
    let result = parse(text)
    XCTAssertEqual(result.diagnostics.map(\.text), [], file: file, line: line)
    return try XCTUnwrap(result.root, file: file, line: line)
  }

  func entries(_ node: YAMLNode) throws -> [(key: YAMLNode, value: YAMLNode)] {
    guard case .mapping(let entries) = node.kind else { throw XCTSkip("not a mapping") }
    return entries
  }

  func testLibYAMLIsLinked() {
    XCTAssertTrue(yamlLibraryVersion.hasPrefix("0."), yamlLibraryVersion)
  }

  func testMappingsKeepOrderAndEveryNodeHasItsMark() throws {
    let node = try root("surgeon: 1\nmodel:\n  family: bert\n  seed: 0\nlist: [a, 'b']\n")
    XCTAssertEqual(node.location, SourceLocation(file: "y.yaml", line: 1, column: 1))
    let top = try entries(node)
    XCTAssertEqual(top.map { $0.key.scalarText }, ["surgeon", "model", "list"])
    XCTAssertEqual(top[0].value.location.lineColumn, "1:10")
    let model = try entries(top[1].value)
    XCTAssertEqual(model.map { $0.key.scalarText }, ["family", "seed"])
    XCTAssertEqual(model[0].key.location.lineColumn, "3:3")
    XCTAssertEqual(model[0].value.location.lineColumn, "3:11")
    guard case .sequence(let items) = top[2].value.kind else { return XCTFail("not a list") }
    XCTAssertEqual(items.map(\.location.lineColumn), ["5:8", "5:11"])
  }

  func testScalarStylesAndTags() throws {
    let node = try root(
      "a: plain\nb: 'single'\nc: \"double\"\nd: |\n  literal\ne: >\n  folded\nf: !!str 16\n")
    let styles = try entries(node).map { entry -> ScalarStyle? in
      if case .scalar(_, let style) = entry.value.kind { return style }
      return nil
    }
    XCTAssertEqual(styles, [.plain, .singleQuoted, .doubleQuoted, .literal, .folded, .plain])
    let values = try entries(node).map(\.value.scalarText)
    XCTAssertEqual(values, ["plain", "single", "double", "literal\n", "folded\n", "16"])
    XCTAssertEqual(try entries(node)[5].value.tag, "tag:yaml.org,2002:str")
    XCTAssertNil(try entries(node)[0].value.tag)
  }

  func testColumnsCountCharactersNotBytes() throws {
    let node = try root("ä: ö\nname: x\n")
    XCTAssertEqual(try entries(node)[0].value.location.lineColumn, "1:4")
  }

  func testWindowsLineEndingsAndAByteOrderMarkAreFine() throws {
    let text =
      "\u{FEFF}surgeon: 1\r\nname: t\r\nmodel: {family: bert, preset: bert-tiny, "
      + "weights: random}\r\nsurgery:\r\n  - freeze: [embeddings]\r\n"
    let result = ManifestDecoder.decode(text: text, file: "w.yaml")
    XCTAssertEqual(result.diagnostics.map(\.text), [])
    XCTAssertEqual(result.manifest?.name.location.lineColumn, "2:7")
    XCTAssertEqual(result.manifest?.text, text)
    guard case .freeze(let selectors, _)? = result.manifest?.surgery.first else {
      return XCTFail("no freeze rule")
    }
    XCTAssertEqual(selectors.first?.location.lineColumn, "5:14")
  }

  func testAliasesResolveToTheirAnchorsNode() throws {
    let node = try root("base: &b {rank: 8}\ncopy: *b\n")
    let top = try entries(node)
    guard case .mapping(let copied) = top[1].value.kind else { return XCTFail("not resolved") }
    XCTAssertEqual(copied.first?.key.scalarText, "rank")
    // The copy keeps the anchored node's position (libyaml's start mark includes the anchor).
    XCTAssertEqual(top[1].value.location.lineColumn, "1:7")
  }

  func testDuplicateKeysAreKeptForTheDecoderToReport() throws {
    let node = try root("a: 1\na: 2\n")
    XCTAssertEqual(try entries(node).count, 2)
  }

  func testSyntaxErrorsCarryLibYAMLsProblemMark() {
    let result = parse("a: [1, 2\nb: 3\n")
    XCTAssertNil(result.root)
    XCTAssertEqual(
      result.diagnostics.map(\.text),
      [
        "y.yaml:2:2: error: YAML syntax error: did not find expected ',' or ']' (while parsing a "
          + "flow sequence at 1:4); close the list with ']' (or separate its items with ',')"
      ])
  }

  func testAnExplicitSingleDocumentIsFine() throws {
    let node = try root("---\na: 1\n...\n")
    XCTAssertEqual(try entries(node).count, 1)
  }

  func testUnsupportedTagsAreErrors() {
    XCTAssertEqual(
      parse("a: !local x\n").diagnostics.map(\.text),
      [
        "y.yaml:1:4: error: unsupported YAML tag '!local'; remove the tag; a manifest uses plain values"
      ])
  }

  func testLimitsAreConfigurable() {
    let small = YAMLLimits(maxBytes: 100, maxDepth: 2, maxNodes: 5)
    XCTAssertEqual(
      YAMLParser.parse("a: [[1]]\n", file: "y", limits: small).diagnostics.map(\.message),
      ["nesting is deeper than 2 levels"])
    XCTAssertEqual(
      YAMLParser.parse("[1, 2, 3, 4, 5]\n", file: "y", limits: small).diagnostics.map(\.message),
      ["manifest has more than 5 nodes"])
    XCTAssertEqual(
      YAMLParser.parse(String(repeating: "#", count: 101), file: "y", limits: small)
        .diagnostics.map(\.message),
      ["manifest is 101 bytes; the limit is 100 bytes"])
  }

  func testAnAliasCannotNestPastTheDepthLimit() {
    let limits = YAMLLimits(maxDepth: 4)
    let text = "a: &a [[1]]\nb: [[*a]]\n"
    XCTAssertEqual(
      YAMLParser.parse(text, file: "y", limits: limits).diagnostics.map(\.text),
      [
        "y:2:6: error: alias '*a' nests the manifest deeper than 4 levels; use an alias of a "
          + "smaller node"
      ])
  }
}
