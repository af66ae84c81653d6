import Tensor

// The messages of onnx.proto3 that an inference graph needs, with that file's field numbers.

/// `TensorProto.DataType`: the element types surgeon's graphs use.
public enum ONNXElementType: Int64, Sendable {
  case float = 1
  case int64 = 7
}

/// `TensorProto`: a named constant (an initializer), its values stored as `raw_data`.
public struct ONNXTensor: Sendable {
  public enum Values: Sendable {
    case floats(Tensor)
    case integers([Int64])
  }

  public var name: String
  public var dimensions: [Int]
  public var values: Values

  /// A float tensor with the tensor's own shape (or `dimensions`, same element count).
  public init(name: String, _ tensor: Tensor, dimensions: [Int]? = nil) {
    self.name = name
    self.dimensions = dimensions ?? tensor.shape
    values = .floats(tensor)
  }

  public init(name: String, integers: [Int64], dimensions: [Int]) {
    self.name = name
    self.dimensions = dimensions
    values = .integers(integers)
  }

  public var elementType: ONNXElementType {
    switch values {
    case .floats: return .float
    case .integers: return .int64
    }
  }

  public var elementCount: Int {
    switch values {
    case .floats(let tensor): return tensor.count
    case .integers(let values): return values.count
    }
  }

  /// dims = 1, data_type = 2, name = 8, raw_data = 9.
  public var message: ProtobufMessage {
    var message = ProtobufMessage()
    if !dimensions.isEmpty { message.append(.packedVarints(1, dimensions.map { Int64($0) })) }
    message.append(.varint(2, elementType.rawValue))
    message.append(8, string: name)
    switch values {
    case .floats(let tensor):
      message.append(.floats(9, tensor))
    case .integers(let values):
      var bytes: [UInt8] = []
      bytes.reserveCapacity(values.count * 8)
      for value in values {
        for shift in stride(from: 0, to: 64, by: 8) {
          bytes.append(UInt8(truncatingIfNeeded: value >> Int64(shift)))
        }
      }
      message.append(.bytes(9, bytes))
    }
    return message
  }
}

/// `AttributeProto`: a node attribute (the four kinds surgeon's ops take).
public struct ONNXAttribute: Sendable, Equatable {
  public enum Value: Sendable, Equatable {
    case float(Float)
    case int(Int64)
    case string(String)
    case ints([Int64])
  }

  public var name: String
  public var value: Value

  public init(_ name: String, _ value: Value) {
    self.name = name
    self.value = value
  }

  public static func int(_ name: String, _ value: Int) -> ONNXAttribute {
    ONNXAttribute(name, .int(Int64(value)))
  }
  public static func ints(_ name: String, _ values: [Int]) -> ONNXAttribute {
    ONNXAttribute(name, .ints(values.map { Int64($0) }))
  }
  public static func float(_ name: String, _ value: Float) -> ONNXAttribute {
    ONNXAttribute(name, .float(value))
  }

  /// name = 1, f = 2, i = 3, s = 4, ints = 8, type = 20 (`AttributeType`: FLOAT 1, INT 2,
  /// STRING 3, INTS 7).
  public var message: ProtobufMessage {
    var message = ProtobufMessage()
    message.append(1, string: name)
    switch value {
    case .float(let value):
      if value.bitPattern != 0 { message.append(.float(2, value)) }
      message.append(.varint(20, 1))
    case .int(let value):
      message.append(3, integer: value)
      message.append(.varint(20, 2))
    case .string(let value):
      message.append(4, string: value)
      message.append(.varint(20, 3))
    case .ints(let values):
      if !values.isEmpty { message.append(.packedVarints(8, values)) }
      message.append(.varint(20, 7))
    }
    return message
  }
}

/// `NodeProto`: one operator application.
public struct ONNXNode: Sendable {
  public var name: String
  public var operatorType: String
  /// Value names; an empty string is an omitted optional input.
  public var inputs: [String]
  public var outputs: [String]
  public var attributes: [ONNXAttribute]

  public init(
    name: String, operatorType: String, inputs: [String], outputs: [String],
    attributes: [ONNXAttribute] = []
  ) {
    self.name = name
    self.operatorType = operatorType
    self.inputs = inputs
    self.outputs = outputs
    self.attributes = attributes
  }

  public func attribute(_ name: String) -> ONNXAttribute.Value? {
    attributes.first { $0.name == name }?.value
  }

  /// input = 1, output = 2, name = 3, op_type = 4, attribute = 5.
  public var message: ProtobufMessage {
    var message = ProtobufMessage()
    // Repeated strings keep empty entries: they mark omitted optional inputs by position.
    for input in inputs { message.append(.bytes(1, Array(input.utf8))) }
    for output in outputs { message.append(.bytes(2, Array(output.utf8))) }
    message.append(3, string: name)
    message.append(4, string: operatorType)
    for attribute in attributes { message.append(.message(5, attribute.message)) }
    return message
  }
}

