import Foundation
import Models
import Tensor

/// Knowledge distillation from a teacher (PC-LoRA's recipe): the student's loss is
/// `(1 − α)·CE + α·T²·KL(softmax(z_t/T) ‖ softmax(z_s/T)) + β·mean((h_s − h_t)²)`, with `h` the
/// last hidden states (BERT: every token's; VGG: the feature map the classifier reads). The
/// teacher runs in evaluation mode and is never trained.
public struct Distillation: Sendable {
  public var teacher: Model
  public var temperature: Float
  /// α.
  public var logitsWeight: Float
  /// β.
  public var featuresWeight: Float

  public init(teacher: Model, temperature: Float, logitsWeight: Float, featuresWeight: Float) {
    self.teacher = teacher
    self.temperature = temperature
    self.logitsWeight = logitsWeight
    self.featuresWeight = featuresWeight
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
  /// size); nil when they fit.
  public func mismatch(with student: Model) -> String? {
    switch (teacher, student) {
    case (.bert(let t), .bert(let s)):
      if t.configuration.hiddenSize != s.configuration.hiddenSize && featuresWeight > 0 {
        return
          "the teacher's hidden size is \(t.configuration.hiddenSize), the student's \(s.configuration.hiddenSize)"
      }
    case (.vgg, .vgg):
      break
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
      let taught = try teacher.forward(text, mode: .evaluation, random: &teacherRandom).outputs
      var (outputs, tape) = try bert.forward(text, mode: .training, random: &random)
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
      bert.backward(tape: tape, outputs: outputs, gradients: &gradients)
      return (loss, logits, gradients)
    case (.vgg(var vgg), .images(let pixels, let labels), .vgg(var teacher)):
      let taught = try teacher.forward(
        pixels: pixels, labels: nil, mode: .evaluation, recordsTape: false,
        random: &teacherRandom
      ).outputs
      let (outputs, recorded) = try vgg.forward(
        pixels: pixels, labels: labels, mode: .training, random: &random)
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
      vgg.backward(tape: tape, gradients: &gradients)
      return (loss, outputs.logits, gradients)
    default:
      throw ModelInputError(
        "a \(model.family) student with a \(distillation.teacher.family) teacher cannot take this kind of batch"
      )
    }
  }
}
