import CBLAS
import CDNNL
import Synchronization

#if canImport(Glibc)
  import Glibc
#endif

/// Where the matrices of a `samples × heads` grid lie: element `(i, j)` of matrix `(s, h)` is at
/// `s·sample + h·head + i·row + j·column` floats from the base pointer.
///
/// A transposed operand is the same memory with `row` and `column` swapped, so attention's
/// heads are read in place from `[samples·length, hidden]` activations, without copies.
public struct MatrixGrid: Hashable, Sendable {
  public var sample: Int
  public var head: Int
  public var row: Int
  public var column: Int

  public init(sample: Int, head: Int, row: Int, column: Int) {
    (self.sample, self.head, self.row, self.column) = (sample, head, row, column)
  }

  /// The same matrices, transposed.
  public var transposed: MatrixGrid {
    MatrixGrid(sample: sample, head: head, row: column, column: row)
  }
}

/// Many small GEMMs of one shape in one call: `C[s, h] = alpha · A[s, h] · B[s, h]` for every
/// sample `s` and head `h` (`A` is `m × k`, `B` is `k × n`, `C` is `m × n`, overwritten).
///
/// Attention makes `samples · heads` GEMMs of 64 × 64 × 32 per product (13,824 per MiniLM training
/// step); one `cblas_sgemm` each spends much of its time packing operands and in call overhead.
/// Here each of `OneDNN.batchParts` fixed sample ranges is one single-threaded oneDNN matmul over
/// all its matrices, with the strides above (no copies). The ranges are fixed, never a function of
/// the thread count, and each matrix is computed by the same kernel in any range, so the bits do
/// not depend on the thread count.
public enum BatchedGEMM {
  public static func multiply(
    samples: Int, heads: Int, m: Int, n: Int, k: Int, alpha: Float = 1,
    a: UnsafePointer<Float>, _ aGrid: MatrixGrid, b: UnsafePointer<Float>, _ bGrid: MatrixGrid,
    c: UnsafeMutablePointer<Float>, _ cGrid: MatrixGrid
  ) {
    if samples == 0 || heads == 0 || m == 0 || n == 0 { return }
    if let recorder = GEMMRecorder.active {
      // Recorded as the per-matrix GEMMs they replace, so a replay through `cblas_sgemm` alone
      // times the same arithmetic.
      let call = GEMMCall(
        transposeA: aGrid.column != 1, transposeB: bGrid.column != 1, m: m, n: n, k: k, beta: 0)
      for _ in 0..<(samples * heads) { recorder.record(call) }
    }
    let parts = Swift.max(1, Swift.min(OneDNN.batchParts, samples))
    let shape = Shape(
      samples: 0, heads: heads, m: m, n: n, k: k, alpha: alpha.bitPattern, a: aGrid, b: bGrid,
      c: cGrid)
    Parallel.forEachChunk(parts, grain: 1) { chunk in
      for part in chunk {
        let range = (part * samples / parts)..<((part + 1) * samples / parts)
        var partShape = shape
        partShape.samples = range.count
        let (aPart, bPart, cPart) = (
          a + range.lowerBound * aGrid.sample, b + range.lowerBound * bGrid.sample,
          c + range.lowerBound * cGrid.sample
        )
        if let primitive = MatmulPrimitive.cached(partShape) {
          primitive.execute(a: aPart, b: bPart, c: cPart)
        } else {
          perMatrix(partShape, a: aPart, b: bPart, c: cPart)
        }
      }
    }
  }

  /// The oneDNN implementation the first sample range runs on (e.g. `gemm:jit`); nil when the
  /// shape falls back to one `cblas_sgemm` per matrix.
  static func implementation(
    samples: Int, heads: Int, m: Int, n: Int, k: Int, alpha: Float = 1, a: MatrixGrid,
    b: MatrixGrid, c: MatrixGrid
  ) -> String? {
    let parts = Swift.max(1, Swift.min(OneDNN.batchParts, samples))
    let shape = Shape(
      samples: samples / parts, heads: heads, m: m, n: n, k: k, alpha: alpha.bitPattern, a: a,
      b: b, c: c)
    return MatmulPrimitive.cached(shape)?.implementation
  }

  /// One `cblas_sgemm` per matrix: where oneDNN has no matmul for the shape.
  private static func perMatrix(
    _ shape: Shape, a: UnsafePointer<Float>, b: UnsafePointer<Float>,
    c: UnsafeMutablePointer<Float>
  ) {
    precondition(
      shape.c.column == 1 && (shape.a.column == 1 || shape.a.row == 1)
        && (shape.b.column == 1 || shape.b.row == 1),
      "BatchedGEMM: every matrix needs unit stride along its rows or its columns")
    let (transposeA, transposeB) = (shape.a.column != 1, shape.b.column != 1)
    let alpha = Float(bitPattern: shape.alpha)
    for s in 0..<shape.samples {
      for h in 0..<shape.heads {
        cblas_sgemm(
          CblasRowMajor, transposeA ? CblasTrans : CblasNoTrans,
          transposeB ? CblasTrans : CblasNoTrans, Int32(shape.m), Int32(shape.n), Int32(shape.k),
          alpha, a + s * shape.a.sample + h * shape.a.head,
          Int32(transposeA ? shape.a.column : shape.a.row),
          b + s * shape.b.sample + h * shape.b.head,
          Int32(transposeB ? shape.b.column : shape.b.row), 0,
          c + s * shape.c.sample + h * shape.c.head, Int32(shape.c.row))
      }
    }
  }

