import Models
import Tensor

/// Builds an `ONNXGraph` node by node: each node's output is named after the node, constants
/// are shared initializers, and layers lower to the operators `ONNXGraph.operators` lists.
struct GraphBuilder {
  var graph: ONNXGraph
  private var nodeNames = Set<String>()
  private var constants: [String: String] = [:]

  init(name: String) {
    graph = ONNXGraph(name: name)
  }

  /// A weight as an initializer named after its checkpoint tensor.
  mutating func initializer(_ name: String, _ tensor: Tensor, dimensions: [Int]? = nil) -> String {
    graph.initializers.append(ONNXTensor(name: name, tensor, dimensions: dimensions))
    return name
  }

  /// `out × in` stored `in × out`, the right operand of a MatMul (`<name>.T`).
  mutating func transposed(_ name: String, _ matrix: Tensor) -> String {
    let (rows, columns) = (matrix.shape[0], matrix.shape.dropFirst().reduce(1, *))
    var result = Tensor(uninitialized: [columns, rows])
    matrix.withUnsafeBufferPointer { source in
      result.withUnsafeMutableBufferPointer { target in
        for row in 0..<rows {
          for column in 0..<columns { target[column * rows + row] = source[row * columns + column] }
        }
      }
    }
    return initializer(name + ".T", result)
  }

  /// A float scalar, shared by every node that uses the same value.
  mutating func scalar(_ value: Float, name: String? = nil) -> String {
    if let name { return initializer(name, Tensor(shape: [], scalars: [value])) }
    let key = "f\(value.bitPattern)"
    if let existing = constants[key] { return existing }
    let created = initializer("constant.\(value)", Tensor(shape: [], scalars: [value]))
    constants[key] = created
    return created
  }

  /// An int64 constant (indices, shapes, axes), shared by equal values.
  mutating func integers(_ values: [Int64], dimensions: [Int]) -> String {
    let key = "i\(dimensions)\(values)"
    if let existing = constants[key] { return existing }
    let name = "constant.int64." + values.map(String.init).joined(separator: "_")
    graph.initializers.append(ONNXTensor(name: name, integers: values, dimensions: dimensions))
    constants[key] = name
    return name
  }

  /// Adds a node whose output is named `output` (default: the node's own name, made unique).
  @discardableResult
  mutating func node(
    _ operatorType: String, _ inputs: [String], name: String, output: String? = nil,
    attributes: [ONNXAttribute] = []
  ) -> String {
    var unique = name
    var counter = 1
    while nodeNames.contains(unique) {
      unique = "\(name)_\(counter)"
      counter += 1
    }
    nodeNames.insert(unique)
    let result = output ?? unique
    graph.nodes.append(
      ONNXNode(
        name: unique, operatorType: operatorType, inputs: inputs, outputs: [result],
        attributes: attributes))
    return result
  }

  // MARK: Layers

  /// A Linear on `[rows…, in]`: `Gemm` on 2-D inputs (the weight as stored, `transB`), else
  /// `MatMul` on the transposed weight and `Add`. Wrapped, the frozen path `d·(W x + b)` (absent
  /// at d = 0) plus `s·B·A x` plus `C`; exported, just the two factors' MatMuls and `C`.
  mutating func linear(_ layer: Linear, _ x: String, inputRank: Int, output: String? = nil)
    -> String
  {
    let n = layer.name
    guard let adapter = layer.adapter else {
      return frozenLinear(layer, x, inputRank: inputRank, decay: 1, output: output)
    }
    // Noise is a training-time perturbation: the exported graph is the evaluation forward.
    let frozen =
      adapter.decay == 0
      ? nil : frozenLinear(layer, x, inputRank: inputRank, decay: adapter.decay, output: nil)
    let hidden = node(
      "MatMul", [x, transposed(adapter.downName, adapter.down)], name: n + "/down/MatMul")
    let lastIsUp = frozen == nil && adapter.scale == 1 && adapter.bias == nil
    var y = node(
      "MatMul", [hidden, transposed(adapter.upName, adapter.up)], name: n + "/up/MatMul",
      output: lastIsUp ? output : nil)
    if adapter.scale != 1 {
      let last = frozen == nil && adapter.bias == nil
      y = node(
        "Mul", [y, scalar(adapter.scale, name: n + ".scale")], name: n + "/scale/Mul",
        output: last ? output : nil)
    }
    if let frozen {
      y = node(
        "Add", [frozen, y], name: n + "/adapter/Add", output: adapter.bias == nil ? output : nil)
    }
    if let c = adapter.bias {
      y = node("Add", [y, initializer(adapter.biasName, c)], name: n + "/C/Add", output: output)
    }
    return y
  }

  /// `d·(x Wᵀ + b)`.
  private mutating func frozenLinear(
    _ layer: Linear, _ x: String, inputRank: Int, decay: Float, output: String?
  ) -> String {
    let n = layer.name
    if inputRank == 2 {
      var inputs = [x, initializer(layer.weightName, layer.weight)]
      if let bias = layer.bias { inputs.append(initializer(layer.biasName, bias)) }
      var attributes: [ONNXAttribute] = [.int("transB", 1)]
      if decay != 1 { attributes += [.float("alpha", decay), .float("beta", decay)] }
      return node("Gemm", inputs, name: n + "/Gemm", output: output, attributes: attributes)
    }
    let last = layer.bias == nil && decay == 1
    var y = node(
      "MatMul", [x, transposed(layer.weightName, layer.weight)], name: n + "/MatMul",
      output: last ? output : nil)
    if let bias = layer.bias {
      y = node(
        "Add", [y, initializer(layer.biasName, bias)], name: n + "/Add",
        output: decay == 1 ? output : nil)
    }
    if decay != 1 {
      y = node(
        "Mul", [y, scalar(decay, name: n + ".decay")], name: n + "/decay/Mul", output: output)
    }
    return y
  }

