import Plumbing
import XCTest

final class JSONTests: XCTestCase {
  private let options = JSONReader.Options(maximumDepth: 4, inputName: "the input")

  private func parse(_ text: String, options: JSONReader.Options? = nil) throws -> ParsedJSON {
    let bytes = Array(text.utf8)
    return try bytes.withUnsafeBytes { try JSONReader.parse($0, options: options ?? self.options) }
  }

  /// The error for `text`; the offset is counted by hand from the literal.
  private func failure(_ text: String, file: StaticString = #filePath, line: UInt = #line)
    -> JSONSyntaxError?
  {
    do {
      _ = try parse(text)
      XCTFail("\(text) parsed", file: file, line: line)
      return nil
    } catch let error as JSONSyntaxError {
      return error
    } catch {
      XCTFail("\(error)", file: file, line: line)
      return nil
    }
  }

  func testMalformedInputNamesTheByteOffset() {
    let cases: [(text: String, offset: Int, problem: String)] = [
      ("", 0, "expected a value, found the end of the input"),
      ("{\"a\" 1}", 5, "expected ':' after the field name, found '1'"),
      ("{\"a\": 1,}", 8, "expected a field name in double quotes, found '}'"),
      ("[1 2]", 3, "expected ',' or ']' in the array, found '2'"),
      ("{\"a\": 1 \"b\": 2}", 8, "expected ',' or '}' in the object, found '\"'"),
      ("[01]", 2, "a number has a leading zero"),
      ("[1.]", 3, "expected a digit after '.', found ']'"),
      ("[1e]", 3, "expected an exponent digit, found ']'"),
      ("[-]", 2, "expected a digit, found ']'"),
      ("[tru]", 1, "expected a value (string, number, object, array, true, false or null)"),
      ("\"abc", 0, "a string is not closed before the end of the input"),
      ("\"a\\qb\"", 2, "invalid escape: backslash followed by 'q' is an unknown escape"),
      ("\"\\ud800\"", 1, "unpaired surrogate \\ud800: a high surrogate without its low surrogate"),
      ("\"\\udc00\"", 1, "unpaired surrogate \\udc00: a lone low surrogate"),
      ("\"\\u12x4\"", 5, "expected 4 hex digits after \\u, found 'x'"),
      ("\"a\tb\"", 2, "unescaped control character byte 0x9 in a string"),
      ("[[[[[1]]]]]", 4, "nesting deeper than 4 levels"),
      ("{\"k\": 1, \"k\": 2}", 9, "duplicate key \"k\""),
      ("{} x", 3, "unexpected 'x' after the JSON value"),
    ]
    for (text, offset, problem) in cases {
      guard let error = failure(text) else { continue }
      XCTAssertEqual(error.offset, offset, text)
      XCTAssertTrue(error.problem.hasPrefix(problem), "\(text): \(error.problem)")
    }
  }

  func testReadsValuesWithMembersInFileOrder() throws {
    let value = try parse(
      #" {"b": [1, -2.5e3, "x\u00e9\ud83d\ude00\n"], "a": {"t": true, "n": null}} "#)
    XCTAssertEqual(
      value,
      .object([
        .init(
          key: "b",
          value: .array([
            .number("1", isInteger: true), .number("-2.5e3", isInteger: false),
            .string("xé😀\n"),
          ])),
        .init(
          key: "a",
          value: .object([.init(key: "t", value: .bool(true)), .init(key: "n", value: .null)])),
      ]))
  }

  func testDuplicateKeysWhenAllowedKeepBothAndTheLastWins() throws {
    let lenient = JSONReader.Options(allowsDuplicateKeys: true, inputName: "the line")
    let value = try parse(#"{"k": 1, "k": 2}"#, options: lenient)
    guard case .object(let members) = value else { return XCTFail("not an object") }
    XCTAssertEqual(members.map(\.key), ["k", "k"])
    XCTAssertEqual(value.value, .object(["k": .integer(2)]))
  }

  func testParseValueStopsAfterTheValue() throws {
    let bytes = Array("xx {\"a\": 1} tail".utf8)
    let (value, end) = try bytes.withUnsafeBytes {
      try JSONReader.parseValue(in: $0, range: 2..<bytes.count, options: options)
    }
    XCTAssertEqual(value.value, .object(["a": .integer(1)]))
    XCTAssertEqual(end, 11)
  }

  func testWriterOutputReadsBackToTheSameValue() throws {
    let value: JSONValue = .object([
      "name": .string("quote \" backslash \\ tab \t newline \n bell \u{7} del \u{7F} é 😀"),
      "numbers": .array([.integer(-3), .integer(0), .number(0.05), .number(1e-05), .number(-2.5)]),
      "flags": .array([.bool(true), .bool(false), .null]),
      "empty": .object([:]),
      "nothing": .array([]),
      "nested": .object(["deeper": .object(["deepest": .integer(Int.max)])]),
    ])
    let text = value.serialized()
    let deep = JSONReader.Options(inputName: "the text")
    XCTAssertEqual(try parse(text, options: deep).value, value)
    // Deterministic: keys sorted, two-space indentation.
    XCTAssertTrue(text.hasPrefix("{\n  \"empty\": {},\n  \"flags\": [\n    true,"), text)
  }

  func testEscapingStyles() {
    let text = "\u{8}\u{C}\u{1}\u{7F}"
    XCTAssertEqual(
      String(decoding: JSONValue.quotedBytes(text), as: UTF8.self), #""\u0008\u000c\u0001\u007f""#)
    XCTAssertEqual(
      String(decoding: JSONValue.quotedBytes(text, escaping: .serde), as: UTF8.self),
      "\"\\b\\f\\u0001\u{7F}\"")
  }
}
