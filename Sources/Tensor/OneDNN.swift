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

  /// `output = conv(input, weights)` (overwritten).
  public static func forward(
    _ g: ConvolutionGeometry, input: UnsafePointer<Float>, weights: UnsafePointer<Float>,
    output: UnsafeMutablePointer<Float>
  ) {
    run(g, .forward, inputs: [input, weights], output: output)
  }

  /// `inputGradient = conv_transpose(outputGradient, weights)` (overwritten).
  public static func backwardData(
    _ g: ConvolutionGeometry, outputGradient: UnsafePointer<Float>,
    weights: UnsafePointer<Float>, inputGradient: UnsafeMutablePointer<Float>
  ) {
    run(g, .backwardData, inputs: [outputGradient, weights], output: inputGradient)
  }

  /// `weightGradient = Σ_n` of each sample's weight gradient (overwritten).
  public static func backwardWeights(
    _ g: ConvolutionGeometry, input: UnsafePointer<Float>, outputGradient: UnsafePointer<Float>,
    weightGradient: UnsafeMutablePointer<Float>
  ) {
    run(g, .backwardWeights, inputs: [input, outputGradient], output: weightGradient)
  }

  /// Whether oneDNN has a primitive for this geometry and pass (creating and caching it).
  public static func supports(_ g: ConvolutionGeometry, _ pass: Pass) -> Bool {
    primitive(g, pass) != nil
  }

  /// The implementation oneDNN chose (e.g. `jit:avx2`), for logs and benchmarks.
  public static func implementation(_ g: ConvolutionGeometry, _ pass: Pass) -> String? {
    primitive(g, pass)?.implementation
  }

  private static func run(
    _ g: ConvolutionGeometry, _ pass: Pass, inputs: [UnsafePointer<Float>],
    output: UnsafeMutablePointer<Float>
  ) {
    guard let primitive = primitive(g, pass) else {
      preconditionFailure("oneDNN has no \(pass) convolution for \(g); check supports() first")
    }
    primitive.execute(inputs: inputs, output: output)
  }

  private static let cache = Mutex<[Key: ConvolutionPrimitive?]>([:])

  /// oneDNN splits the work among the threads OpenMP has when a primitive is created, so the
  /// thread count is part of the key.
  private struct Key: Hashable {
    var geometry: ConvolutionGeometry
    var pass: Pass
    var threads: Int
  }

  private static func primitive(_ g: ConvolutionGeometry, _ pass: Pass) -> ConvolutionPrimitive? {
    let key = Key(geometry: g, pass: pass, threads: Parallel.threadCount)
    Engine.shared.setThreadCount?(Int32(key.threads))
    if let cached = cache.withLock({ $0[key] }) { return cached }
    let created = ConvolutionPrimitive(g, pass)
    cache.withLock { $0[key] = created }
    return created
  }
}

/// The CPU engine and its stream, created once.
private final class Engine: @unchecked Sendable {
  static let shared = Engine()
  let engine: dnnl_engine_t
  let stream: dnnl_stream_t
  /// libgomp's `omp_set_num_threads` (oneDNN's OpenMP runtime), looked up at run time because
  /// libgomp is only an indirect dependency.
  let setThreadCount: (@convention(c) (Int32) -> Void)?

  private init() {
    var engine: dnnl_engine_t?
    var stream: dnnl_stream_t?
    guard dnnl_engine_create(&engine, dnnl_cpu, 0) == dnnl_success, let engine,
      dnnl_stream_create(&stream, engine, UInt32(dnnl_stream_default_flags.rawValue))
        == dnnl_success, let stream
    else { preconditionFailure("oneDNN: no CPU engine") }
    self.engine = engine
    self.stream = stream
    let symbol = dlsym(nil, "omp_set_num_threads")
    setThreadCount = symbol.map { unsafeBitCast($0, to: (@convention(c) (Int32) -> Void).self) }
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
}

/// A convolution primitive with its reorders, for one geometry and pass.
private final class ConvolutionPrimitive: @unchecked Sendable {
  let primitive: dnnl_primitive_t
  let descriptor: dnnl_primitive_desc_t
  /// The read-only arguments, then the one written.
  let inputs: [Port]
  let output: Port

  var implementation: String {
    var text: UnsafePointer<CChar>?
    guard
      dnnl_primitive_desc_query(descriptor, dnnl_query_impl_info_str, 0, &text)
        == dnnl_success, let text
    else { return "unknown" }
    return String(cString: text)
  }

  init?(_ g: ConvolutionGeometry, _ pass: OneDNN.Pass) {
    let engine = Engine.shared.engine
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
      dnnl_primitive_desc_create(&forward, &forwardDescription, nil, engine, nil) == dnnl_success,
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
        dnnl_primitive_desc_create(&chosen, &description, nil, engine, forward) == dnnl_success
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
        dnnl_primitive_desc_create(&chosen, &description, nil, engine, forward) == dnnl_success
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
            &description, &pickedCopy, engine, &userCopy, engine, nil)
          : dnnl_reorder_primitive_desc_create(
            &description, &userCopy, engine, &pickedCopy, engine, nil)
        guard status == dnnl_success, let description else { return nil }
        defer { dnnl_primitive_desc_destroy(description) }
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

  func execute(inputs pointers: [UnsafePointer<Float>], output pointer: UnsafeMutablePointer<Float>)
  {
    let shared = Engine.shared
    // OpenMP's thread count belongs to the calling thread: set it on every call, to surgeon's.
    shared.setThreadCount?(Int32(Parallel.threadCount))
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
    func reorder(_ primitive: dnnl_primitive_t, from: dnnl_memory_t, to: dnnl_memory_t) {
      let arguments = [
        dnnl_exec_arg_t(arg: DNNL_ARG_SRC_0, memory: from),
        dnnl_exec_arg_t(arg: DNNL_ARG_DST_0, memory: to),
      ]
      check(dnnl_primitive_execute(primitive, shared.stream, 2, arguments), "reorder")
    }
    var arguments: [dnnl_exec_arg_t] = []
    for (port, pointer) in zip(inputs, pointers) {
      let user = memory(port.user, UnsafeMutableRawPointer(mutating: pointer))
      if let primitive = port.reorder {
        let chosen = memory(port.chosen, scratch(port.bytes))
        reorder(primitive, from: user, to: chosen)
        arguments.append(dnnl_exec_arg_t(arg: port.argument, memory: chosen))
      } else {
        arguments.append(dnnl_exec_arg_t(arg: port.argument, memory: user))
      }
    }
    let user = memory(output.user, UnsafeMutableRawPointer(pointer))
    let target = output.reorder == nil ? user : memory(output.chosen, scratch(output.bytes))
    arguments.append(dnnl_exec_arg_t(arg: output.argument, memory: target))
    check(
      dnnl_primitive_execute(primitive, shared.stream, Int32(arguments.count), arguments),
      "convolution")
    if let primitive = output.reorder { reorder(primitive, from: target, to: user) }
    check(dnnl_stream_wait(shared.stream), "stream wait")
  }

  private func check(_ status: dnnl_status_t, _ what: String) {
    precondition(status == dnnl_success, "oneDNN: \(what) failed (status \(status.rawValue))")
  }
}
