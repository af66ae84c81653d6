import CDNNL
import Synchronization

#if canImport(Glibc)
  import Glibc
#endif

/// The geometry of one 2-D convolution: everything a oneDNN primitive is specialised for.
public struct ConvolutionGeometry: Hashable, Sendable {
  public var batch: Int
  public var inChannels: Int
  public var outChannels: Int
  public var height: Int
  public var width: Int
  public var kernelHeight: Int
  public var kernelWidth: Int
  public var strideHeight: Int
  public var strideWidth: Int
  public var padTop: Int
  public var padBottom: Int
  public var padLeft: Int
  public var padRight: Int
  public var dilationHeight: Int
  public var dilationWidth: Int
  public var groups: Int

  public init(
    batch: Int, inChannels: Int, outChannels: Int, height: Int, width: Int, kernel: (Int, Int),
    stride: (Int, Int), padding: (top: Int, bottom: Int, left: Int, right: Int),
    dilation: (Int, Int), groups: Int
  ) {
    (self.batch, self.inChannels, self.outChannels) = (batch, inChannels, outChannels)
    (self.height, self.width) = (height, width)
    (kernelHeight, kernelWidth) = kernel
    (strideHeight, strideWidth) = stride
    (padTop, padBottom, padLeft, padRight) = padding
    (dilationHeight, dilationWidth) = dilation
    self.groups = groups
  }

  public var outHeight: Int {
    (height + padTop + padBottom - dilationHeight * (kernelHeight - 1) - 1) / strideHeight + 1
  }
  public var outWidth: Int {
    (width + padLeft + padRight - dilationWidth * (kernelWidth - 1) - 1) / strideWidth + 1
  }
  /// Floats per sample of the input and of the output, and in the weights.
  var inputSize: Int { inChannels * height * width }
  var outputSize: Int { outChannels * outHeight * outWidth }
  var weightCount: Int { outChannels * (inChannels / groups) * kernelHeight * kernelWidth }
}

/// Convolutions on oneDNN (the library PyTorch's CPU convolutions run on; it picks kernels by the
/// CPU's features at run time).
///
/// Callers pass plain PyTorch layouts (`N×C×H×W` activations, `out × in/groups × kh × kw`
/// weights); each primitive is created with the layouts left to oneDNN (`any`), so it computes in
/// the blocked layout it prefers, and the reorders between the two are created with it. All of
/// that is built once per geometry and kept, so a training step only executes.
public enum OneDNN {
  /// The three passes of a convolution.
  public enum Pass: Hashable, Sendable {
    case forward
    case backwardData
    case backwardWeights
  }

  /// The fixed sample ranges a batch is split into, run in parallel on surgeon's threads with
  /// one single-threaded primitive each (OpenMP's own pool would contend with surgeon's for the
  /// same cores). Fixed, so the bits do not depend on the thread count: weight gradients are
  /// summed over the parts in order.
  public static let batchParts = 4

  /// `output = conv(input, weights)` (overwritten).
  public static func forward(
    _ g: ConvolutionGeometry, input: UnsafePointer<Float>, weights: UnsafePointer<Float>,
    output: UnsafeMutablePointer<Float>
  ) {
    let (inputSize, outputSize) = (g.inputSize, g.outputSize)
    let prepared = prepareWeights(g, .forward, weights)
    forEachPart(g) { part, samples, _ in
      run(
        part, .forward, inputs: [input + samples.lowerBound * inputSize, weights],
        output: output + samples.lowerBound * outputSize, prepared: prepared)
    }
  }

  /// `inputGradient = conv_transpose(outputGradient, weights)` (overwritten).
  public static func backwardData(
    _ g: ConvolutionGeometry, outputGradient: UnsafePointer<Float>,
    weights: UnsafePointer<Float>, inputGradient: UnsafeMutablePointer<Float>
  ) {
    let (inputSize, outputSize) = (g.inputSize, g.outputSize)
    let prepared = prepareWeights(g, .backwardData, weights)
    forEachPart(g) { part, samples, _ in
      run(
        part, .backwardData,
        inputs: [outputGradient + samples.lowerBound * outputSize, weights],
        output: inputGradient + samples.lowerBound * inputSize, prepared: prepared)
    }
  }

