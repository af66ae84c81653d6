import Foundation
import Models

/// `surgeon.json`, written beside `model.onnx`: what a program serving the file needs besides
/// the graph (the label of each logit, the tokenizer's truncation length, the task, the inputs).
public struct DeploymentDescription: Sendable, Equatable {
  public var family: String
  public var task: String
  /// The label of each logit, in order; nil when the checkpoint names none.
  public var labels: [String]?
  /// The length texts were truncated to in training (BERT); nil for images.
  public var maxLength: Int?
  /// `plain`, `rewritten` (adapters, frozen weights at their current d) or `compressed` (W-free).
  public var form: String
  public var inputs: [String]
  public var outputs: [String]

  public init(model: Model, graph: ONNXGraph, labels: [String]?, maxLength: Int?, task: String?) {
    family = model.family
    self.task = task ?? (model.family == "bert" ? "text-classification" : "image-classification")
    self.labels = labels
    self.maxLength = model.family == "bert" ? maxLength : nil
    let records = model.adapterRecords
    if records.isEmpty {
      form = "plain"
    } else if model.nodesWithFrozenWeight.isEmpty {
      form = "compressed"
    } else {
      form = "rewritten"
    }
    inputs = graph.inputs.map(\.name)
    outputs = graph.outputs.map(\.name)
  }

  public func json() throws -> String {
    var object: [String: Any] = [
      "format": "onnx", "model": "model.onnx", "opset": Int(ONNXModel.opsetVersion),
      "family": family, "task": task, "form": form, "inputs": inputs, "outputs": outputs,
      "labels": labels.map { $0 as Any } ?? NSNull(),
      "max_length": maxLength.map { $0 as Any } ?? NSNull(),
    ]
    if family == "bert" { object["vocabulary"] = "vocab.txt" }
    let data = try JSONSerialization.data(
      withJSONObject: object, options: [.prettyPrinted, .sortedKeys])
    return String(decoding: data, as: UTF8.self) + "\n"
  }
}