/// A tensor dimension of a graph input or output: a number, or a name for a dynamic axis.
public enum ONNXDimension: Sendable, Equatable {
  case fixed(Int)
  case named(String)
}

/// `ValueInfoProto`: a graph input's or output's name, element type and shape.
public struct ONNXValueInfo: Sendable, Equatable {
  public var name: String
  public var elementType: ONNXElementType
  public var dimensions: [ONNXDimension]

  public init(name: String, elementType: ONNXElementType, dimensions: [ONNXDimension]) {
    self.name = name
    self.elementType = elementType
    self.dimensions = dimensions
  }

  /// ValueInfoProto: name = 1, type = 2. TypeProto: tensor_type = 1. TypeProto.Tensor:
  /// elem_type = 1, shape = 2. TensorShapeProto: dim = 1. Dimension: dim_value = 1,
  /// dim_param = 2.
  public var message: ProtobufMessage {
    var shape = ProtobufMessage()
    for dimension in dimensions {
      switch dimension {
      case .fixed(let size):
        shape.append(.message(1, ProtobufMessage([.varint(1, Int64(size))])))
      case .named(let name):
        shape.append(.message(1, ProtobufMessage([.bytes(2, Array(name.utf8))])))
      }
    }
    let tensorType = ProtobufMessage([.varint(1, elementType.rawValue), .message(2, shape)])
    var message = ProtobufMessage()
    message.append(1, string: name)
    message.append(.message(2, ProtobufMessage([.message(1, tensorType)])))
    return message
  }
}

/// `GraphProto`: nodes in topological order, initializers, inputs and outputs.
public struct ONNXGraph: Sendable {
  public var name: String
  public var nodes: [ONNXNode] = []
  public var initializers: [ONNXTensor] = []
  public var inputs: [ONNXValueInfo] = []
  public var outputs: [ONNXValueInfo] = []

  public init(name: String) {
    self.name = name
  }

  /// node = 1, name = 2, initializer = 5, input = 11, output = 12.
  public var message: ProtobufMessage {
    var message = ProtobufMessage()
    for node in nodes { message.append(.message(1, node.message)) }
    message.append(2, string: name)
    for tensor in initializers { message.append(.message(5, tensor.message)) }
    for input in inputs { message.append(.message(11, input.message)) }
    for output in outputs { message.append(.message(12, output.message)) }
    return message
  }
}

/// `ModelProto`: a graph with its IR version, operator set and metadata.
public struct ONNXModel: Sendable {
  /// IR version 8 (ONNX 1.10 and later read it).
  public static let irVersion: Int64 = 8
  /// The default-domain operator set every node is checked against.
  public static let opsetVersion: Int64 = 17

  public var graph: ONNXGraph
  public var producerName = "surgeon"
  public var producerVersion = "1"
  /// `metadata_props`, in order.
  public var metadata: [(key: String, value: String)] = []

  public init(graph: ONNXGraph, metadata: [(key: String, value: String)] = []) {
    self.graph = graph
    self.metadata = metadata
  }

  /// ir_version = 1, producer_name = 2, producer_version = 3, graph = 7, opset_import = 8
  /// (OperatorSetIdProto: domain = 1, version = 2), metadata_props = 14
  /// (StringStringEntryProto: key = 1, value = 2).
  public var message: ProtobufMessage {
    var message = ProtobufMessage()
    message.append(.varint(1, Self.irVersion))
    message.append(2, string: producerName)
    message.append(3, string: producerVersion)
    message.append(.message(7, graph.message))
    message.append(.message(8, ProtobufMessage([.varint(2, Self.opsetVersion)])))
    for entry in metadata {
      var property = ProtobufMessage()
      property.append(1, string: entry.key)
      property.append(2, string: entry.value)
      message.append(.message(14, property))
    }
    return message
  }

  /// The checked model's bytes: `validate()` first, so a graph with an op the exporter lacks
  /// is never serialised.
  public func serialized() throws(ONNXExportError) -> [UInt8] {
    try graph.validate()
    let message = self.message
    // A protobuf message cannot exceed 2 GiB; larger models need ONNX's external data.
    guard message.byteCount < Int(Int32.max) else {
      throw ONNXExportError(
        node: nil,
        problem: "the model is \(message.byteCount) bytes, over protobuf's 2 GiB limit",
        fix: "export a smaller model (external tensor data is not written)")
    }
    return message.encoded()
  }
}