  /// `weightGradient = Σ_n` of each sample's weight gradient (overwritten).
  public static func backwardWeights(
    _ g: ConvolutionGeometry, input: UnsafePointer<Float>, outputGradient: UnsafePointer<Float>,
    weightGradient: UnsafeMutablePointer<Float>
  ) {
    let parts = Swift.max(1, Swift.min(batchParts, g.batch))
    let count = g.weightCount
    let partials = UnsafeMutablePointer<Float>.allocate(capacity: parts * count)
    defer { partials.deallocate() }
    let (inputSize, outputSize) = (g.inputSize, g.outputSize)
    forEachPart(g) { part, samples, index in
      run(
        part, .backwardWeights,
        inputs: [
          input + samples.lowerBound * inputSize,
          outputGradient + samples.lowerBound * outputSize,
        ],
        output: partials + index * count)
    }
    weightGradient.update(from: partials, count: count)
    for part in 1..<parts {
      let partial = partials + part * count
      for i in 0..<count { weightGradient[i] += partial[i] }
    }
  }

  /// Whether oneDNN has primitives for every pass of this geometry (creating and caching them).
  public static func supports(_ g: ConvolutionGeometry) -> Bool {
    var supported = true
    forEachPartGeometry(g) { part in
      for pass in [Pass.forward, .backwardData, .backwardWeights] {
        supported = supported && primitive(part, pass) != nil
      }
    }
    return supported
  }

  /// The implementation oneDNN chose for the first part of the batch (e.g. `jit:avx2`).
  public static func implementation(_ g: ConvolutionGeometry, _ pass: Pass) -> String? {
    var first = g
    first.batch = (g.batch + batchParts - 1) / batchParts
    return primitive(first, pass)?.implementation
  }

  /// The geometry of each part, sized by `batchParts` fixed sample ranges.
  private static func forEachPartGeometry(
    _ g: ConvolutionGeometry, _ body: (ConvolutionGeometry) -> Void
  ) {
    let parts = Swift.max(1, Swift.min(batchParts, g.batch))
    for part in 0..<parts {
      var geometry = g
      geometry.batch = (part + 1) * g.batch / parts - part * g.batch / parts
      body(geometry)
    }
  }

  /// Calls `body(partGeometry, samples, index)` for each fixed sample range, in parallel.
  private static func forEachPart(
    _ g: ConvolutionGeometry, _ body: (ConvolutionGeometry, Range<Int>, Int) -> Void
  ) {
    let parts = Swift.max(1, Swift.min(batchParts, g.batch))
    Parallel.forEachChunk(parts, grain: 1) { chunk in
      for part in chunk {
        let samples = (part * g.batch / parts)..<((part + 1) * g.batch / parts)
        var geometry = g
        geometry.batch = samples.count
        body(geometry, samples, part)
      }
    }
  }

  private static func run(
    _ g: ConvolutionGeometry, _ pass: Pass, inputs: [UnsafePointer<Float>],
    output: UnsafeMutablePointer<Float>, prepared: PreparedWeights? = nil
  ) {
    guard let primitive = primitive(g, pass) else {
      preconditionFailure("oneDNN has no \(pass) convolution for \(g); check supports() first")
    }
    primitive.execute(inputs: inputs, output: output, prepared: prepared)
  }

  /// The weights reordered once per call into the layout the parts compute in, instead of once
  /// per part (nil when the primitives take the plain layout).
  private static func prepareWeights(
    _ g: ConvolutionGeometry, _ pass: Pass, _ weights: UnsafePointer<Float>
  ) -> PreparedWeights? {
    guard Swift.min(batchParts, g.batch) > 1 else { return nil }
    var first = g
    first.batch = g.batch / Swift.min(batchParts, g.batch)
    return primitive(first, pass)?.reorderedWeights(weights)
  }

  private static let cache = Mutex<[Key: ConvolutionPrimitive?]>([:])

  private struct Key: Hashable {
    var geometry: ConvolutionGeometry
    var pass: Pass
  }

  private static func primitive(_ g: ConvolutionGeometry, _ pass: Pass) -> ConvolutionPrimitive? {
    let key = Key(geometry: g, pass: pass)
    // oneDNN splits a primitive's work among the threads OpenMP offers when it is created: one.
    Engine.shared.singleThreaded()
    if let cached = cache.withLock({ $0[key] }) { return cached }
    let created = ConvolutionPrimitive(g, pass)
    cache.withLock { $0[key] = created }
    return created
  }
}

/// The CPU engine, created once.
final class Engine: @unchecked Sendable {
  static let shared = Engine()
  let engine: dnnl_engine_t
  /// libgomp's `omp_set_num_threads` (oneDNN's OpenMP runtime), looked up at run time because
  /// libgomp is only an indirect dependency.
  private let setThreadCount: (@convention(c) (Int32) -> Void)?

