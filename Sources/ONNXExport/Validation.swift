/// Why a model cannot be exported: the graph node (when one is to blame), the problem, the fix.
public struct ONNXExportError: Error, CustomStringConvertible, Sendable {
  public var node: String?
  public var problem: String
  public var fix: String

  public init(node: String?, problem: String, fix: String) {
    self.node = node
    self.problem = problem
    self.fix = fix
  }

  public var description: String {
    (node.map { "node '\($0)': " } ?? "") + "\(problem); \(fix)"
  }
}

/// What the exporter knows of an opset-17 operator: how many inputs it takes and which
/// attributes it accepts.
struct OperatorSchema: Sendable {
  var inputs: ClosedRange<Int>
  var outputs: Int = 1
  var attributes: Set<String> = []
}

extension ONNXGraph {
  /// The operators the exporter writes, as opset 17 defines them. A node outside this table is
  /// refused rather than written for a runtime to reject.
  static let operators: [String: OperatorSchema] = [
    "Add": OperatorSchema(inputs: 2...2),
    "Sub": OperatorSchema(inputs: 2...2),
    "Mul": OperatorSchema(inputs: 2...2),
    "Div": OperatorSchema(inputs: 2...2),
    "MatMul": OperatorSchema(inputs: 2...2),
    "Gemm": OperatorSchema(inputs: 2...3, attributes: ["alpha", "beta", "transA", "transB"]),
    "Gather": OperatorSchema(inputs: 2...2, attributes: ["axis"]),
    "Shape": OperatorSchema(inputs: 1...1, attributes: ["start", "end"]),
    "Range": OperatorSchema(inputs: 3...3),
    "Cast": OperatorSchema(inputs: 1...1, attributes: ["to"]),
    "Unsqueeze": OperatorSchema(inputs: 2...2),
    "Reshape": OperatorSchema(inputs: 2...2, attributes: ["allowzero"]),
    "Transpose": OperatorSchema(inputs: 1...1, attributes: ["perm"]),
    "Flatten": OperatorSchema(inputs: 1...1, attributes: ["axis"]),
    "Softmax": OperatorSchema(inputs: 1...1, attributes: ["axis"]),
    "LayerNormalization": OperatorSchema(
      inputs: 2...3, attributes: ["axis", "epsilon", "stash_type"]),
    "Erf": OperatorSchema(inputs: 1...1),
    "Tanh": OperatorSchema(inputs: 1...1),
    "Relu": OperatorSchema(inputs: 1...1),
    "Conv": OperatorSchema(
      inputs: 2...3,
      attributes: ["auto_pad", "dilations", "group", "kernel_shape", "pads", "strides"]),
    "BatchNormalization": OperatorSchema(
      inputs: 5...5, attributes: ["epsilon", "momentum", "training_mode"]),
    "MaxPool": OperatorSchema(
      inputs: 1...1,
      attributes: [
        "auto_pad", "ceil_mode", "dilations", "kernel_shape", "pads", "storage_order", "strides",
      ]),
    "AveragePool": OperatorSchema(
      inputs: 1...1,
      attributes: ["auto_pad", "ceil_mode", "count_include_pad", "kernel_shape", "pads", "strides"]
    ),
    "GlobalAveragePool": OperatorSchema(inputs: 1...1),
  ]

  /// Checks what a runtime would otherwise reject at load: every node's operator is one the
  /// exporter supports, with a known attribute set and input count; every input is defined
  /// before it is used (graph inputs, initializers, earlier outputs); every value is produced
  /// once; every graph output is produced.
  public func validate() throws(ONNXExportError) {
    var defined = Set(inputs.map(\.name))
    for tensor in initializers {
      guard defined.insert(tensor.name).inserted else {
        throw ONNXExportError(
          node: nil, problem: "the value '\(tensor.name)' is defined twice",
          fix: "give every initializer and input a distinct name")
      }
    }
    var names = Set<String>()
    for node in nodes {
      guard names.insert(node.name).inserted else {
        throw ONNXExportError(
          node: node.name, problem: "two nodes share this name", fix: "name every node once")
      }
      guard let schema = Self.operators[node.operatorType] else {
        let known = Self.operators.keys.sorted().joined(separator: ", ")
        throw ONNXExportError(
          node: node.name,
          problem: "the exporter has no '\(node.operatorType)' operator (opset 17, default domain)",
          fix: "express the layer with the supported operators (\(known))")
      }
      guard schema.inputs.contains(node.inputs.count), node.outputs.count == schema.outputs else {
        throw ONNXExportError(
          node: node.name,
          problem:
            "\(node.operatorType) takes \(schema.inputs.lowerBound)–\(schema.inputs.upperBound) inputs and \(schema.outputs) output, not \(node.inputs.count) and \(node.outputs.count)",
          fix: "pass the operator's inputs in opset 17's order")
      }
      if let unknown = node.attributes.first(where: { !schema.attributes.contains($0.name) }) {
        throw ONNXExportError(
          node: node.name,
          problem: "\(node.operatorType) has no attribute '\(unknown.name)' in opset 17",
          fix: "use the attributes \(schema.attributes.sorted().joined(separator: ", "))")
      }
      for input in node.inputs where !input.isEmpty && !defined.contains(input) {
        throw ONNXExportError(
          node: node.name, problem: "input '\(input)' is used before any node produces it",
          fix: "add the nodes in execution order")
      }
      for output in node.outputs {
        guard defined.insert(output).inserted else {
          throw ONNXExportError(
            node: node.name, problem: "output '\(output)' is already defined",
            fix: "give every value one producer")
        }
      }
    }
    for output in outputs where !defined.contains(output.name) {
      throw ONNXExportError(
        node: nil, problem: "graph output '\(output.name)' is produced by no node",
        fix: "connect the output to the node that computes it")
    }
  }
}
