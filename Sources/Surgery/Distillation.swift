import Foundation
import Models
import Tensor

/// Knowledge distillation from a teacher (PC-LoRA's recipe, deepened as in TinyBERT): the
/// student's loss is
///
///     (1 − α)·CE + α·T²·KL(softmax(z_t/T) ‖ softmax(z_s/T)) + β·mean((h_s − h_t)²)
///       + η·mean_ℓ[mean((H_s,ℓ − H_t,ℓ)²) / var(H_t,ℓ)] + γ·mean((A_s − A_t)²)
///
/// with `h` the last hidden states (BERT: every token's; VGG: the feature map the classifier
/// reads), `H_ℓ` every layer's hidden states (BERT: the embedding output and each block's
/// output, non-padding tokens only; VGG: each stage's feature map) and `A` every block's
/// pre-softmax attention scores on pairs of non-padding tokens (BERT only). The teacher runs in
/// evaluation mode and is never trained.
public struct Distillation: Sendable {
  public var teacher: Model
  public var temperature: Float
  /// α.
  public var logitsWeight: Float
  /// β.
  public var featuresWeight: Float
  /// η: every layer's hidden states, each normalised by the teacher's variance there.
  public var hiddenStatesWeight: Float
  /// γ: the pre-softmax attention scores of every block and head.
  public var attentionWeight: Float

  public init(
    teacher: Model, temperature: Float, logitsWeight: Float, featuresWeight: Float,
    hiddenStatesWeight: Float = 0, attentionWeight: Float = 0
  ) {
    self.teacher = teacher
    self.temperature = temperature
    self.logitsWeight = logitsWeight
    self.featuresWeight = featuresWeight
    self.hiddenStatesWeight = hiddenStatesWeight
    self.attentionWeight = attentionWeight
  }

  /// The inner tensors both forward passes must expose: none when the deep terms are off, so
  /// the plain path runs exactly as without them.
  var intermediates: Intermediates {
    var wanted: Intermediates = []
    if hiddenStatesWeight > 0 { wanted.insert(.hiddenStates) }
    if attentionWeight > 0 { wanted.insert(.attentionScores) }
    return wanted
  }

  /// `T²·KL(softmax(teacher/T) ‖ softmax(student/T))` averaged over the batch rows, and its
  /// gradient with respect to the student's logits (`T·(softmax(z_s/T) − softmax(z_t/T)) / N`).
  public static func logitTerm(student: Tensor, teacher: Tensor, temperature: Float) -> (
    loss: Float, gradient: Tensor
  ) {
    let rows = student.shape[0]
    let classes = student.shape[1]
    var gradient = Tensor(zeros: student.shape)
    var total = 0.0
    let t = Double(temperature)
    student.withUnsafeBufferPointer { s in
      teacher.withUnsafeBufferPointer { z in
        gradient.withUnsafeMutableBufferPointer { g in
          for row in 0..<rows {
            let offset = row * classes
            func logSoftmax(_ values: UnsafeBufferPointer<Float>) -> [Double] {
              let scaled = (0..<classes).map { Double(values[offset + $0]) / t }
              let top = scaled.max() ?? 0
              let sum = scaled.reduce(0) { $0 + Foundation.exp($1 - top) }
              let log = top + Foundation.log(sum)
              return scaled.map { $0 - log }
            }
            let ls = logSoftmax(s)
            let lt = logSoftmax(z)
            for c in 0..<classes {
              let pt = Foundation.exp(lt[c])
              total += pt * (lt[c] - ls[c])
              g[offset + c] = Float(t * (Foundation.exp(ls[c]) - pt) / Double(rows))
            }
          }
        }
      }
    }
    return (Float(t * t * total / Double(rows)), gradient)
  }

  /// `β·mean((student − teacher)²)` over every element, and its gradient for `student`.
  public static func featureTerm(student: Tensor, teacher: Tensor, weight: Float) -> (
    loss: Float, gradient: Tensor
  ) {
    var difference = student
    difference.add(teacher, scaledBy: -1)
    let count = Float(max(1, difference.count))
    let loss = weight * Float(difference.dot(difference)) / count
    difference.scale(by: 2 * weight / count)
    return (loss, difference)
  }