  private init() {
    var engine: dnnl_engine_t?
    guard dnnl_engine_create(&engine, dnnl_cpu, 0) == dnnl_success, let engine else {
      preconditionFailure("oneDNN: no CPU engine")
    }
    self.engine = engine
    let symbol = dlsym(nil, "omp_set_num_threads")
    setThreadCount = symbol.map { unsafeBitCast($0, to: (@convention(c) (Int32) -> Void).self) }
  }

  /// Makes OpenMP offer the calling thread no helpers (its thread count is per thread).
  func singleThreaded() { setThreadCount?(1) }

  /// A stream for one call: primitives run concurrently on surgeon's threads, each on its own.
  func makeStream() -> dnnl_stream_t {
    var stream: dnnl_stream_t?
    guard
      dnnl_stream_create(&stream, engine, UInt32(dnnl_stream_default_flags.rawValue))
        == dnnl_success, let stream
    else { preconditionFailure("oneDNN: no CPU stream") }
    return stream
  }
}

/// One argument of a primitive: the plain layout the caller holds, the layout oneDNN computes
/// in, and the reorder between them when they differ.
private struct Port {
  var argument: Int32
  var user: dnnl_memory_desc_t
  var chosen: dnnl_memory_desc_t
  var reorder: dnnl_primitive_t?
  var bytes: Int
  var reorderScratchpad = dnnl_memory_desc_t()
}

/// A primitive's scratchpad (zero bytes when it needs none).
private func scratchpadDescriptor(_ descriptor: dnnl_primitive_desc_t) -> dnnl_memory_desc_t {
  dnnl_primitive_desc_query_md(descriptor, dnnl_query_scratchpad_md, 0)?.pointee
    ?? dnnl_memory_desc_t()
}

/// Weights already in a primitive's layout, shared by the parts of one call.
private final class PreparedWeights {
  let descriptor: dnnl_memory_desc_t
  let buffer: UnsafeMutableRawPointer

  init(descriptor: dnnl_memory_desc_t, buffer: UnsafeMutableRawPointer) {
    self.descriptor = descriptor
    self.buffer = buffer
  }

  deinit { free(buffer) }
}

/// The name of the implementation oneDNN chose for a primitive (e.g. `jit:avx2`, `gemm:jit`).
func implementationName(of descriptor: dnnl_primitive_desc_t) -> String {
  var text: UnsafePointer<CChar>?
  guard
    dnnl_primitive_desc_query(descriptor, dnnl_query_impl_info_str, 0, &text) == dnnl_success,
    let text
  else { return "unknown" }
  return String(cString: text)
}

/// A convolution primitive with its reorders, for one geometry and pass.
private final class ConvolutionPrimitive: @unchecked Sendable {
  let primitive: dnnl_primitive_t
  let descriptor: dnnl_primitive_desc_t
  /// The read-only arguments, then the one written.
  let inputs: [Port]
  let output: Port
  let scratchpad: dnnl_memory_desc_t

  var implementation: String { implementationName(of: descriptor) }

