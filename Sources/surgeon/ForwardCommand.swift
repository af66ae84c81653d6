import Foundation
import Models
import SafeTensors
import Tensor

enum ForwardCommand: Command {
  static let usage = """
    Usage: surgeon forward CHECKPOINT --inputs IN.safetensors --out OUT.safetensors
                           [--grads] [--train-mode] [--seed N]

    Runs CHECKPOINT on the tensors of IN: input_ids, attention_mask, token_type_ids (int32 or
    int64; mask and types optional) for BERT, or pixel_values (N×C×H×W float32) for VGG, and
    optional labels. Writes logits (with a head), last_hidden_state and pooler_output (BERT),
    loss (with labels) and, with --grads, grad.<name> for every parameter.

    Options:
      --grads        also write the gradient of the mean cross-entropy (needs labels and a head)
      --train-mode   dropout on and batch-norm batch statistics (default: evaluation mode)
      --seed N       the dropout stream in train mode (default 0)
    """

  static func run(_ arguments: [String]) throws {
    let parsed = try Arguments(
      arguments, options: ["inputs", "out", "seed"], flags: ["grads", "train-mode"])
    guard parsed.positionals.count == 1 else {
      throw UsageError(message: "give exactly one CHECKPOINT directory")
    }
    guard let inputsPath = parsed.value("inputs"), let outPath = parsed.value("out") else {
      throw UsageError(message: "--inputs and --out are required")
    }
    let seed = try parsed.integer("seed", in: 0...Int(Int32.max)) ?? 0
    let mode: ForwardMode = parsed.flag("train-mode") ? .training : .evaluation
    let wantsGradients = parsed.flag("grads")

    let checkpoint = try loadCheckpoint(URL(fileURLWithPath: parsed.positionals[0]))
    let inputs: SafeTensorsFile
    do {
      inputs = try SafeTensorsFile.read(contentsOf: URL(fileURLWithPath: inputsPath))
    } catch {
      throw CommandError(message: error.description)
    }
    let reader = InputReader(file: inputs, path: inputsPath)
    var random = RandomStream(seed: UInt64(seed))
    var outputs: [String: StoredTensor] = [:]
    var gradients = GradientSet()
    let labels = try reader.integers("labels", required: false)?.values
    if wantsGradients && labels == nil {
      throw CommandError(
        message:
          "\(inputsPath): error: --grads needs a 'labels' tensor (one class index per example)")
    }
    do {
      switch checkpoint.model {
      case .bert(let model):
        guard let ids = try reader.integers("input_ids", required: true), ids.shape.count == 2
        else {
          throw CommandError(
            message: "\(inputsPath): error: input_ids must be a 2-D integer tensor (batch × length)"
          )
        }
        let batch = TextBatch(
          batchSize: ids.shape[0], length: ids.shape[1], inputIDs: ids.values,
          attentionMask: try reader.integers("attention_mask", required: false)?.values,
          tokenTypeIDs: try reader.integers("token_type_ids", required: false)?.values,
          labels: labels)
        if wantsGradients && model.classifier == nil {
          throw CommandError(
            message:
              "\(checkpoint.directory.path): error: --grads needs a classifier head, and this checkpoint has none"
          )
        }
        let (result, tape) = try model.forward(
          batch, mode: mode, recordsTape: wantsGradients, random: &random)
        outputs["last_hidden_state"] = .float(result.lastHiddenState)
        if let pooled = result.poolerOutput { outputs["pooler_output"] = .float(pooled) }
        if let logits = result.logits { outputs["logits"] = .float(logits) }
        if let loss = result.loss { outputs["loss"] = .float(Tensor(shape: [1], scalars: [loss])) }
        if wantsGradients, let tape {
          model.backward(tape: tape, outputs: result, gradients: &gradients)
        }
      case .vgg(var model):
        guard let pixels = inputs.float("pixel_values") else {
          throw CommandError(
            message: "\(inputsPath): error: missing float32 tensor 'pixel_values' (N×C×H×W)")
        }
        let (result, tape) = try model.forward(
          pixels: pixels, labels: labels, mode: mode, recordsTape: wantsGradients,
          random: &random)
        outputs["logits"] = .float(result.logits)
        if let loss = result.loss { outputs["loss"] = .float(Tensor(shape: [1], scalars: [loss])) }
        if wantsGradients, let tape { model.backward(tape: tape, gradients: &gradients) }
      }
    } catch let error as ModelInputError {
      throw CommandError(message: "\(inputsPath): error: \(error.description)")
    }
    for (name, gradient) in gradients.tensors { outputs["grad." + name] = .float(gradient) }
    do {
      try SafeTensorsFile(tensors: outputs).write(to: URL(fileURLWithPath: outPath))
    } catch {
      throw CommandError(message: error.description)
    }
  }
}

/// Integer input tensors (int32 or int64) narrowed to Int32 with range checks.
struct InputReader {
  var file: SafeTensorsFile
  var path: String

  func integers(_ name: String, required: Bool) throws(CommandError) -> (
    shape: [Int], values: [Int32]
  )? {
    guard let stored = file.tensors[name] else {
      if required {
        throw CommandError(message: "\(path): error: missing integer tensor '\(name)'")
      }
      return nil
    }
    guard case .integer(let shape, let values, _) = stored else {
      throw CommandError(message: "\(path): error: '\(name)' must be int32 or int64, not float")
    }
    var narrowed: [Int32] = []
    narrowed.reserveCapacity(values.count)
    for value in values {
      guard let small = Int32(exactly: value) else {
        throw CommandError(message: "\(path): error: '\(name)' holds \(value), out of int32 range")
      }
      narrowed.append(small)
    }
    return (shape, narrowed)
  }
}
