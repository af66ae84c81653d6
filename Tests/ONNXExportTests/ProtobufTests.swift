import Tensor
import XCTest

@testable import ONNXExport

/// The wire format against bytes worked out by hand from the protobuf encoding rules (tag =
/// field number << 3 | wire type; varints seven bits at a time, least significant first).
final class ProtobufTests: XCTestCase {
  func testVarints() {
    func varint(_ value: UInt64) -> [UInt8] {
      var bytes: [UInt8] = []
      ProtobufMessage.appendVarint(value, to: &bytes)
      return bytes
    }
    XCTAssertEqual(varint(0), [0x00])
    XCTAssertEqual(varint(1), [0x01])
    XCTAssertEqual(varint(127), [0x7F])
    XCTAssertEqual(varint(128), [0x80, 0x01])
    // 300 = 0b10_0101100: low seven bits 0101100 (0x2C | 0x80), then 10.
    XCTAssertEqual(varint(300), [0xAC, 0x02])
    // int64 −1 is its 64-bit two's complement: nine 0xFF groups and a final 0x01.
    XCTAssertEqual(
      ProtobufMessage([.varint(1, -1)]).encoded(),
      [0x08, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x01])
  }

  func testIntegerAttribute() {
    // name (1, "axis"), i (3, −1), type (20 → tag 160 = 0xA0 0x01, INT = 2).
    let expected: [UInt8] =
      [0x0A, 0x04, 0x61, 0x78, 0x69, 0x73]
      + [0x18, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x01]
      + [0xA0, 0x01, 0x02]
    XCTAssertEqual(ONNXAttribute.int("axis", -1).message.encoded(), expected)
  }

  func testIntegerListAndFloatAttributes() {
    // name (1, "perm"), ints packed (8 → tag 0x42, 4 bytes), type INTS = 7.
    XCTAssertEqual(
      ONNXAttribute.ints("perm", [0, 2, 1, 3]).message.encoded(),
      [0x0A, 0x04, 0x70, 0x65, 0x72, 0x6D, 0x42, 0x04, 0x00, 0x02, 0x01, 0x03, 0xA0, 0x01, 0x07])
    // name (1, "alpha"), f (2 → tag 0x15, 0.5 = 0x3F000000 little-endian), type FLOAT = 1.
    XCTAssertEqual(
      ONNXAttribute.float("alpha", 0.5).message.encoded(),
      [0x0A, 0x05, 0x61, 0x6C, 0x70, 0x68, 0x61, 0x15, 0x00, 0x00, 0x00, 0x3F, 0xA0, 0x01, 0x01])
  }

  func testTensors() {
    // dims (1, packed [2]), data_type (2, FLOAT = 1), name (8, "w"), raw_data (9, 1.0 and −2.0
    // as little-endian float32: 0x3F800000, 0xC0000000).
    let floats = ONNXTensor(name: "w", Tensor(shape: [2], scalars: [1, -2]))
    XCTAssertEqual(
      floats.message.encoded(),
      [0x0A, 0x01, 0x02, 0x10, 0x01, 0x42, 0x01, 0x77]
        + [0x4A, 0x08, 0x00, 0x00, 0x80, 0x3F, 0x00, 0x00, 0x00, 0xC0])
    // A scalar has no dims; INT64 = 7; raw_data eight little-endian bytes.
    let integers = ONNXTensor(name: "i", integers: [1], dimensions: [])
    XCTAssertEqual(
      integers.message.encoded(),
      [0x10, 0x07, 0x42, 0x01, 0x69, 0x4A, 0x08, 0x01, 0, 0, 0, 0, 0, 0, 0])
  }

  /// ValueInfoProto of `x`, float, `[batch, 3]`.
  static let valueInfoX: [UInt8] =
    [0x0A, 0x01, 0x78, 0x12, 0x13]  // name "x"; type: 19 bytes
    + [0x0A, 0x11]  // TypeProto.tensor_type: 17 bytes
    + [0x08, 0x01, 0x12, 0x0D]  // elem_type FLOAT; shape: 13 bytes
    + [0x0A, 0x07, 0x12, 0x05, 0x62, 0x61, 0x74, 0x63, 0x68]  // dim { dim_param "batch" }
    + [0x0A, 0x02, 0x08, 0x03]  // dim { dim_value 3 }

  func testValueInfoAndNode() {
    let x = ONNXValueInfo(name: "x", elementType: .float, dimensions: [.named("batch"), .fixed(3)])
    XCTAssertEqual(x.message.encoded(), Self.valueInfoX)
    let relu = ONNXNode(name: "r", operatorType: "Relu", inputs: ["x"], outputs: ["y"])
    XCTAssertEqual(
      relu.message.encoded(),
      [0x0A, 0x01, 0x78, 0x12, 0x01, 0x79, 0x1A, 0x01, 0x72, 0x22, 0x04, 0x52, 0x65, 0x6C, 0x75])
    // An omitted optional input keeps its place as an empty string.
    let conv = ONNXNode(name: "", operatorType: "", inputs: ["x", ""], outputs: [])
    XCTAssertEqual(conv.message.encoded(), [0x0A, 0x01, 0x78, 0x0A, 0x00])
  }

  func testWholeModel() throws {
    var graph = ONNXGraph(name: "g")
    graph.nodes = [ONNXNode(name: "r", operatorType: "Relu", inputs: ["x"], outputs: ["y"])]
    graph.inputs = [
      ONNXValueInfo(name: "x", elementType: .float, dimensions: [.named("batch"), .fixed(3)])
    ]
    graph.outputs = [
      ONNXValueInfo(name: "y", elementType: .float, dimensions: [.named("batch"), .fixed(3)])
    ]
    let node: [UInt8] = [
      0x0A, 0x01, 0x78, 0x12, 0x01, 0x79, 0x1A, 0x01, 0x72, 0x22, 0x04, 0x52, 0x65, 0x6C, 0x75,
    ]
    var valueInfoY = Self.valueInfoX
    valueInfoY[2] = 0x79
    // GraphProto: node (1), name (2), input (11 → 0x5A), output (12 → 0x62): 72 bytes.
    let graphBytes: [UInt8] =
      [0x0A, 0x0F] + node + [0x12, 0x01, 0x67] + [0x5A, 0x18] + Self.valueInfoX + [0x62, 0x18]
      + valueInfoY
    XCTAssertEqual(graphBytes.count, 72)
    // ModelProto: ir_version 8, producer "surgeon" "1", graph (7 → 0x3A), opset_import (8 →
    // 0x42) { version (2) 17 }.
    let expected: [UInt8] =
      [0x08, 0x08, 0x12, 0x07, 0x73, 0x75, 0x72, 0x67, 0x65, 0x6F, 0x6E, 0x1A, 0x01, 0x31]
      + [0x3A, 0x48] + graphBytes + [0x42, 0x02, 0x10, 0x11]
    let model = ONNXModel(graph: graph)
    XCTAssertEqual(try model.serialized(), expected)
    XCTAssertEqual(model.message.byteCount, expected.count)
  }
}