  init?(_ g: ConvolutionGeometry, _ pass: OneDNN.Pass) {
    let engine = Engine.shared.engine
    // The scratchpad is passed on each call, so one primitive can run on several threads at once.
    var attributes: dnnl_primitive_attr_t?
    guard dnnl_primitive_attr_create(&attributes) == dnnl_success, let attributes,
      dnnl_primitive_attr_set_scratchpad_mode(attributes, dnnl_scratchpad_mode_user)
        == dnnl_success
    else { return nil }
    defer { dnnl_primitive_attr_destroy(attributes) }
    let n = Int64(g.batch)
    let source = Self.descriptor([n, Int64(g.inChannels), Int64(g.height), Int64(g.width)])
    let destination = Self.descriptor(
      [n, Int64(g.outChannels), Int64(g.outHeight), Int64(g.outWidth)])
    let weights: (user: dnnl_memory_desc_t, any: dnnl_memory_desc_t)
    let (kh, kw) = (Int64(g.kernelHeight), Int64(g.kernelWidth))
    if g.groups == 1 {
      weights = Self.descriptor([Int64(g.outChannels), Int64(g.inChannels), kh, kw])
    } else {
      let groups = Int64(g.groups)
      weights = Self.descriptor([
        groups, Int64(g.outChannels) / groups, Int64(g.inChannels) / groups, kh, kw,
      ])
    }
    let strides: [Int64] = [Int64(g.strideHeight), Int64(g.strideWidth)]
    // oneDNN counts dilation from 0 (no gaps), PyTorch from 1.
    let dilates: [Int64] = [Int64(g.dilationHeight - 1), Int64(g.dilationWidth - 1)]
    let low: [Int64] = [Int64(g.padTop), Int64(g.padLeft)]
    let high: [Int64] = [Int64(g.padBottom), Int64(g.padRight)]

    // Every pass is created against the forward descriptor (oneDNN's hint for backward).
    var forwardDescription = dnnl_convolution_desc_t()
    var (src, wei, dst) = (source.any, weights.any, destination.any)
    guard
      dnnl_dilated_convolution_forward_desc_init(
        &forwardDescription, dnnl_forward_training, dnnl_convolution_direct, &src, &wei, nil,
        &dst, strides, dilates, low, high) == dnnl_success
    else { return nil }
    var forward: dnnl_primitive_desc_t?
    guard
      dnnl_primitive_desc_create(&forward, &forwardDescription, attributes, engine, nil)
        == dnnl_success,
      let forward
    else { return nil }
    var chosen: dnnl_primitive_desc_t?
    switch pass {
    case .forward:
      chosen = forward
    case .backwardData:
      var description = dnnl_convolution_desc_t()
      guard
        dnnl_dilated_convolution_backward_data_desc_init(
          &description, dnnl_convolution_direct, &src, &wei, &dst, strides, dilates, low, high)
          == dnnl_success,
        dnnl_primitive_desc_create(&chosen, &description, attributes, engine, forward)
          == dnnl_success
      else {
        dnnl_primitive_desc_destroy(forward)
        return nil
      }
    case .backwardWeights:
      var description = dnnl_convolution_desc_t()
      guard
        dnnl_dilated_convolution_backward_weights_desc_init(
          &description, dnnl_convolution_direct, &src, &wei, nil, &dst, strides, dilates, low,
          high) == dnnl_success,
        dnnl_primitive_desc_create(&chosen, &description, attributes, engine, forward)
          == dnnl_success
      else {
        dnnl_primitive_desc_destroy(forward)
        return nil
      }
    }
    if pass != .forward { dnnl_primitive_desc_destroy(forward) }
    guard let chosen else { return nil }
    var primitive: dnnl_primitive_t?
    guard dnnl_primitive_create(&primitive, chosen) == dnnl_success, let primitive else {
      dnnl_primitive_desc_destroy(chosen)
      return nil
    }
    self.primitive = primitive
    descriptor = chosen

    func port(_ argument: Int32, _ query: dnnl_query_t, _ user: dnnl_memory_desc_t, output: Bool)
      -> Port?
    {
      guard let picked = dnnl_primitive_desc_query_md(chosen, query, 0)?.pointee else {
        return nil
      }
      var result = Port(
        argument: argument, user: user, chosen: picked, reorder: nil,
        bytes: Int(dnnl_memory_desc_get_size([picked])))
      var (userCopy, pickedCopy) = (user, picked)
      if dnnl_memory_desc_equal(&userCopy, &pickedCopy) == 0 {
        var description: dnnl_primitive_desc_t?
        let status =
          output
          ? dnnl_reorder_primitive_desc_create(
            &description, &pickedCopy, engine, &userCopy, engine, attributes)
          : dnnl_reorder_primitive_desc_create(
            &description, &userCopy, engine, &pickedCopy, engine, attributes)
        guard status == dnnl_success, let description else { return nil }
        defer { dnnl_primitive_desc_destroy(description) }
        result.reorderScratchpad = scratchpadDescriptor(description)
        var reorder: dnnl_primitive_t?
        guard dnnl_primitive_create(&reorder, description) == dnnl_success else { return nil }
        result.reorder = reorder
      }
      return result
    }
    let ports: [Port?]
    switch pass {
    case .forward:
      ports = [
        port(DNNL_ARG_SRC_0, dnnl_query_src_md, source.user, output: false),
        port(DNNL_ARG_WEIGHTS_0, dnnl_query_weights_md, weights.user, output: false),
        port(DNNL_ARG_DST_0, dnnl_query_dst_md, destination.user, output: true),
      ]
    case .backwardData:
      ports = [
        port(DNNL_ARG_DIFF_DST_0, dnnl_query_diff_dst_md, destination.user, output: false),
        port(DNNL_ARG_WEIGHTS_0, dnnl_query_weights_md, weights.user, output: false),
        port(DNNL_ARG_DIFF_SRC_0, dnnl_query_diff_src_md, source.user, output: true),
      ]
    case .backwardWeights:
      ports = [
        port(DNNL_ARG_SRC_0, dnnl_query_src_md, source.user, output: false),
        port(DNNL_ARG_DIFF_DST_0, dnnl_query_diff_dst_md, destination.user, output: false),
        port(
          DNNL_ARG_DIFF_WEIGHTS_0, dnnl_query_diff_weights_md, weights.user, output: true),
      ]
    }
    guard ports.allSatisfy({ $0 != nil }) else {
      for case let port? in ports {
        if let reorder = port.reorder { dnnl_primitive_destroy(reorder) }
      }
      dnnl_primitive_destroy(primitive)
      dnnl_primitive_desc_destroy(chosen)
      return nil
    }
    inputs = [ports[0]!, ports[1]!]
    output = ports[2]!
    scratchpad = scratchpadDescriptor(chosen)
  }

