import Tensor

#if canImport(Glibc)
  import Glibc
#elseif canImport(Darwin)
  import Darwin
#endif

/// Scaled dot-product attention over `heads` heads, with Hugging Face's padding mask: key
/// positions whose mask is 0 get `finfo(float32).min` added to their scores, so a row that masks
/// every key attends uniformly, as in PyTorch.
public struct MultiHeadAttention: Sendable {
  public var heads: Int
  public var dropout: Dropout

  public init(heads: Int, dropoutProbability: Float) {
    self.heads = heads
    dropout = Dropout(probability: dropoutProbability)
  }

  /// What backward needs: the projections, the probabilities and the dropout mask.
  public struct Cache: Sendable {
    public var query: Tensor
    public var key: Tensor
    public var value: Tensor
    public var probabilities: Tensor
    public var dropoutMask: Tensor?
    /// The pre-softmax scores `s·Q Kᵀ` (before the padding mask), `batch × heads × length ×
    /// length`; kept only when `forward` is asked to (attention distillation reads them).
    public var scores: Tensor? = nil
  }

  /// `query`, `key`, `value` are `[batch·length, hidden]` (heads side by side in `hidden`);
  /// `mask` is `batch × length` (1 attend, 0 padding). The result has the layout of `query`;
  /// with `keepsScores` the cache also holds the pre-softmax scores.
  public func forward(
    query: Tensor, key: Tensor, value: Tensor, mask: [Int32], batch: Int, length: Int,
    mode: ForwardMode, keepsScores: Bool = false, random: inout RandomStream
  ) -> (output: Tensor, cache: Cache) {
    let hidden = query.shape.last!
    let headSize = hidden / heads
    let scale = 1 / Float(headSize).squareRoot()
    let grids = Grids(heads: heads, length: length, hidden: hidden)
    // Every (sample, head) block is written by its GEMM.
    var scores = Tensor(uninitialized: [batch, heads, length, length])
    query.withUnsafeBufferPointer { q in
      key.withUnsafeBufferPointer { k in
        scores.withUnsafeMutableBufferPointer { s in
          BatchedGEMM.multiply(
            samples: batch, heads: heads, m: length, n: length, k: headSize, alpha: scale,
            a: q.baseAddress!, grids.heads, b: k.baseAddress!, grids.heads.transposed,
            c: s.baseAddress!, grids.scores)
        }
      }
    }
    // Sharing the buffer: the softmax below writes to a copy only when the scores are kept.
    let rawScores = keepsScores ? scores : nil
    scores.withUnsafeMutableBufferPointer { s in
      MultiHeadAttention.maskedSoftmax(
        s.baseAddress!, mask: mask, batch: batch, heads: heads, length: length)
    }
    let (dropped, dropoutMask) = dropout.forward(scores, mode: mode, random: &random)
    var output = Tensor(uninitialized: query.shape)
    dropped.withUnsafeBufferPointer { p in
      value.withUnsafeBufferPointer { v in
        output.withUnsafeMutableBufferPointer { out in
          BatchedGEMM.multiply(
            samples: batch, heads: heads, m: length, n: headSize, k: length,
            a: p.baseAddress!, grids.scores, b: v.baseAddress!, grids.heads,
            c: out.baseAddress!, grids.heads)
        }
      }
    }
    let cache = Cache(
      query: query, key: key, value: value, probabilities: scores, dropoutMask: dropoutMask,
      scores: rawScores)
    return (output, cache)
  }

  /// Softmax of each score row after the additive padding mask, in place.
  public static func maskedSoftmax(
    _ scores: UnsafeMutablePointer<Float>, mask: [Int32], batch: Int, heads: Int, length: Int
  ) {
    let maskValue = -Float.greatestFiniteMagnitude
    // Most samples have no padding: their rows skip the mask pass.
    let padded = (0..<batch).map { b in (0..<length).contains { mask[b * length + $0] == 0 } }
    let softmax = VectorKernelChoice.active.softmax
    mask.withUnsafeBufferPointer { maskBuffer in
      let keyMask = maskBuffer.baseAddress!
      Parallel.forEachChunk(batch * heads * length, grain: 64) { rows in
        for rowIndex in rows {
          let sample = rowIndex / (heads * length)
          let row = scores + rowIndex * length
          if padded[sample] {
            let keys = keyMask + sample * length
            for j in 0..<length where keys[j] == 0 { row[j] += maskValue }
          }
          softmax(row, length)
        }
      }
    }
  }