  /// `weight · mean_ℓ [Σ_kept (s_ℓ − t_ℓ)² / (n_ℓ · v_ℓ)]` over the layers ℓ, with `v_ℓ` the
  /// variance of the teacher's kept elements of layer ℓ (about their mean, floored at 1e-12 so a
  /// constant layer cannot divide by zero) and `n_ℓ` their count, and the gradient for every
  /// student layer (zero on the rows left out).
  ///
  /// `rowMask` (BERT: the attention mask) views each tensor as `rowMask.count` rows and keeps the
  /// rows whose mask is 1; nil keeps every element (VGG).
  public static func hiddenStateTerm(
    student: [Tensor], teacher: [Tensor], rowMask: [Int32]?, weight: Float
  ) -> (loss: Float, gradients: [Tensor]) {
    precondition(student.count == teacher.count, "one teacher layer per student layer")
    var total = 0.0
    var gradients: [Tensor] = []
    for (s, t) in zip(student, teacher) {
      precondition(s.count == t.count, "hidden-state sizes \(s.shape) and \(t.shape) differ")
      let rows = rowMask?.count ?? 1
      let width = s.count / max(1, rows)
      let kept = (0..<rows).filter { rowMask == nil || rowMask![$0] != 0 }
      var gradient = Tensor(zeros: s.shape)
      let count = Double(kept.count * width)
      guard count > 0 else {
        gradients.append(gradient)
        continue
      }
      var squared = 0.0
      var sum = 0.0
      var sumOfSquares = 0.0
      s.withUnsafeBufferPointer { sv in
        t.withUnsafeBufferPointer { tv in
          for row in kept {
            for index in (row * width)..<((row + 1) * width) {
              let target = Double(tv[index])
              let difference = Double(sv[index]) - target
              squared += difference * difference
              sum += target
              sumOfSquares += target * target
            }
          }
        }
      }
      let mean = sum / count
      let variance = max(sumOfSquares / count - mean * mean, 1e-12)
      total += squared / (count * variance)
      let scale = Float(2 * Double(weight) / (Double(student.count) * count * variance))
      s.withUnsafeBufferPointer { sv in
        t.withUnsafeBufferPointer { tv in
          gradient.withUnsafeMutableBufferPointer { g in
            for row in kept {
              for index in (row * width)..<((row + 1) * width) {
                g[index] = scale * (sv[index] - tv[index])
              }
            }
          }
        }
      }
      gradients.append(gradient)
    }
    return (Float(Double(weight) * total / Double(max(1, student.count))), gradients)
  }

  /// `weight · mean((s − t)²)` over every layer's `batch × heads × length × length` scores,
  /// counting only (query, key) pairs where both tokens are kept by `mask` (`batch × length`),
  /// and the gradient for every student layer (zero elsewhere).
  public static func attentionTerm(
    student: [Tensor], teacher: [Tensor], mask: [Int32], batch: Int, length: Int, weight: Float
  ) -> (loss: Float, gradients: [Tensor]) {
    precondition(student.count == teacher.count, "one teacher layer per student layer")
    let pairs = (0..<batch).map { b in
      let kept = (0..<length).filter { mask[b * length + $0] != 0 }
      return kept.flatMap { i in kept.map { j in i * length + j } }
    }
    let perLayer = pairs.reduce(0) { $0 + $1.count }
    var gradients: [Tensor] = []
    var squared = 0.0
    let count = Double(student.count * perLayer)
    let scale = count > 0 ? Float(2 * Double(weight) / count) : 0
    for (s, t) in zip(student, teacher) {
      precondition(s.shape == t.shape, "attention shapes \(s.shape) and \(t.shape) differ")
      let heads = s.count / (batch * length * length)
      var gradient = Tensor(zeros: s.shape)
      s.withUnsafeBufferPointer { sv in
        t.withUnsafeBufferPointer { tv in
          gradient.withUnsafeMutableBufferPointer { g in
            for b in 0..<batch {
              for h in 0..<heads {
                let square = (b * heads + h) * length * length
                for pair in pairs[b] {
                  let difference = sv[square + pair] - tv[square + pair]
                  squared += Double(difference) * Double(difference)
                  g[square + pair] = scale * difference
                }
              }
            }
          }
        }
      }
      gradients.append(gradient)
    }
    return (count > 0 ? Float(Double(weight) * squared / count) : 0, gradients)
  }