  /// `Conv` attributes; ONNX orders pads as all the starts, then all the ends.
  private func convolutionAttributes(
    kernel: (Int, Int), stride: (Int, Int) = (1, 1), padding: Padding2D = Padding2D(0),
    dilation: (Int, Int) = (1, 1), groups: Int = 1
  ) -> [ONNXAttribute] {
    [
      .ints("kernel_shape", [kernel.0, kernel.1]), .ints("strides", [stride.0, stride.1]),
      .ints("pads", [padding.top, padding.left, padding.bottom, padding.right]),
      .ints("dilations", [dilation.0, dilation.1]), .int("group", groups),
    ]
  }

  /// A Conv2d: `Conv`; wrapped lowrank, the frozen `d·conv(x; W, b)` plus a k×k conv `in → r`
  /// then a 1×1 conv `r → out` (scaled by `s`) plus `C`; wrapped loralib, one conv on the
  /// kernel `d·W + s·reshape(B·A)` with bias `d·b + C`, built from the factors in the graph.
  mutating func convolution(_ layer: Conv2d, _ x: String) -> String {
    let n = layer.name
    let attributes = convolutionAttributes(
      kernel: layer.kernelSize, stride: layer.stride, padding: layer.padding,
      dilation: layer.dilation, groups: layer.groups)
    guard let adapter = layer.adapter else {
      var inputs = [x, initializer(layer.weightName, layer.weight)]
      if let bias = layer.bias { inputs.append(initializer(layer.biasName, bias)) }
      return node("Conv", inputs, name: n + "/Conv", attributes: attributes)
    }
    let decay = adapter.decay
    if adapter.convForm == .loralib && !adapter.isExported {
      let product = node(
        "MatMul",
        [initializer(adapter.upName, adapter.up), initializer(adapter.downName, adapter.down)],
        name: n + "/BA/MatMul")
      var kernel = node(
        "Reshape", [product, integers(layer.weight.shape.map { Int64($0) }, dimensions: [4])],
        name: n + "/BA/Reshape")
      if adapter.scale != 1 {
        kernel = node(
          "Mul", [kernel, scalar(adapter.scale, name: n + ".scale")], name: n + "/scale/Mul")
      }
      let decayName = decay != 0 && decay != 1 ? scalar(decay, name: n + ".decay") : nil
      if decay != 0 {
        var frozen = initializer(layer.weightName, layer.weight)
        if let decayName { frozen = node("Mul", [frozen, decayName], name: n + "/decay/Mul") }
        kernel = node("Add", [frozen, kernel], name: n + "/kernel/Add")
      }
      var bias: String?
      if decay != 0, let b = layer.bias {
        bias = initializer(layer.biasName, b)
        if let decayName { bias = node("Mul", [bias!, decayName], name: n + "/bias/decay/Mul") }
      }
      if let c = adapter.bias {
        let cName = initializer(adapter.biasName, c)
        bias = bias.map { node("Add", [$0, cName], name: n + "/bias/Add") } ?? cName
      }
      return node(
        "Conv", [x, kernel] + (bias.map { [$0] } ?? []), name: n + "/Conv", attributes: attributes)
    }
    var frozen: String?
    if decay != 0 {
      var inputs = [x, initializer(layer.weightName, layer.weight)]
      if let bias = layer.bias { inputs.append(initializer(layer.biasName, bias)) }
      frozen = node("Conv", inputs, name: n + "/Conv", attributes: attributes)
      if decay != 1 {
        frozen = node("Mul", [frozen!, scalar(decay, name: n + ".decay")], name: n + "/decay/Mul")
      }
    }
    let (kh, kw) = layer.kernelSize
    let down = initializer(
      adapter.downName, adapter.down,
      dimensions: [adapter.rank, layer.inChannels / layer.groups, kh, kw])
    let hidden = node("Conv", [x, down], name: n + "/down/Conv", attributes: attributes)
    let up = initializer(
      adapter.upName, adapter.up, dimensions: [layer.outChannels, adapter.rank, 1, 1])
    let pointwise = convolutionAttributes(kernel: (1, 1))
    // The W-free layer: C is the 1×1 conv's bias.
    if frozen == nil && adapter.scale == 1, let c = adapter.bias {
      return node(
        "Conv", [hidden, up, initializer(adapter.biasName, c)], name: n + "/up/Conv",
        attributes: pointwise)
    }
    var y = node("Conv", [hidden, up], name: n + "/up/Conv", attributes: pointwise)
    if adapter.scale != 1 {
      y = node("Mul", [y, scalar(adapter.scale, name: n + ".scale")], name: n + "/scale/Mul")
    }
    if let frozen { y = node("Add", [frozen, y], name: n + "/adapter/Add") }
    if let c = adapter.bias {
      let channels = initializer(adapter.biasName, c, dimensions: [layer.outChannels, 1, 1])
      y = node("Add", [y, channels], name: n + "/C/Add")
    }
    return y
  }
}
