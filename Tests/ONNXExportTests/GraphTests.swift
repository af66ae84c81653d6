import Foundation
import Models
import Tensor
import XCTest

@testable import ONNXExport

/// The graphs of the tiny BERT and tiny VGG fixtures (plain, rewritten, W-free), read back from
/// the serialised bytes where it matters. ONNX Runtime's numbers are checked by
/// Scripts/check-onnx.sh.
final class GraphTests: XCTestCase {
  static let fixtures = Bundle.module.url(forResource: "Fixtures", withExtension: nil)!

  func load(_ name: String) throws -> Model {
    try CheckpointLoader.load(directory: Self.fixtures.appendingPathComponent(name)).model
  }

  func operatorCounts(_ graph: ONNXGraph) -> [String: Int] {
    graph.nodes.reduce(into: [:]) { $0[$1.operatorType, default: 0] += 1 }
  }

  func node(_ graph: ONNXGraph, _ name: String) throws -> ONNXNode {
    try XCTUnwrap(graph.nodes.first { $0.name == name }, "no node \(name)")
  }

  func testTinyBERT() throws {
    let model = try load("tiny-bert")
    guard case .bert(let bert) = model else { return XCTFail("not a BERT") }
    let graph = try ONNXExporter.model(for: model).graph
    XCTAssertEqual(graph.inputs.map(\.name), ["input_ids", "attention_mask", "token_type_ids"])
    for input in graph.inputs {
      XCTAssertEqual(input.elementType, .int64)
      XCTAssertEqual(input.dimensions, [.named("batch"), .named("sequence")])
    }
    XCTAssertEqual(graph.outputs.map(\.name), ["last_hidden_state", "logits"])
    XCTAssertEqual(
      graph.outputs[0].dimensions, [.named("batch"), .named("sequence"), .fixed(32)])
    XCTAssertEqual(graph.outputs[1].dimensions, [.named("batch"), .fixed(bert.classCount!)])
    // Two blocks: six Linears as MatMul plus the two attention products each; the pooler and
    // the classifier as Gemm; exact GELU through Erf.
    let counts = operatorCounts(graph)
    XCTAssertEqual(counts["MatMul"], 16)
    XCTAssertEqual(counts["Gemm"], 2)
    XCTAssertEqual(counts["LayerNormalization"], 5)
    XCTAssertEqual(counts["Softmax"], 2)
    XCTAssertEqual(counts["Erf"], 2)
    XCTAssertEqual(counts["Tanh"], 1)
    XCTAssertEqual(counts["Gather"], 5)
    // Every parameter is an initializer, once, under its checkpoint name (`.T`: transposed).
    let names = graph.initializers.map(\.name).filter { !$0.hasPrefix("constant.") }
    XCTAssertEqual(
      Set(names.map { $0.hasSuffix(".T") ? String($0.dropLast(2)) : $0 }),
      Set(model.namedParameters.map(\.0)))
    XCTAssertEqual(names.count, Set(names).count)
    let query = bert.layers[1].query.weight
    let transposed = try XCTUnwrap(
      graph.initializers.first { $0.name == "bert.encoder.layer.1.attention.self.query.weight.T" })
    guard case .floats(let values) = transposed.values else { return XCTFail("not floats") }
    XCTAssertEqual(transposed.dimensions, [32, 32])
    XCTAssertEqual(values[flat: 5 * 32 + 3], query[flat: 3 * 32 + 5])
    // The padding mask: finfo(float32).min on masked keys, broadcast over heads and queries.
    let maskScale = try node(graph, "bert.mask/Mul")
    XCTAssertTrue(maskScale.inputs[1].hasPrefix("constant."))
    let softmax = try node(graph, "bert.encoder.layer.0.attention.self/Softmax")
    XCTAssertEqual(softmax.attribute("axis"), .int(-1))
    let norm = try node(graph, "bert.encoder.layer.0.output.LayerNorm/LayerNormalization")
    XCTAssertEqual(norm.attribute("epsilon"), .float(1e-12))
  }