  deinit {
    for port in inputs + [output] {
      if let reorder = port.reorder { dnnl_primitive_destroy(reorder) }
    }
    dnnl_primitive_destroy(primitive)
    dnnl_primitive_desc_destroy(descriptor)
  }

  /// A plain (`user`) descriptor and one that leaves the layout to oneDNN (`any`).
  private static func descriptor(_ dims: [Int64]) -> (
    user: dnnl_memory_desc_t, any: dnnl_memory_desc_t
  ) {
    var user = dnnl_memory_desc_t()
    var any = dnnl_memory_desc_t()
    // Row-major with the channel (or group) dimension outermost after batch: exactly the
    // PyTorch layouts, so plain tensors are passed without copies.
    let plain: dnnl_format_tag_t =
      switch dims.count {
      case 4: dnnl_abcd
      default: dnnl_abcde
      }
    let rank = Int32(dims.count)
    guard dnnl_memory_desc_init_by_tag(&user, rank, dims, dnnl_f32, plain) == dnnl_success,
      dnnl_memory_desc_init_by_tag(&any, rank, dims, dnnl_f32, dnnl_format_tag_any)
        == dnnl_success
    else { preconditionFailure("oneDNN: bad dimensions \(dims)") }
    return (user, any)
  }

  /// Forward and backward-data primitives take the weights as their second input.
  static let weightsInput = 1

  /// `weights` in this primitive's layout, when that is not the plain one.
  func reorderedWeights(_ weights: UnsafePointer<Float>) -> PreparedWeights? {
    let port = inputs[Self.weightsInput]
    guard port.reorder != nil else { return nil }
    var buffer: UnsafeMutableRawPointer?
    guard posix_memalign(&buffer, 64, Swift.max(port.bytes, 64)) == 0, let buffer else {
      preconditionFailure("oneDNN: out of memory allocating \(port.bytes) bytes")
    }
    let prepared = PreparedWeights(descriptor: port.chosen, buffer: buffer)
    runReorder(port, from: UnsafeMutableRawPointer(mutating: weights), to: buffer)
    return prepared
  }

  /// Reorders one input from the plain layout into `target`.
  private func runReorder(
    _ port: Port, from source: UnsafeMutableRawPointer, to target: UnsafeMutableRawPointer
  ) {
    let shared = Engine.shared
    shared.singleThreaded()
    let stream = shared.makeStream()
    defer { dnnl_stream_destroy(stream) }
    var (user, chosen) = (port.user, port.chosen)
    var from: dnnl_memory_t?
    var to: dnnl_memory_t?
    guard dnnl_memory_create(&from, &user, shared.engine, source) == dnnl_success,
      dnnl_memory_create(&to, &chosen, shared.engine, target) == dnnl_success
    else { preconditionFailure("oneDNN: memory_create failed") }
    defer {
      dnnl_memory_destroy(from)
      dnnl_memory_destroy(to)
    }
    var scratchpad = port.reorderScratchpad
    let bytes = Int(dnnl_memory_desc_get_size(&scratchpad))
    var buffer: UnsafeMutableRawPointer?
    var scratch: dnnl_memory_t?
    if bytes > 0 {
      guard posix_memalign(&buffer, 64, bytes) == 0,
        dnnl_memory_create(&scratch, &scratchpad, shared.engine, buffer) == dnnl_success
      else { preconditionFailure("oneDNN: out of memory allocating \(bytes) bytes") }
    }
    defer {
      if let scratch { dnnl_memory_destroy(scratch) }
      free(buffer)
    }
    var arguments = [
      dnnl_exec_arg_t(arg: DNNL_ARG_SRC_0, memory: from),
      dnnl_exec_arg_t(arg: DNNL_ARG_DST_0, memory: to),
    ]
    if let scratch { arguments.append(dnnl_exec_arg_t(arg: DNNL_ARG_SCRATCHPAD, memory: scratch)) }
    check(
      dnnl_primitive_execute(port.reorder!, stream, Int32(arguments.count), arguments), "reorder")
    check(dnnl_stream_wait(stream), "stream wait")
  }

