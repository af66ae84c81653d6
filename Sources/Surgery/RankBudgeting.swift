import Manifest
import Models
import Tensor

/// Per-node ranks from one parameter budget (a lora rule's `budget:`).
///
/// Every node starts at the floor rank; then, one rank at a time, the node whose next singular
/// direction brings the most energy per parameter (`σ²_{r+1} / ‖W‖²_F` over the parameters one
/// more rank costs) gets it, while the factors still fit the budget. Energy is normalised per
/// node, so a layer with large weights does not win by scale alone.
public enum RankBudgeting {
  /// One wrapped node's part in the allocation.
  public struct Node: Sendable, Equatable {
    public var name: String
    /// Squared singular values of `W` (viewed `out × fanIn`), largest first.
    public var energies: [Double]
    /// Parameters one more rank costs: `fanIn + out`.
    public var costPerRank: Int
    /// Parameters the node keeps whatever its rank (`C`).
    public var fixedCost: Int
    /// The node's original `W` and `b`.
    public var baseParameters: Int
    /// The largest rank the node may get (the rule's `rank`, below `min(fanIn, out)`).
    public var cap: Int

    public init(
      name: String, energies: [Double], costPerRank: Int, fixedCost: Int, baseParameters: Int,
      cap: Int
    ) {
      self.name = name
      self.energies = energies
      self.costPerRank = costPerRank
      self.fixedCost = fixedCost
      self.baseParameters = baseParameters
      self.cap = cap
    }
  }

  /// Ranks by node name; `share` of the nodes' base parameters is the budget for the factors
  /// and `C`. The floor is kept even when it alone exceeds the budget (`overBudget` then).
  public static func allocate(_ nodes: [Node], share: Double, floor: Int) -> (
    ranks: [String: Int], spent: Int, capacity: Int, overBudget: Bool
  ) {
    let capacity = Int(share * Double(nodes.reduce(0) { $0 + $1.baseParameters }))
    var ranks = nodes.map { min(floor, $0.cap) }
    var spent = zip(nodes, ranks).reduce(0) { $0 + $1.0.fixedCost + $1.1 * $1.0.costPerRank }
    let overBudget = spent > capacity
    let totals = nodes.map { max($0.energies.reduce(0, +), .leastNonzeroMagnitude) }
    while true {
      var best: (index: Int, gain: Double)?
      for (index, node) in nodes.enumerated() {
        let rank = ranks[index]
        guard rank < node.cap, rank < node.energies.count,
          spent + node.costPerRank <= capacity
        else { continue }
        let gain = node.energies[rank] / totals[index] / Double(node.costPerRank)
        if best == nil || gain > best!.gain { best = (index, gain) }
      }
      guard let best else { break }
      ranks[best.index] += 1
      spent += nodes[best.index].costPerRank
    }
    return (
      Dictionary(uniqueKeysWithValues: zip(nodes.map(\.name), ranks)), spent, capacity, overBudget
    )
  }

  /// The largest rank a budget gives a node: below `min(fanIn, out)`, and small enough that the
  /// factors are smaller than W.
  static func largestRank(fanIn: Int, out: Int) -> Int {
    min(min(fanIn, out) - 1, (fanIn * out - 1) / (fanIn + out))
  }

  /// The allocation's input for the wrappable nodes named in `names`, read from `model`'s
  /// weights (`W` viewed `out × fanIn`; all of its singular values), or, for `budget.by:
  /// whitened`, from `whitenings`: each rank then removes `S²_{r+1}` of output error on the
  /// calibration inputs, normalised by the node's output variance (`Σ S²`) so layers compare.
  static func nodes(
    _ names: Set<String>, in model: Model, cap: Int, keepsBias: Bool,
    whitenings: [String: Whitening]? = nil
  ) throws(SVDError) -> [Node] {
    var result: [Node] = []
    var failure: SVDError?
    func add(name: String, weight: Tensor, fanIn: Int, bias: Int) {
      guard names.contains(name), failure == nil else { return }
      let out = weight.shape[0]
      let matrix = weight.reshaped([out, fanIn])
      let k = min(out, fanIn)
      let energies: [Double]
      if let whitenings {
        guard let whitening = whitenings[name] else { return }
        energies = whitening.decomposition.singularValues.map { $0 * $0 }
      } else {
        do {
          energies = try matrix.truncatedSVD(rank: k).singularValues.map {
            Double($0) * Double($0)
          }
        } catch {
          failure = error
          return
        }
      }
      result.append(
        Node(
          name: name, energies: energies, costPerRank: fanIn + out,
          fixedCost: keepsBias ? out : 0, baseParameters: weight.count + bias,
          // Below min(fanIn, out), and small enough that the factors are smaller than W.
          cap: min(cap, largestRank(fanIn: fanIn, out: out))))
    }
    var copy = model
    copy.visitWrappable(
      linear: { layer in
        add(
          name: layer.name, weight: layer.weight, fanIn: layer.inFeatures,
          bias: layer.bias?.count ?? 0)
      },
      convolution: { layer in
        let (kh, kw) = layer.kernelSize
        add(
          name: layer.name, weight: layer.weight,
          fanIn: layer.inChannels / layer.groups * kh * kw, bias: layer.bias?.count ?? 0)
      })
    if let failure { throw failure }
    return result
  }
}
