import Manifest
import Surgery
import Tensor
import XCTest

/// What a whitened start leaves out: `Σ_{i>r} S_i² / Σ S_i²`, checked on a weight whose whitened
/// singular values are known by hand, and the run log's one-line summary of it.
final class WhitenedStartTests: XCTestCase {
  override func setUp() { BLAS.setThreadCount(1) }

  private func node(rank: Int, refitted: Bool = false) throws -> WhitenedNode {
    // W = diag(3, 2, 1) with Σ = I: W·L has singular values 3, 2, 1 (each scaled alike by the
    // ridge's √(1 + ε), which the ratio does not see).
    let weight = Tensor(shape: [3, 3], scalars: [3, 0, 0, 0, 2, 0, 0, 0, 1])
    let identity: [Double] = [1, 0, 0, 0, 1, 0, 0, 0, 1]
    let decomposition = try WhitenedSVD(weight: weight, covariance: identity)
    return WhitenedNode(
      whitening: Whitening(
        decomposition: decomposition, mean: [0, 0, 0], targetMean: refitted ? [0, 0, 0] : nil),
      rank: rank, refit: refitted ? .sequential : .none, batches: 4,
      location: SourceLocation(file: "m.yaml", line: 3, column: 5))
  }

  func testTheStartLeavesOutTheTailOfTheWhitenedSpectrum() throws {
    XCTAssertEqual(
      try XCTUnwrap(try node(rank: 1).calibrationOutputError), 5.0 / 14, accuracy: 1e-9)
    XCTAssertEqual(
      try XCTUnwrap(try node(rank: 2).calibrationOutputError), 1.0 / 14, accuracy: 1e-9)
    XCTAssertEqual(try XCTUnwrap(try node(rank: 3).calibrationOutputError), 0, accuracy: 1e-12)
    XCTAssertNil(try node(rank: 1, refitted: true).calibrationOutputError, "a refit's own errors")

    let summary = try XCTUnwrap(
      WhitenedNode.summary(of: [
        "b.value": try node(rank: 2), "a.query": try node(rank: 1),
        "c.key": try node(rank: 1, refitted: true),
      ]))
    XCTAssertEqual(
      summary,
      "whitened start: output error on the calibration inputs, relative to each node's output variance: mean 0.214 over 2 nodes; largest 0.357 at a.query (rank 1)"
    )
    XCTAssertNil(WhitenedNode.summary(of: ["c.key": try node(rank: 1, refitted: true)]))
  }
}