  func testActivationsFollowTheConfiguration() throws {
    guard case .bert(var bert) = try load("tiny-bert") else { return XCTFail("not a BERT") }
    bert.configuration.activation = .geluTanh
    var counts = operatorCounts(try ONNXExporter.model(for: .bert(bert)).graph)
    XCTAssertNil(counts["Erf"])
    XCTAssertEqual(counts["Tanh"], 3)
    bert.configuration.activation = .relu
    counts = operatorCounts(try ONNXExporter.model(for: .bert(bert)).graph)
    XCTAssertEqual(counts["Relu"], 2)
  }

  func testRewrittenAndCompressedLinear() throws {
    guard case .bert(var bert) = try load("tiny-bert") else { return XCTFail("not a BERT") }
    let name = "bert.encoder.layer.0.attention.self.query"
    var random = RandomStream(seed: 3)
    var adapter = LowRankAdapter(
      node: name, rank: 4,
      down: Tensor.normal(shape: [4, 32], standardDeviation: 0.1, random: &random),
      up: Tensor.normal(shape: [32, 4], standardDeviation: 0.1, random: &random),
      bias: Tensor.normal(shape: [32], standardDeviation: 0.1, random: &random), scale: 2)
    adapter.decay = 0.4
    bert.layers[0].query.adapter = adapter
    let rewritten = try ONNXExporter.model(for: .bert(bert)).graph
    // d·(x Wᵀ + b) + s·(x Aᵀ) Bᵀ + C.
    let decay = try node(rewritten, name + "/decay/Mul")
    XCTAssertEqual(decay.inputs, [name + "/Add", name + ".decay"])
    XCTAssertEqual(try node(rewritten, name + "/down/MatMul").inputs[1], name + ".lora_A.T")
    XCTAssertEqual(try node(rewritten, name + "/up/MatMul").inputs[1], name + ".lora_B.T")
    XCTAssertEqual(try node(rewritten, name + "/scale/Mul").inputs[1], name + ".scale")
    XCTAssertEqual(
      try node(rewritten, name + "/adapter/Add").inputs, [name + "/decay/Mul", name + "/scale/Mul"])
    XCTAssertEqual(try node(rewritten, name + "/C/Add").inputs[1], name + ".lora_C")
    let decayValue = try XCTUnwrap(rewritten.initializers.first { $0.name == name + ".decay" })
    guard case .floats(let d) = decayValue.values else { return XCTFail("not floats") }
    XCTAssertEqual(d[flat: 0], 0.4)

    // W-free: two small MatMuls and C; W and the frozen path are gone.
    let compressed = try ONNXExporter.model(for: Model.bert(bert).exported()).graph
    let layerNodes = compressed.nodes.filter { $0.name.hasPrefix(name + "/") }.map(\.name)
    XCTAssertEqual(
      layerNodes,
      [name + "/down/MatMul", name + "/up/MatMul", name + "/C/Add"]
        + [name + "/Reshape", name + "/Transpose"])  // the split into heads that follows
    XCTAssertEqual(try node(compressed, name + "/up/MatMul").inputs[1], name + ".up.weight.T")
    XCTAssertFalse(compressed.initializers.contains { $0.name.hasPrefix(name + ".weight") })
  }

  func testTinyVGG() throws {
    let model = try load("tiny-vgg")
    let graph = try ONNXExporter.model(for: model).graph
    XCTAssertEqual(graph.inputs.map(\.name), ["pixel_values"])
    XCTAssertEqual(
      graph.inputs[0].dimensions, [.named("batch"), .fixed(1), .fixed(28), .fixed(28)])
    XCTAssertEqual(graph.outputs.map(\.name), ["logits"])
    XCTAssertEqual(
      operatorCounts(graph),
      ["Conv": 2, "Relu": 4, "MaxPool": 2, "Flatten": 1, "Gemm": 3])
    let conv = try node(graph, "features.3/Conv")
    XCTAssertEqual(conv.inputs, ["features.2/MaxPool", "features.3.weight", "features.3.bias"])
    XCTAssertEqual(conv.attribute("pads"), .ints([1, 1, 1, 1]))
    XCTAssertEqual(conv.attribute("kernel_shape"), .ints([3, 3]))
    XCTAssertEqual(conv.attribute("group"), .int(1))
    XCTAssertEqual(try node(graph, "features.2/MaxPool").attribute("strides"), .ints([2, 2]))
    XCTAssertEqual(try node(graph, "classifier.6/Gemm").outputs, ["logits"])
  }

