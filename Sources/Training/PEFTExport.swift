import Foundation
import Models
import Plumbing
import SafeTensors
import Surgery
import Tensor

/// A Hugging Face PEFT LoRA adapter (`adapter_model.safetensors` + `adapter_config.json`) for
/// runs that keep W (no decay) and add no bias C — the adapters PEFT can express. PEFT's Linear
/// LoRA is `B·A` with scale `alpha / r`; its Conv2d LoRA is a `k×k` conv in → r then a `1×1`
/// conv r → out: surgeon's lowrank form.
public enum PEFTExport {
  /// Why a plan's adapters cannot be written in PEFT's format (nil: they can).
  public static func obstacle(_ plan: TrainingPlan) -> String? {
    if plan.schedules.values.contains(where: { $0.decay != nil }) {
      return "the run decays W, which PEFT has no form for"
    }
    let records = plan.model.adapterRecords
    if records.isEmpty { return "the run wraps no layer" }
    if records.values.contains(where: { $0.form == "loralib" }) {
      return "loralib conv adapters have no PEFT form"
    }
    if plan.model.namedParameters.contains(where: { $0.0.hasSuffix(".lora_C") }) {
      return "the adapters have a bias C, which PEFT has no form for (use bias_c: none)"
    }
    return nil
  }

  /// Writes the adapter; `bertPrefix` is prepended to BERT node names when the checkpoint had
  /// none (transformers names a BertForSequenceClassification's encoder `bert.`).
  public static func write(_ plan: TrainingPlan, to directory: URL, baseModel: String) throws {
    let model = plan.model
    var prefix = ""
    if case .bert(let bert) = model, bert.prefix.isEmpty, bert.classifier != nil {
      prefix = "bert."
    }
    let records = model.adapterRecords
    var tensors: [String: StoredTensor] = [:]
    var targets: [String] = []
    var rankPattern: [String: Int] = [:]
    var alphaPattern: [String: Double] = [:]
    for (name, tensor) in model.namedParameters {
      let node: String
      let key: String
      if name.hasSuffix(".lora_A") {
        node = String(name.dropLast(".lora_A".count))
        key = "lora_A.weight"
      } else if name.hasSuffix(".lora_B") {
        node = String(name.dropLast(".lora_B".count))
        key = "lora_B.weight"
      } else {
        continue
      }
      let qualified = (node == "classifier" ? "" : prefix) + node
      // Linear: A is r × in and B out × r, as PEFT stores them; lowrank convs match its
      // Conv2d LoRA (A a k×k conv, B a 1×1 conv).
      tensors["base_model.model.\(qualified).\(key)"] = .float(tensor)
      if key == "lora_A.weight", let record = records[node] {
        targets.append(qualified)
        rankPattern[qualified] = record.rank
        alphaPattern[qualified] = Double(record.scale) * Double(record.rank)
      }
    }
    // Tensors trained in full (a head, layer norms) travel as modules_to_save.
    var saved: Set<String> = []
    for (name, tensor) in model.namedParameters
    where plan.trainableSet.contains(name) && !name.contains(".lora_") {
      let qualified = (name.hasPrefix("classifier") ? "" : prefix) + name
      tensors["base_model.model." + qualified] = .float(tensor)
      saved.insert(String(qualified.split(separator: ".").dropLast().joined(separator: ".")))
    }
    try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    try SafeTensorsFile(tensors: tensors, metadata: ["format": "pt"]).write(
      to: directory.appendingPathComponent("adapter_model.safetensors"))
    let ranks = Set(rankPattern.values)
    let alphas = Set(alphaPattern.values)
    let configuration: [String: Any] = [
      "peft_type": "LORA", "task_type": "SEQ_CLS", "base_model_name_or_path": baseModel,
      "r": ranks.count == 1 ? ranks.first! : (ranks.max() ?? 8),
      "lora_alpha": alphas.count == 1 ? alphas.first! : (alphas.max() ?? 8),
      "rank_pattern": ranks.count == 1 ? [:] : rankPattern,
      "alpha_pattern": alphas.count == 1 ? [:] : alphaPattern,
      "target_modules": targets.sorted(), "lora_dropout": 0.0, "bias": "none",
      "modules_to_save": saved.sorted(), "fan_in_fan_out": false, "inference_mode": true,
      "init_lora_weights": true,
    ]
    let data = try JSONSerialization.data(
      withJSONObject: configuration, options: [.prettyPrinted, .sortedKeys])
    try DurableFile.write(data, to: directory.appendingPathComponent("adapter_config.json"))
  }
}
