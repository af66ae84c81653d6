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

/// A model lowered to ONNX with its description: the files `surgeon export --format onnx` and a
/// run's `output.onnx` write (`model.onnx`, `surgeon.json`; the checkpoint's `vocab.txt` goes
/// beside them). Built before anything is written, so a model the exporter cannot express
/// writes nothing.
public struct ONNXPackage: Sendable {
  public let model: ONNXModel
  public let bytes: [UInt8]
  public let description: DeploymentDescription

  public init(model: Model, labels: [String]?, maxLength: Int?, task: String?)
    throws(ONNXExportError)
  {
    self.model = try ONNXExporter.model(for: model)
    bytes = try self.model.serialized()
    description = DeploymentDescription(
      model: model, graph: self.model.graph, labels: labels, maxLength: maxLength, task: task)
  }

  /// The files to write into the export directory, by name.
  public func files() throws -> [(name: String, contents: Data)] {
    [("model.onnx", Data(bytes)), ("surgeon.json", Data(try description.json().utf8))]
  }
}