  /// Everything a matmul primitive is specialised for.
  struct Shape: Hashable {
    var samples: Int
    var heads: Int
    var m: Int
    var n: Int
    var k: Int
    var alpha: UInt32
    var a: MatrixGrid
    var b: MatrixGrid
    var c: MatrixGrid
  }
}

/// A oneDNN matmul over a `samples × heads` grid of matrices, created once per shape.
private final class MatmulPrimitive: @unchecked Sendable {
  let primitive: dnnl_primitive_t
  let descriptor: dnnl_primitive_desc_t
  /// The plain strided descriptors of A, B and C (oneDNN takes them as given).
  let a: dnnl_memory_desc_t
  let b: dnnl_memory_desc_t
  let c: dnnl_memory_desc_t
  let scratchpad: dnnl_memory_desc_t

  var implementation: String { implementationName(of: descriptor) }

  private static let cache = Mutex<[BatchedGEMM.Shape: MatmulPrimitive?]>([:])

  static func cached(_ shape: BatchedGEMM.Shape) -> MatmulPrimitive? {
    // oneDNN splits a primitive's work among the threads OpenMP offers when it is created: one.
    Engine.shared.singleThreaded()
    if let cached = cache.withLock({ $0[shape] }) { return cached }
    let created = MatmulPrimitive(shape)
    cache.withLock { $0[shape] = created }
    return created
  }

  private init?(_ shape: BatchedGEMM.Shape) {
    func descriptor(_ rows: Int, _ columns: Int, _ grid: MatrixGrid) -> dnnl_memory_desc_t? {
      var result = dnnl_memory_desc_t()
      let dims = [shape.samples, shape.heads, rows, columns].map(Int64.init)
      let strides = [grid.sample, grid.head, grid.row, grid.column].map(Int64.init)
      guard dnnl_memory_desc_init_by_strides(&result, 4, dims, dnnl_f32, strides) == dnnl_success
      else { return nil }
      return result
    }
    guard var a = descriptor(shape.m, shape.k, shape.a),
      var b = descriptor(shape.k, shape.n, shape.b),
      var c = descriptor(shape.m, shape.n, shape.c)
    else { return nil }
    var description = dnnl_matmul_desc_t()
    guard dnnl_matmul_desc_init(&description, &a, &b, nil, &c) == dnnl_success else { return nil }
    var attributes: dnnl_primitive_attr_t?
    guard dnnl_primitive_attr_create(&attributes) == dnnl_success, let attributes else {
      return nil
    }
    defer { dnnl_primitive_attr_destroy(attributes) }
    // The scratchpad is passed on each call, so one primitive can run on several threads at once.
    guard
      dnnl_primitive_attr_set_scratchpad_mode(attributes, dnnl_scratchpad_mode_user)
        == dnnl_success
    else { return nil }
    var alpha = Float(bitPattern: shape.alpha)
    if alpha != 1 {
      guard dnnl_primitive_attr_set_output_scales(attributes, 1, 0, &alpha) == dnnl_success else {
        return nil
      }
    }
    var chosen: dnnl_primitive_desc_t?
    guard
      dnnl_primitive_desc_create(&chosen, &description, attributes, Engine.shared.engine, nil)
        == dnnl_success, let chosen
    else { return nil }
    var primitive: dnnl_primitive_t?
    guard dnnl_primitive_create(&primitive, chosen) == dnnl_success, let primitive else {
      dnnl_primitive_desc_destroy(chosen)
      return nil
    }
    (self.primitive, self.descriptor) = (primitive, chosen)
    (self.a, self.b, self.c) = (a, b, c)
    scratchpad =
      dnnl_primitive_desc_query_md(chosen, dnnl_query_scratchpad_md, 0)?.pointee
      ?? dnnl_memory_desc_t()
  }

  deinit {
    dnnl_primitive_destroy(primitive)
    dnnl_primitive_desc_destroy(descriptor)
  }

  func execute(a: UnsafePointer<Float>, b: UnsafePointer<Float>, c: UnsafeMutablePointer<Float>) {
    let shared = Engine.shared
    shared.singleThreaded()
    let stream = shared.makeStream()
    var memories: [dnnl_memory_t] = []
    var scratch: UnsafeMutableRawPointer?
    defer {
      for memory in memories { dnnl_memory_destroy(memory) }
      free(scratch)
      dnnl_stream_destroy(stream)
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
    var arguments = [
      dnnl_exec_arg_t(
        arg: DNNL_ARG_SRC_0, memory: memory(self.a, UnsafeMutableRawPointer(mutating: a))),
      dnnl_exec_arg_t(
        arg: DNNL_ARG_WEIGHTS_0, memory: memory(self.b, UnsafeMutableRawPointer(mutating: b))),
      dnnl_exec_arg_t(arg: DNNL_ARG_DST_0, memory: memory(self.c, UnsafeMutableRawPointer(c))),
    ]
    var scratchDescription = scratchpad
    let bytes = Int(dnnl_memory_desc_get_size(&scratchDescription))
    if bytes > 0 {
      guard posix_memalign(&scratch, 64, bytes) == 0, let scratch else {
        preconditionFailure("oneDNN: out of memory allocating \(bytes) bytes")
      }
      arguments.append(
        dnnl_exec_arg_t(arg: DNNL_ARG_SCRATCHPAD, memory: memory(scratchpad, scratch)))
    }
    precondition(
      dnnl_primitive_execute(primitive, stream, Int32(arguments.count), arguments) == dnnl_success,
      "oneDNN: matmul failed")
    precondition(dnnl_stream_wait(stream) == dnnl_success, "oneDNN: stream wait failed")
  }
}