  func testConvolutionGeometryAndLowRankAdapter() throws {
    guard case .vgg(var vgg) = try load("tiny-vgg") else { return XCTFail("not a VGG") }
    guard case .convolution(var conv) = vgg.features[3] else { return XCTFail("not a conv") }
    conv.stride = (2, 1)
    conv.dilation = (1, 2)
    conv.padding = Padding2D(top: 0, bottom: 1, left: 2, right: 3)
    var random = RandomStream(seed: 4)
    var adapter = LowRankAdapter(
      node: "features.3", rank: 2,
      down: Tensor.normal(shape: [2, 8, 3, 3], standardDeviation: 0.1, random: &random),
      up: Tensor.normal(shape: [16, 2, 1, 1], standardDeviation: 0.1, random: &random),
      bias: Tensor(zeros: [16]), scale: 0.5)
    adapter.decay = 0.25
    conv.adapter = adapter
    vgg.features[3] = .convolution(conv)
    let rewritten = try ONNXExporter.graph(for: vgg)
    let frozen = try node(rewritten, "features.3/Conv")
    XCTAssertEqual(frozen.attribute("strides"), .ints([2, 1]))
    XCTAssertEqual(frozen.attribute("dilations"), .ints([1, 2]))
    // ONNX pads are [top, left, bottom, right].
    XCTAssertEqual(frozen.attribute("pads"), .ints([0, 2, 1, 3]))
    let down = try node(rewritten, "features.3/down/Conv")
    XCTAssertEqual(down.attribute("pads"), frozen.attribute("pads"))
    XCTAssertEqual(
      try node(rewritten, "features.3/up/Conv").attribute("kernel_shape"), .ints([1, 1]))
    XCTAssertNotNil(try? node(rewritten, "features.3/decay/Mul"))
    let c = try XCTUnwrap(rewritten.initializers.first { $0.name == "features.3.lora_C" })
    XCTAssertEqual(c.dimensions, [16, 1, 1])

    // W-free: a k×k conv in → r, then a 1×1 conv r → out with C as its bias.
    vgg.features[3] = .convolution(conv)
    guard case .vgg(let exported) = Model.vgg(vgg).exported() else { return XCTFail() }
    let compressed = try ONNXExporter.graph(for: exported)
    let layerNodes = compressed.nodes.filter { $0.name.hasPrefix("features.3/") }
    XCTAssertEqual(layerNodes.map(\.name), ["features.3/down/Conv", "features.3/up/Conv"])
    XCTAssertEqual(
      layerNodes[1].inputs,
      ["features.3/down/Conv", "features.3.up.weight", "features.3.up.bias"])
  }

  func testAdaptiveAveragePoolForms() throws {
    guard case .vgg(var vgg) = try load("tiny-vgg") else { return XCTFail("not a VGG") }
    // The map entering the pool is 16 × 7 × 7.
    vgg.configuration.averagePool = 1
    XCTAssertNotNil(operatorCounts(try ONNXExporter.graph(for: vgg))["GlobalAveragePool"])
    vgg.configuration.averagePool = 7
    let even = try ONNXExporter.graph(for: vgg)
    XCTAssertEqual(try node(even, "avgpool/AveragePool").attribute("kernel_shape"), .ints([1, 1]))
    // 7 → 3: windows rows 0..<3, 2..<5, 4..<7 (overlapping), as a MatMul.
    vgg.configuration.averagePool = 3
    let uneven = try ONNXExporter.graph(for: vgg)
    let windows = try XCTUnwrap(uneven.initializers.first { $0.name == "avgpool.windows" })
    XCTAssertEqual(windows.dimensions, [49, 9])
    guard case .floats(let w) = windows.values else { return XCTFail("not floats") }
    // Pixel (2, 2) lies in the windows of cells (0, 0), (0, 1), (1, 0) and (1, 1), each 3×3.
    let pixel = 2 * 7 + 2
    let ninth: Float = 1 / 9
    let expected: [Float] = [ninth, ninth, 0, ninth, ninth, 0, 0, 0, 0]
    let shares: [Float] = (0..<9).map { w[flat: pixel * 9 + $0] }
    XCTAssertEqual(shares, expected)
  }

