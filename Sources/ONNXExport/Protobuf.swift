import Tensor

/// A protocol-buffers message as an ordered list of fields, encoded by hand.
///
/// Only what ONNX files need: varints (int32, int64, enums), length-delimited fields (strings,
/// bytes, nested messages, packed repeated integers) and 32-bit floats. The size of every nested
/// message is computed before it is written, so a model is serialised into one buffer reserved to
/// its exact size (a tensor's bytes are copied once, not once per nesting level).
public struct ProtobufMessage: Sendable {
  /// One field: its number and payload.
  public enum Field: Sendable {
    /// Wire type 0; negative values are their 64-bit two's complement (ten bytes), as protobuf's
    /// `int64` and `int32` encode them.
    case varint(Int, Int64)
    /// Wire type 5.
    case float(Int, Float)
    /// Wire type 2.
    case bytes(Int, [UInt8])
    /// Wire type 2: a packed repeated integer field (proto3's default for repeated scalars).
    case packedVarints(Int, [Int64])
    /// Wire type 2: a nested message.
    case message(Int, ProtobufMessage)
    /// Wire type 2: a float32 tensor's values, little-endian (`raw_data`).
    case floats(Int, Tensor)
  }

  public var fields: [Field] = []

  public init(_ fields: [Field] = []) {
    self.fields = fields
  }

  public mutating func append(_ field: Field) { fields.append(field) }

  /// A UTF-8 string field; empty strings are omitted, as proto3 omits default values.
  public mutating func append(_ number: Int, string: String) {
    if !string.isEmpty { fields.append(.bytes(number, Array(string.utf8))) }
  }

  /// An integer field; zero is omitted (proto3's default value).
  public mutating func append(_ number: Int, integer: Int64) {
    if integer != 0 { fields.append(.varint(number, integer)) }
  }

  /// The number of bytes `encoded()` produces.
  public var byteCount: Int {
    fields.reduce(0) { total, field in
      switch field {
      case .varint(let number, let value):
        return total + Self.tagSize(number) + Self.varintSize(UInt64(bitPattern: value))
      case .float(let number, _):
        return total + Self.tagSize(number) + 4
      case .bytes(let number, let bytes):
        return total + Self.delimitedSize(number, bytes.count)
      case .packedVarints(let number, let values):
        return total + Self.delimitedSize(number, Self.packedSize(values))
      case .message(let number, let message):
        return total + Self.delimitedSize(number, message.byteCount)
      case .floats(let number, let tensor):
        return total + Self.delimitedSize(number, tensor.count * 4)
      }
    }
  }

  /// The wire-format bytes.
  public func encoded() -> [UInt8] {
    var output: [UInt8] = []
    output.reserveCapacity(byteCount)
    encode(into: &output)
    return output
  }

  func encode(into output: inout [UInt8]) {
    for field in fields {
      switch field {
      case .varint(let number, let value):
        Self.appendTag(number, wireType: 0, to: &output)
        Self.appendVarint(UInt64(bitPattern: value), to: &output)
      case .float(let number, let value):
        Self.appendTag(number, wireType: 5, to: &output)
        let bits = value.bitPattern
        for shift in stride(from: 0, to: 32, by: 8) {
          output.append(UInt8(truncatingIfNeeded: bits >> shift))
        }
      case .bytes(let number, let bytes):
        Self.appendTag(number, wireType: 2, to: &output)
        Self.appendVarint(UInt64(bytes.count), to: &output)
        output.append(contentsOf: bytes)
      case .packedVarints(let number, let values):
        Self.appendTag(number, wireType: 2, to: &output)
        Self.appendVarint(UInt64(Self.packedSize(values)), to: &output)
        for value in values { Self.appendVarint(UInt64(bitPattern: value), to: &output) }
      case .message(let number, let message):
        Self.appendTag(number, wireType: 2, to: &output)
        Self.appendVarint(UInt64(message.byteCount), to: &output)
        message.encode(into: &output)
      case .floats(let number, let tensor):
        Self.appendTag(number, wireType: 2, to: &output)
        Self.appendVarint(UInt64(tensor.count * 4), to: &output)
        tensor.withUnsafeBufferPointer { values in
          #if _endian(little)
            output.append(contentsOf: UnsafeRawBufferPointer(values))
          #else
            for value in values {
              let bits = value.bitPattern
              for shift in stride(from: 0, to: 32, by: 8) {
                output.append(UInt8(truncatingIfNeeded: bits >> shift))
              }
            }
          #endif
        }
      }
    }
  }

  /// Seven bits per byte, least significant group first, the high bit set on all but the last.
  public static func appendVarint(_ value: UInt64, to output: inout [UInt8]) {
    var rest = value
    while rest >= 0x80 {
      output.append(UInt8(truncatingIfNeeded: rest) | 0x80)
      rest >>= 7
    }
    output.append(UInt8(rest))
  }

  static func appendTag(_ number: Int, wireType: UInt64, to output: inout [UInt8]) {
    appendVarint(UInt64(number) << 3 | wireType, to: &output)
  }

  static func varintSize(_ value: UInt64) -> Int {
    var size = 1
    var rest = value >> 7
    while rest != 0 {
      size += 1
      rest >>= 7
    }
    return size
  }

  static func tagSize(_ number: Int) -> Int { varintSize(UInt64(number) << 3) }

  static func delimitedSize(_ number: Int, _ length: Int) -> Int {
    tagSize(number) + varintSize(UInt64(length)) + length
  }

  static func packedSize(_ values: [Int64]) -> Int {
    values.reduce(0) { $0 + varintSize(UInt64(bitPattern: $1)) }
  }
}