  /// Mixes the cross-entropy (and its logit gradient) with the logit term.
  func mixed(
    crossEntropy: Float, gradient: Tensor, student: Tensor, teacher: Tensor
  ) -> (loss: Float, gradient: Tensor) {
    guard logitsWeight > 0 else { return (crossEntropy, gradient) }
    let (kd, kdGradient) = Self.logitTerm(
      student: student, teacher: teacher, temperature: temperature)
    var combined = gradient
    combined.scale(by: 1 - logitsWeight)
    combined.add(kdGradient, scaledBy: logitsWeight)
    return ((1 - logitsWeight) * crossEntropy + logitsWeight * kd, combined)
  }
}

/// Why a teacher cannot teach this student.
public struct DistillationError: Error, CustomStringConvertible, Sendable {
  public var description: String
  public init(_ description: String) { self.description = description }
}

extension Distillation {
  /// Checks that the teacher's outputs have the student's shapes (family, classes, hidden
  /// size, and for the deep terms the layers, heads or stages); nil when they fit.
  public func mismatch(with student: Model) -> String? {
    switch (teacher, student) {
    case (.bert(let t), .bert(let s)):
      let (teacher, student) = (t.configuration, s.configuration)
      if teacher.hiddenSize != student.hiddenSize
        && (featuresWeight > 0 || hiddenStatesWeight > 0)
      {
        return
          "the teacher's hidden size is \(teacher.hiddenSize), the student's \(student.hiddenSize)"
      }
      if teacher.layerCount != student.layerCount
        && (hiddenStatesWeight > 0 || attentionWeight > 0)
      {
        return
          "the teacher's layer count is \(teacher.layerCount), the student's \(student.layerCount); hidden_states and attention pair layers one to one"
      }
      if teacher.headCount != student.headCount && attentionWeight > 0 {
        return
          "the teacher's attention head count is \(teacher.headCount), the student's \(student.headCount)"
      }
    case (.vgg(let t), .vgg(let s)):
      if attentionWeight > 0 { return "a vgg model has no attention to distil" }
      if hiddenStatesWeight > 0 && t.configuration.stageShapes != s.configuration.stageShapes {
        return
          "the teacher's stage feature maps are \(t.configuration.stageShapes) (C, H, W), the student's \(s.configuration.stageShapes)"
      }
    default:
      return "the teacher is a \(teacher.family) model and the student a \(student.family) model"
    }
    if teacher.classCount != student.classCount {
      return
        "the teacher has \(teacher.classCount.map(String.init) ?? "no") classes, the student \(student.classCount.map(String.init) ?? "none")"
    }
    return nil
  }
}