  func execute(
    inputs pointers: [UnsafePointer<Float>], output pointer: UnsafeMutablePointer<Float>,
    prepared: PreparedWeights?
  ) {
    let shared = Engine.shared
    shared.singleThreaded()
    let stream = shared.makeStream()
    defer { dnnl_stream_destroy(stream) }
    var memories: [dnnl_memory_t] = []
    var buffers: [UnsafeMutableRawPointer] = []
    defer {
      for memory in memories { dnnl_memory_destroy(memory) }
      for buffer in buffers { free(buffer) }
    }
    func memory(_ description: dnnl_memory_desc_t, _ handle: UnsafeMutableRawPointer)
      -> dnnl_memory_t
    {
      var description = description
      var memory: dnnl_memory_t?
      guard dnnl_memory_create(&memory, &description, shared.engine, handle) == dnnl_success,
        let memory
      else { preconditionFailure("oneDNN: memory_create failed") }
      memories.append(memory)
      return memory
    }
    func scratch(_ bytes: Int) -> UnsafeMutableRawPointer {
      var buffer: UnsafeMutableRawPointer?
      guard posix_memalign(&buffer, 64, Swift.max(bytes, 64)) == 0, let buffer else {
        preconditionFailure("oneDNN: out of memory allocating \(bytes) bytes")
      }
      buffers.append(buffer)
      return buffer
    }
    /// The scratchpad argument, when the primitive needs one.
    func scratchpadArgument(_ description: dnnl_memory_desc_t) -> [dnnl_exec_arg_t] {
      var description = description
      let bytes = Int(dnnl_memory_desc_get_size(&description))
      guard bytes > 0 else { return [] }
      return [
        dnnl_exec_arg_t(arg: DNNL_ARG_SCRATCHPAD, memory: memory(description, scratch(bytes)))
      ]
    }
    func reorder(_ port: Port, from: dnnl_memory_t, to: dnnl_memory_t) {
      let arguments =
        [
          dnnl_exec_arg_t(arg: DNNL_ARG_SRC_0, memory: from),
          dnnl_exec_arg_t(arg: DNNL_ARG_DST_0, memory: to),
        ] + scratchpadArgument(port.reorderScratchpad)
      check(
        dnnl_primitive_execute(port.reorder!, stream, Int32(arguments.count), arguments),
        "reorder")
    }
    var arguments: [dnnl_exec_arg_t] = []
    for (index, (port, pointer)) in zip(inputs, pointers).enumerated() {
      if index == Self.weightsInput, let prepared,
        withUnsafePointer(
          to: port.chosen,
          { chosen in
            withUnsafePointer(to: prepared.descriptor) { dnnl_memory_desc_equal(chosen, $0) != 0 }
          })
      {
        let weights = memory(prepared.descriptor, prepared.buffer)
        arguments.append(dnnl_exec_arg_t(arg: port.argument, memory: weights))
        continue
      }
      let user = memory(port.user, UnsafeMutableRawPointer(mutating: pointer))
      if port.reorder != nil {
        let chosen = memory(port.chosen, scratch(port.bytes))
        reorder(port, from: user, to: chosen)
        arguments.append(dnnl_exec_arg_t(arg: port.argument, memory: chosen))
      } else {
        arguments.append(dnnl_exec_arg_t(arg: port.argument, memory: user))
      }
    }
    let user = memory(output.user, UnsafeMutableRawPointer(pointer))
    let target = output.reorder == nil ? user : memory(output.chosen, scratch(output.bytes))
    arguments.append(dnnl_exec_arg_t(arg: output.argument, memory: target))
    arguments += scratchpadArgument(scratchpad)
    check(
      dnnl_primitive_execute(primitive, stream, Int32(arguments.count), arguments), "convolution")
    if output.reorder != nil { reorder(output, from: target, to: user) }
    check(dnnl_stream_wait(stream), "stream wait")
  }

  private func check(_ status: dnnl_status_t, _ what: String) {
    precondition(status == dnnl_success, "oneDNN: \(what) failed (status \(status.rawValue))")
  }
}
