/// A JSON value with a deterministic writer: keys sorted, two-space indentation.
///
/// Hand-written rather than `JSONSerialization` so that the schema and the json diagnostics are
/// byte-for-byte reproducible across Foundation versions (number formatting, slash escaping).
/// `JSONReader` reads what this writes back into the same value.
public enum JSONValue: Sendable, Equatable {
  case null
  case bool(Bool)
  case integer(Int)
  case number(Double)
  case string(String)
  case array([JSONValue])
  case object([String: JSONValue])

  /// Pretty-printed text; an empty array or object stays on one line.
  public func serialized() -> String {
    var output = ""
    write(to: &output, indent: 0)
    return output
  }

  private func write(to output: inout String, indent: Int) {
    switch self {
    case .null: output += "null"
    case .bool(let value): output += value ? "true" : "false"
    case .integer(let value): output += String(value)
    case .number(let value):
      // Swift's shortest round-tripping form ("0.05", "1e-05") is valid JSON for finite values.
      output += value.isFinite ? "\(value)" : "null"
    case .string(let value): output += JSONValue.quoted(value)
    case .array(let values):
      guard !values.isEmpty else {
        output += "[]"
        return
      }
      output += "[\n"
      for (index, value) in values.enumerated() {
        output += String(repeating: " ", count: indent + 2)
        value.write(to: &output, indent: indent + 2)
        output += index == values.count - 1 ? "\n" : ",\n"
      }
      output += String(repeating: " ", count: indent) + "]"
    case .object(let members):
      guard !members.isEmpty else {
        output += "{}"
        return
      }
      output += "{\n"
      let keys = members.keys.sorted()
      for (index, key) in keys.enumerated() {
        output += String(repeating: " ", count: indent + 2) + JSONValue.quoted(key) + ": "
        members[key]?.write(to: &output, indent: indent + 2)
        output += index == keys.count - 1 ? "\n" : ",\n"
      }
      output += String(repeating: " ", count: indent) + "}"
    }
  }

  /// A JSON string literal: quotes, backslashes and control characters escaped, the rest as is.
  public static func quoted(_ text: String) -> String {
    String(decoding: quotedBytes(text), as: UTF8.self)
  }

  /// How a string literal escapes what JSON lets a writer choose to escape.
  public enum Escaping: Sendable {
    /// `\n`, `\r`, `\t`, every other control character and DEL as `\u00XX`.
    case controlsAndDelete
    /// As serde_json writes (the reference safetensors writer): `\b`, `\f`, `\n`, `\r`, `\t`,
    /// other control characters as `\u00XX`, DEL as is; identical contents give identical files.
    case serde
  }

  /// `text` as a JSON string literal in UTF-8: quotes and backslashes escaped, control characters
  /// escaped as `escaping` says, everything else as is.
  public static func quotedBytes(_ text: String, escaping: Escaping = .controlsAndDelete) -> [UInt8]
  {
    let hexDigits = Array("0123456789abcdef".utf8)
    let backslash = UInt8(ascii: "\\")
    var result: [UInt8] = [UInt8(ascii: "\"")]
    result.reserveCapacity(text.utf8.count + 2)
    for byte in text.utf8 {
      switch (byte, escaping) {
      case (UInt8(ascii: "\""), _): result += [backslash, UInt8(ascii: "\"")]
      case (backslash, _): result += [backslash, backslash]
      case (0x0A, _): result += [backslash, UInt8(ascii: "n")]
      case (0x0D, _): result += [backslash, UInt8(ascii: "r")]
      case (0x09, _): result += [backslash, UInt8(ascii: "t")]
      case (0x08, .serde): result += [backslash, UInt8(ascii: "b")]
      case (0x0C, .serde): result += [backslash, UInt8(ascii: "f")]
      case (0x00..<0x20, _), (0x7F, .controlsAndDelete):
        result += Array("\\u00".utf8) + [hexDigits[Int(byte >> 4)], hexDigits[Int(byte & 0xF)]]
      default: result.append(byte)
      }
    }
    result.append(UInt8(ascii: "\""))
    return result
  }
}