  /// The serialised model parses back: a minimal protobuf reader walks ModelProto → GraphProto
  /// and finds every node, initializer and op type where the fields say.
  func testSerialisedModelParsesBack() throws {
    let onnx = try ONNXExporter.model(for: try load("tiny-bert"))
    let bytes = try onnx.serialized()
    let top = try WireReader.fields(bytes[...])
    XCTAssertEqual(top.first?.number, 1)
    XCTAssertEqual(top.first?.varint, 8)
    let graphField = try XCTUnwrap(top.first { $0.number == 7 }?.bytes)
    let opset = try XCTUnwrap(top.first { $0.number == 8 }?.bytes)
    XCTAssertEqual(try WireReader.fields(opset).first { $0.number == 2 }?.varint, 17)
    let graphFields = try WireReader.fields(graphField)
    let nodes = graphFields.filter { $0.number == 1 }
    XCTAssertEqual(nodes.count, onnx.graph.nodes.count)
    XCTAssertEqual(graphFields.filter { $0.number == 5 }.count, onnx.graph.initializers.count)
    let operators = try nodes.map { node in
      try WireReader.fields(node.bytes!).first { $0.number == 4 }.map {
        String(decoding: $0.bytes!, as: UTF8.self)
      }
    }
    XCTAssertEqual(operators, onnx.graph.nodes.map(\.operatorType))
  }

  func testUnsupportedOperatorIsRefusedNamingTheNode() throws {
    var graph = try ONNXExporter.model(for: try load("tiny-vgg")).graph
    graph.nodes.insert(
      ONNXNode(
        name: "features.1/Swish", operatorType: "Swish", inputs: ["features.0/Conv"],
        outputs: ["features.1/Swish"]), at: 1)
    XCTAssertThrowsError(try ONNXModel(graph: graph).serialized()) { error in
      let message = String(describing: error)
      XCTAssertTrue(
        message.hasPrefix("node 'features.1/Swish': the exporter has no 'Swish' operator"), message)
      XCTAssertTrue(message.contains("Conv"), message)
    }
    var misordered = try ONNXExporter.model(for: try load("tiny-vgg")).graph
    misordered.nodes.swapAt(0, 1)
    XCTAssertThrowsError(try misordered.validate()) { error in
      XCTAssertEqual(
        String(describing: error),
        "node 'features.1/Relu': input 'features.0/Conv' is used before any node produces it; add the nodes in execution order"
      )
    }
    var badAttribute = try ONNXExporter.model(for: try load("tiny-vgg")).graph
    badAttribute.nodes[1].attributes = [.int("alpha", 1)]
    XCTAssertThrowsError(try badAttribute.validate()) { error in
      XCTAssertTrue(String(describing: error).contains("Relu has no attribute 'alpha'"))
    }
  }
}

/// Just enough of a protobuf parser to read fields back: varint and length-delimited ones.
enum WireReader {
  struct Field {
    var number: Int
    var varint: UInt64?
    var bytes: ArraySlice<UInt8>?
  }

  struct Malformed: Error {}

  static func fields(_ bytes: ArraySlice<UInt8>) throws -> [Field] {
    var index = bytes.startIndex
    func varint() throws -> UInt64 {
      var value: UInt64 = 0
      var shift: UInt64 = 0
      while true {
        guard index < bytes.endIndex, shift < 64 else { throw Malformed() }
        let byte = bytes[index]
        index += 1
        value |= UInt64(byte & 0x7F) << shift
        if byte < 0x80 { return value }
        shift += 7
      }
    }
    var result: [Field] = []
    while index < bytes.endIndex {
      let tag = try varint()
      let number = Int(tag >> 3)
      switch tag & 7 {
      case 0: result.append(Field(number: number, varint: try varint()))
      case 2:
        let length = Int(try varint())
        guard index + length <= bytes.endIndex else { throw Malformed() }
        result.append(Field(number: number, bytes: bytes[index..<(index + length)]))
        index += length
      case 5:
        index += 4
        result.append(Field(number: number))
      default: throw Malformed()
      }
    }
    return result
  }
}
