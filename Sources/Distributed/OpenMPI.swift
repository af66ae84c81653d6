import Foundation

/// Open MPI, loaded at run time with `dlopen` (no MPI header or library is needed to build
/// surgeon). Open MPI's predefined handles (`MPI_COMM_WORLD`, `MPI_FLOAT`, `MPI_SUM`, ...) are
/// the addresses of global symbols (`ompi_mpi_comm_world`, ...), so `dlsym` yields them too.
public final class OpenMPI: ProcessGroup, @unchecked Sendable {
  // The C signatures of mpi.h (Open MPI 4/5); handles are pointers.
  private typealias InitFunction =
    @convention(c) (UnsafeMutableRawPointer?, UnsafeMutableRawPointer?) -> Int32
  private typealias CommIntFunction =
    @convention(c) (UnsafeMutableRawPointer, UnsafeMutablePointer<Int32>) -> Int32
  private typealias AllreduceFunction =
    @convention(c) (
      UnsafeRawPointer?, UnsafeMutableRawPointer?, Int32, UnsafeMutableRawPointer,
      UnsafeMutableRawPointer, UnsafeMutableRawPointer
    ) -> Int32
  private typealias CommFunction = @convention(c) (UnsafeMutableRawPointer) -> Int32
  private typealias AbortFunction = @convention(c) (UnsafeMutableRawPointer, Int32) -> Int32
  private typealias FlagFunction = @convention(c) (UnsafeMutablePointer<Int32>) -> Int32
  private typealias VoidFunction = @convention(c) () -> Int32

  public let rank: Int
  public let size: Int
  public let label: String
  private let allreduce: AllreduceFunction
  private let barrierFunction: CommFunction
  private let finalizeFunction: VoidFunction
  private let abortFunction: AbortFunction
  private let world: UnsafeMutableRawPointer
  private let float: UnsafeMutableRawPointer
  private let double: UnsafeMutableRawPointer
  private let sum: UnsafeMutableRawPointer
  private var finalized = false

  /// The library names tried in order; `SURGEON_LIBMPI` (a name or a path) alone when set.
  public static var libraryNames: [String] {
    if let name = ProcessInfo.processInfo.environment["SURGEON_LIBMPI"] { return [name] }
    return ["libmpi.so.40", "libmpi.so"]
  }

  /// True when this process was started by an MPI launcher (`mpirun`, `mpiexec`, `srun`).
  public static var launchedByMPI: Bool {
    let environment = ProcessInfo.processInfo.environment
    return ["OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_RANK", "PMI_SIZE"].contains {
      environment[$0] != nil
    }
  }

  /// Loads libmpi, calls `MPI_Init` and reads the rank and size of `MPI_COMM_WORLD`.
  public init() throws(DistributedError) {
    var handle: UnsafeMutableRawPointer?
    var failures: [String] = []
    var loaded = ""
    for name in Self.libraryNames {
      handle = dlopen(name, RTLD_NOW | RTLD_GLOBAL)
      if handle != nil {
        loaded = "Open MPI (\(name))"
        break
      }
      failures.append(dlerror().map { String(cString: $0) } ?? name)
    }
    let label = loaded
    guard let handle else {
      throw DistributedError(
        "launched by mpirun but libmpi cannot be loaded (\(failures.joined(separator: "; "))); install Open MPI (Debian: apt-get install openmpi-bin libopenmpi-dev) or set SURGEON_LIBMPI to the library's path"
      )
    }
    func symbol(_ name: String) throws(DistributedError) -> UnsafeMutableRawPointer {
      guard let address = dlsym(handle, name) else {
        throw DistributedError(
          "\(label) lacks '\(name)'; surgeon needs Open MPI (MPICH's handles are integers, not symbols)"
        )
      }
      return address
    }
    func function<T>(_ name: String, as type: T.Type) throws(DistributedError) -> T {
      unsafeBitCast(try symbol(name), to: type)
    }
    self.label = label
    let initialize = try function("MPI_Init", as: InitFunction.self)
    let initialized = try function("MPI_Initialized", as: FlagFunction.self)
    let commRank = try function("MPI_Comm_rank", as: CommIntFunction.self)
    let commSize = try function("MPI_Comm_size", as: CommIntFunction.self)
    allreduce = try function("MPI_Allreduce", as: AllreduceFunction.self)
    barrierFunction = try function("MPI_Barrier", as: CommFunction.self)
    finalizeFunction = try function("MPI_Finalize", as: VoidFunction.self)
    abortFunction = try function("MPI_Abort", as: AbortFunction.self)
    world = try symbol("ompi_mpi_comm_world")
    float = try symbol("ompi_mpi_float")
    double = try symbol("ompi_mpi_double")
    sum = try symbol("ompi_mpi_op_sum")
    var flag: Int32 = 0
    _ = initialized(&flag)
    if flag == 0 {
      let status = initialize(nil, nil)
      guard status == 0 else { throw DistributedError("MPI_Init failed (error \(status))") }
    }
    var value: Int32 = 0
    guard commRank(world, &value) == 0 else { throw DistributedError("MPI_Comm_rank failed") }
    rank = Int(value)
    guard commSize(world, &value) == 0 else { throw DistributedError("MPI_Comm_size failed") }
    size = Int(value)
  }

  /// `MPI_Allreduce(MPI_IN_PLACE, ...)` in pieces of at most 2^30 elements (`count` is an int).
  private func reduce(
    _ base: UnsafeMutableRawPointer?, count: Int, elementSize: Int,
    type: UnsafeMutableRawPointer
  ) throws(DistributedError) {
    let inPlace = UnsafeRawPointer(bitPattern: 1)
    var start = 0
    while start < count {
      let piece = min(count - start, 1 << 30)
      let status = allreduce(inPlace, base! + start * elementSize, Int32(piece), type, sum, world)
      guard status == 0 else { throw DistributedError("MPI_Allreduce failed (error \(status))") }
      start += piece
    }
  }

  public func allreduceSum(_ values: inout [Float]) throws(DistributedError) {
    let count = values.count
    let float = self.float
    var failure: DistributedError?
    values.withUnsafeMutableBytes { bytes in
      do throws(DistributedError) {
        try reduce(bytes.baseAddress, count: count, elementSize: 4, type: float)
      } catch { failure = error }
    }
    if let failure { throw failure }
  }

  public func allreduceSum(_ values: inout [Double]) throws(DistributedError) {
    let count = values.count
    let double = self.double
    var failure: DistributedError?
    values.withUnsafeMutableBytes { bytes in
      do throws(DistributedError) {
        try reduce(bytes.baseAddress, count: count, elementSize: 8, type: double)
      } catch { failure = error }
    }
    if let failure { throw failure }
  }

  public func barrier() throws(DistributedError) {
    let status = barrierFunction(world)
    guard status == 0 else { throw DistributedError("MPI_Barrier failed (error \(status))") }
  }

  public func finalize() {
    guard !finalized else { return }
    finalized = true
    _ = finalizeFunction()
  }

  public func abort(_ code: Int32) -> Never {
    _ = abortFunction(world, code)
    exit(code)
  }
}

/// The group this process belongs to: Open MPI when started by an MPI launcher, else one
/// process. Under a launcher a libmpi that cannot be loaded is an error, never a silent
/// fallback (N single processes would each train and write the same outputs).
public func joinProcessGroup() throws(DistributedError) -> any ProcessGroup {
  guard OpenMPI.launchedByMPI else { return SingleProcess() }
  return try OpenMPI()
}
