import Models
import Tensor

extension TrainingPlan {
  /// The student's loss on a batch without labels: `T²·KL(softmax(z_t/T) ‖ softmax(z_s/T))`
  /// averaged over the rows (the teacher's soft labels are all there is to learn; no
  /// cross-entropy), and its gradients. The teacher runs in evaluation mode.
  public mutating func softLabelLossAndGradients(
    _ batch: Batch, distillation: Distillation, random: inout RandomStream
  ) throws(ModelInputError) -> (loss: Float, gradients: GradientSet) {
    var gradients = makeGradients()
    var teacherRandom = RandomStream(seed: 0)
    switch (model, batch, distillation.teacher) {
    case (.bert(let bert), .text(var text), .bert(let teacher)):
      text.labels = nil
      let taught = try teacher.forward(text, mode: .evaluation, random: &teacherRandom).outputs
      var (outputs, tape) = try bert.forward(text, mode: .training, random: &random)
      guard let tape, let logits = outputs.logits, let teacherLogits = taught.logits else {
        throw ModelInputError("distillation needs classifier heads on both models")
      }
      let (loss, gradient) = Distillation.logitTerm(
        student: logits, teacher: teacherLogits, temperature: distillation.temperature)
      outputs.logitsGradient = gradient
      bert.backward(tape: tape, outputs: outputs, gradients: &gradients)
      return (loss, gradients)
    case (.vgg(var vgg), .images(let pixels, _), .vgg(var teacher)):
      let taught = try teacher.forward(
        pixels: pixels, labels: nil, mode: .evaluation, recordsTape: false,
        random: &teacherRandom
      ).outputs
      let (outputs, recorded) = try vgg.forward(
        pixels: pixels, labels: nil, mode: .training, random: &random)
      model = .vgg(vgg)
      guard var tape = recorded else {
        throw ModelInputError("a training pass kept no tape")
      }
      let (loss, gradient) = Distillation.logitTerm(
        student: outputs.logits, teacher: taught.logits, temperature: distillation.temperature)
      tape.logitsGradient = gradient
      vgg.backward(tape: tape, gradients: &gradients)
      return (loss, gradients)
    default:
      throw ModelInputError(
        "a \(model.family) student with a \(distillation.teacher.family) teacher cannot take this kind of batch"
      )
    }
  }
}