  /// The gradients of the query, key and value projections. `scoresGradient` (the shape of
  /// `Cache.scores`) is an extra gradient for the pre-softmax scores, e.g. an attention
  /// distillation term; nil: none.
  public func backward(
    cache: Cache, outputGradient: Tensor, batch: Int, length: Int, scoresGradient: Tensor? = nil
  ) -> (query: Tensor, key: Tensor, value: Tensor) {
    let hidden = cache.query.shape.last!
    let headSize = hidden / heads
    let scale = 1 / Float(headSize).squareRoot()
    let dropped: Tensor
    if let mask = cache.dropoutMask {
      var product = cache.probabilities
      product.multiply(by: mask)
      dropped = product
    } else {
      dropped = cache.probabilities
    }
    let grids = Grids(heads: heads, length: length, hidden: hidden)
    // Every element of these is written by one of the GEMMs below.
    var probabilityGradient = Tensor(uninitialized: cache.probabilities.shape)
    var queryGradient = Tensor(uninitialized: cache.query.shape)
    var keyGradient = Tensor(uninitialized: cache.key.shape)
    var valueGradient = Tensor(uninitialized: cache.value.shape)
    outputGradient.withUnsafeBufferPointer { dout in
      cache.value.withUnsafeBufferPointer { v in
        dropped.withUnsafeBufferPointer { p in
          probabilityGradient.withUnsafeMutableBufferPointer { dp in
            valueGradient.withUnsafeMutableBufferPointer { dv in
              // dP = dOut · Vᵀ
              BatchedGEMM.multiply(
                samples: batch, heads: heads, m: length, n: length, k: headSize,
                a: dout.baseAddress!, grids.heads, b: v.baseAddress!, grids.heads.transposed,
                c: dp.baseAddress!, grids.scores)
              // dV = Pᵀ · dOut
              BatchedGEMM.multiply(
                samples: batch, heads: heads, m: length, n: headSize, k: length,
                a: p.baseAddress!, grids.scores.transposed, b: dout.baseAddress!, grids.heads,
                c: dv.baseAddress!, grids.heads)
            }
          }
        }
      }
    }
    probabilityGradient = dropout.backward(
      mask: cache.dropoutMask, outputGradient: probabilityGradient)
    // Softmax backward in place: dS = P ⊙ (dP − Σ dP ⊙ P).
    cache.probabilities.withUnsafeBufferPointer { ps in
      probabilityGradient.withUnsafeMutableBufferPointer { ds in
        Parallel.forEachChunk(batch * heads * length, grain: 64) { rows in
          for row in rows {
            let p = ps.baseAddress! + row * length
            let d = ds.baseAddress! + row * length
            var dotProduct: Float = 0
            for j in 0..<length { dotProduct += d[j] * p[j] }
            for j in 0..<length { d[j] = p[j] * (d[j] - dotProduct) }
          }
        }
      }
    }
    // The padding mask is additive and constant: a score's gradient passes it unchanged.
    if let scoresGradient { probabilityGradient.add(scoresGradient) }
    probabilityGradient.withUnsafeBufferPointer { ds in
      cache.query.withUnsafeBufferPointer { q in
        cache.key.withUnsafeBufferPointer { k in
          queryGradient.withUnsafeMutableBufferPointer { dq in
            keyGradient.withUnsafeMutableBufferPointer { dk in
              // dQ = s · dS · K,  dK = s · dSᵀ · Q
              BatchedGEMM.multiply(
                samples: batch, heads: heads, m: length, n: headSize, k: length, alpha: scale,
                a: ds.baseAddress!, grids.scores, b: k.baseAddress!, grids.heads,
                c: dq.baseAddress!, grids.heads)
              BatchedGEMM.multiply(
                samples: batch, heads: heads, m: length, n: headSize, k: length, alpha: scale,
                a: ds.baseAddress!, grids.scores.transposed, b: q.baseAddress!, grids.heads,
                c: dk.baseAddress!, grids.heads)
            }
          }
        }
      }
    }
    return (queryGradient, keyGradient, valueGradient)
  }

  /// Where each (sample, head) matrix lies: a head of `[batch·length, hidden]` activations is a
  /// `length × headSize` block at column `head · headSize`; scores are dense `length × length`.
  struct Grids {
    let heads: MatrixGrid
    let scores: MatrixGrid

    init(heads count: Int, length: Int, hidden: Int) {
      heads = MatrixGrid(sample: length * hidden, head: hidden / count, row: hidden, column: 1)
      scores = MatrixGrid(
        sample: count * length * length, head: length * length, row: length, column: 1)
    }
  }
}
