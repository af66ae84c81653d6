import Foundation

/// The processes of one data-parallel run: this process's rank among `size`, and the collective
/// operations training needs. One process alone is the group of size 1 whose operations do
/// nothing, so the trainer has a single code path.
public protocol ProcessGroup: AnyObject, Sendable {
  /// This process's index, `0..<size`; rank 0 alone writes outputs.
  var rank: Int { get }
  var size: Int { get }
  /// What runs the group, for the log ("one process", "Open MPI (libmpi.so.40)").
  var label: String { get }
  /// Replaces `values` on every rank with the element-wise sum over all ranks.
  func allreduceSum(_ values: inout [Float]) throws(DistributedError)
  func allreduceSum(_ values: inout [Double]) throws(DistributedError)
  /// Returns once every rank has called it.
  func barrier() throws(DistributedError)
  /// Ends the group normally (every rank must call it).
  func finalize()
  /// Ends every rank of the group now with `code` (one rank failed; the others would wait).
  func abort(_ code: Int32) -> Never
}

extension ProcessGroup {
  public var isPrimary: Bool { rank == 0 }

  /// The contiguous part of `0..<count` this rank handles: the first `count % size` ranks take
  /// one more element than the others, so uneven splits differ by at most one.
  public func share(of count: Int) -> Range<Int> {
    Self.share(of: count, rank: rank, size: size)
  }

  public static func share(of count: Int, rank: Int, size: Int) -> Range<Int> {
    let base = count / size
    let extra = count % size
    let start = rank * base + min(rank, extra)
    return start..<(start + base + (rank < extra ? 1 : 0))
  }
}

/// A failed collective operation or an MPI library that cannot be used.
public struct DistributedError: Error, CustomStringConvertible, Sendable {
  public var description: String
  public init(_ description: String) { self.description = description }
}

/// The group of one process (no MPI): every collective is the identity.
public final class SingleProcess: ProcessGroup {
  public init() {}
  public var rank: Int { 0 }
  public var size: Int { 1 }
  public var label: String { "one process" }
  public func allreduceSum(_ values: inout [Float]) {}
  public func allreduceSum(_ values: inout [Double]) {}
  public func barrier() {}
  public func finalize() {}
  public func abort(_ code: Int32) -> Never { exit(code) }
}