extension TrainingPlan {
  /// As `lossAndGradients`, with the distillation terms added to the loss and to the gradients
  /// the backward pass starts from.
  public mutating func lossAndGradients(
    _ batch: Batch, distillation: Distillation, random: inout RandomStream
  ) throws(ModelInputError) -> (loss: Float, logits: Tensor, gradients: GradientSet) {
    var gradients = makeGradients()
    var teacherRandom = RandomStream(seed: 0)
    switch (model, batch, distillation.teacher) {
    case (.bert(let bert), .text(let text), .bert(let teacher)):
      let wanted = distillation.intermediates
      let taught = try teacher.forward(
        text, mode: .evaluation, exposing: wanted, random: &teacherRandom
      ).outputs
      var (outputs, tape) = try bert.forward(
        text, mode: .training, exposing: wanted, random: &random)
      guard let tape, let crossEntropy = outputs.loss, let logits = outputs.logits,
        let logitsGradient = outputs.logitsGradient, let teacherLogits = taught.logits
      else {
        throw ModelInputError("distillation needs labels and classifier heads on both models")
      }
      var (loss, gradient) = distillation.mixed(
        crossEntropy: crossEntropy, gradient: logitsGradient, student: logits,
        teacher: teacherLogits)
      outputs.logitsGradient = gradient
      if distillation.featuresWeight > 0 {
        let (term, hidden) = Distillation.featureTerm(
          student: outputs.lastHiddenState, teacher: taught.lastHiddenState,
          weight: distillation.featuresWeight)
        loss += term
        outputs.lastHiddenGradient = hidden
      }
      if let student = outputs.hiddenStates, let target = taught.hiddenStates {
        try Self.requireSameShapes(student, target, "hidden states")
        let (term, hidden) = Distillation.hiddenStateTerm(
          student: student, teacher: target, rowMask: text.attentionMask,
          weight: distillation.hiddenStatesWeight)
        loss += term
        outputs.hiddenStatesGradient = hidden
        outputs.hiddenStates = nil
      }
      if let student = outputs.attentionScores, let target = taught.attentionScores {
        try Self.requireSameShapes(student, target, "attention scores")
        let (term, scores) = Distillation.attentionTerm(
          student: student, teacher: target, mask: text.attentionMask, batch: text.batchSize,
          length: text.length, weight: distillation.attentionWeight)
        loss += term
        outputs.attentionScoresGradient = scores
        outputs.attentionScores = nil
      }
      bert.backward(tape: tape, outputs: outputs, gradients: &gradients)
      return (loss, logits, gradients)
    case (.vgg(var vgg), .images(let pixels, let labels), .vgg(var teacher)):
      let wanted = distillation.intermediates
      let taught = try teacher.forward(
        pixels: pixels, labels: nil, mode: .evaluation, recordsTape: false, exposing: wanted,
        random: &teacherRandom
      ).outputs
      let (outputs, recorded) = try vgg.forward(
        pixels: pixels, labels: labels, mode: .training, exposing: wanted, random: &random)
      model = .vgg(vgg)
      guard var tape = recorded, let crossEntropy = outputs.loss,
        let logitsGradient = tape.logitsGradient
      else {
        throw ModelInputError("training needs labels")
      }
      var (loss, gradient) = distillation.mixed(
        crossEntropy: crossEntropy, gradient: logitsGradient, student: outputs.logits,
        teacher: taught.logits)
      tape.logitsGradient = gradient
      if distillation.featuresWeight > 0, let student = outputs.features,
        let target = taught.features
      {
        guard student.shape == target.shape else {
          throw ModelInputError(
            "feature distillation needs the teacher's feature map shape \(target.shape) to be the student's \(student.shape)"
          )
        }
        let (term, features) = Distillation.featureTerm(
          student: student, teacher: target, weight: distillation.featuresWeight)
        loss += term
        tape.featureGradient = features
      }
      if let student = outputs.stages, let target = taught.stages {
        try Self.requireSameShapes(student, target, "stage feature maps")
        let (term, stages) = Distillation.hiddenStateTerm(
          student: student, teacher: target, rowMask: nil,
          weight: distillation.hiddenStatesWeight)
        loss += term
        tape.stagesGradient = stages
      }
      vgg.backward(tape: tape, gradients: &gradients)
      return (loss, outputs.logits, gradients)
    default:
      throw ModelInputError(
        "a \(model.family) student with a \(distillation.teacher.family) teacher cannot take this kind of batch"
      )
    }
  }

  private static func requireSameShapes(_ student: [Tensor], _ teacher: [Tensor], _ what: String)
    throws(ModelInputError)
  {
    let (s, t) = (student.map(\.shape), teacher.map(\.shape))
    guard s == t else {
      throw ModelInputError(
        "deep distillation needs the teacher's \(what) \(t) to have the student's shapes \(s)")
    }
  }
}
