import Distributed
import Models
import Surgery
import Tensor

extension Batch {
  /// The examples at `rows` (positions in this batch), padded as the whole batch is, so every
  /// rank's share has the whole batch's sequence length.
  public func rows(_ rows: Range<Int>) -> Batch {
    switch self {
    case .text(let batch):
      let length = batch.length
      func cut(_ values: [Int32]) -> [Int32] {
        Array(values[(rows.lowerBound * length)..<(rows.upperBound * length)])
      }
      return .text(
        TextBatch(
          batchSize: rows.count, length: length, inputIDs: cut(batch.inputIDs),
          attentionMask: cut(batch.attentionMask), tokenTypeIDs: cut(batch.tokenTypeIDs),
          labels: batch.labels.map { Array($0[rows]) }))
    case .images(let pixels, let labels):
      let perImage = pixels.count / Swift.max(1, pixels.shape[0])
      let shape = [rows.count] + pixels.shape.dropFirst()
      let part = pixels.withUnsafeBufferPointer { values in
        Tensor(shape: shape, copying: values.baseAddress! + rows.lowerBound * perImage)
      }
      return .images(pixels: part, labels: labels.map { Array($0[rows]) })
    }
  }
}

extension Trainer {
  /// The running statistics that are averaged over ranks (the batch counter is the same on all).
  static func averagedStatistics(_ model: Model) -> [(String, Tensor)] {
    model.runningStatistics.filter { !$0.key.hasSuffix(".num_batches_tracked") }
      .sorted { $0.key < $1.key }
  }

  /// Values summed over the ranks per step: the trainable tensors' gradients (for LoRA only the
  /// adapters and whatever else the manifest trains), batch-norm running statistics, the loss.
  public var reducedValuesPerStep: Int {
    let trained = plan.trainableSet
    let gradients = plan.model.namedParameters.filter { trained.contains($0.0) }
      .reduce(0) { $0 + $1.1.count }
    let statistics = Self.averagedStatistics(plan.model).reduce(0) { $0 + $1.1.count }
    return gradients + statistics + 1
  }

  /// One `MPI_Allreduce` of every rank's share (weighted by its share of the batch): the global
  /// mean loss, the global gradients, and running statistics averaged over the shares.
  func reduce(
    loss: Float, gradients: GradientSet, weight: Float, plan candidate: inout TrainingPlan
  )
    throws -> (Float, GradientSet)
  {
    let names = plan.trainable.filter { gradients[$0] != nil }
    let statistics = Self.averagedStatistics(candidate.model)
    let tensors = names.map { gradients[$0]! } + statistics.map(\.1)
    var buffer = [Float]()
    buffer.reserveCapacity(tensors.reduce(1) { $0 + $1.count })
    for tensor in tensors {
      tensor.withUnsafeBufferPointer { values in
        for value in values { buffer.append(value * weight) }
      }
    }
    buffer.append(loss * weight)
    try group.allreduceSum(&buffer)
    var reduced = GradientSet(trainable: gradients.trainable)
    var offset = 0
    var averaged: [String: Tensor] = [:]
    buffer.withUnsafeBufferPointer { values in
      for (index, tensor) in tensors.enumerated() {
        let sum = Tensor(shape: tensor.shape, copying: values.baseAddress! + offset)
        offset += tensor.count
        if index < names.count {
          reduced.accumulate(names[index], sum)
        } else {
          averaged[statistics[index - names.count].0] = sum
        }
      }
    }
    if !averaged.isEmpty { candidate.setRunningStatistics(averaged) }
    return (buffer[offset], reduced)
  }
}
