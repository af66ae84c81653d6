import Plumbing

/// The JSON Schema (draft-07) of manifest format 1, for editors (yaml-language-server reads the
/// `# yaml-language-server: $schema=...` comment). It describes shapes, types, enumerations and
/// ranges; the decoder stays the authority (some cross-field rules are not expressible).
public enum ManifestSchema {
  /// Pretty-printed with sorted keys, so the text is the same on every run and machine.
  public static func json() -> String {
    document.serialized()
  }

  static var document: JSONValue {
    let description =
      "Which layers of a BERT or VGG to wrap with LoRA adapters, which to freeze or train, how "
      + "to train and what to write."
    let top: [String: JSONValue] = [
      "surgeon": object(
        "Format version: required; this surgeon reads format 1.", ["const": .integer(1)]),
      "name": object(
        "1-100 of [A-Za-z0-9._-]; the default output dir is checkpoints/<name>.",
        [
          "type": .string("string"), "pattern": .string("^[A-Za-z0-9._-]{1,100}$"),
          "not": .object(["enum": strings([".", ".."])]),
        ]),
      "model": reference("model"),
      "surgery": object(
        "Rules applied in order; on overlap the later rule wins.",
        ["type": .string("array"), "items": reference("rule")]),
      "train": reference("train"),
      "output": reference("output"),
      "expect": reference("expect"),
    ]
    return .object([
      "$schema": .string("http://json-schema.org/draft-07/schema#"),
      "title": .string("surgeon manifest, format 1"),
      "description": .string(description),
      "type": .string("object"),
      "additionalProperties": .bool(false),
      "required": strings(["surgeon", "name", "model"]),
      "properties": properties(ManifestKeys.top, top),
      "allOf": .array(
        Task.allCases.map { taskMatchesFamily(family: $0.family.rawValue, task: $0.rawValue) }
          + [vggHasNoAttention]),
      "definitions": .object(definitions),
    ])
  }

  private static var definitions: [String: JSONValue] {
    let selectors = object(
      "A role, a dotted name or suffix, a glob (* one segment, ** any), or /regex/.",
      [
        "oneOf": .array([
          nonEmptyString,
          .object(["type": .string("array"), "minItems": .integer(1), "items": nonEmptyString]),
        ])
      ])
    let rules: [JSONValue] = [
      rule("lora", reference("lora")),
      rule("freeze", described(reference("selectors"), "These parameters get no gradient.")),
      rule("train", described(reference("selectors"), "These parameters are trained in full.")),
    ]
    return [
      "model": model,
      "rule": object(
        "A mapping with exactly one key: lora, freeze or train.", ["oneOf": .array(rules)]),
      "selectors": selectors,
      "lora": lora,
      "blocks": blocks,
      "decay": decay,
      "noise": noise,
      "train": train,
      "data": data,
      "dataSource": dataSource,
      "split": split,
      "optimizer": optimizer,
      "output": output,
      "expect": expect,
    ]
  }

  /// `expect:`: counts as whole numbers or comparison strings, coverage as a share.
  private static var expect: JSONValue {
    let comparison = "^\\s*(==|>=|<=|>|<)?\\s*[0-9][0-9_,]*(\\.[0-9]+)?\\s*$"
    func count(_ description: String) -> JSONValue {
      object(
        description + " A whole number (==) or a string such as \">= 100000\".",
        [
          "oneOf": .array([
            .object(["type": .string("integer"), "minimum": .integer(0)]),
            .object(["type": .string("string"), "pattern": .string(comparison)]),
          ])
        ])
    }
    return closedObject(
      "Bounds on the compiled plan, checked by validate and apply at each key's line.",
      keys: ManifestKeys.expect,
      [
        "trainable": count("Trainable parameters."),
        "total": count("All parameters during training."),
        "compressed_total": count("Parameters once compressed (W-free)."),
        "wrapped": count("Nodes wrapped with an adapter."),
        "coverage": object(
          "Share of the model's Linear/Conv2d parameters in wrapped nodes: a number in [0, 1] (==) or a string such as \">= 0.9\".",
          [
            "oneOf": .array([
              .object([
                "type": .string("number"), "minimum": .integer(0), "maximum": .integer(1),
              ]),
              .object(["type": .string("string"), "pattern": .string(comparison)]),
            ])
          ]),
      ])
  }

  private static var model: JSONValue {
    let presets = ModelSource.presets
    let head = closedObject(
      "A fresh classifier when the checkpoint has none (or one of another size).",
      keys: ManifestKeys.head, required: ["classes"],
      ["classes": integer(2, 100_000, "Number of classes.")])
    let fields: [String: JSONValue] = [
      "family": enumeration(ModelFamily.allCases.map(\.rawValue), "bert | vgg (required)."),
      "checkpoint": object(
        "A directory with config.json + model.safetensors, or hf://ORG/NAME.",
        ["type": .string("string"), "minLength": .integer(1)]),
      "preset": enumeration(
        presets.map(\.name), "A built-in architecture for dry runs, tests and CI."),
      "weights": enumeration(["random"], "Seeded random initialization; only with preset."),
      "config": object(
        "With preset: override single configuration fields.", ["type": .string("object")]),
      "head": head,
      "seed": integer(0, nil, "Seeds random weights and the fresh head (default 0)."),
    ]
    let checkpointOnly: JSONValue = .object([
      "required": strings(["checkpoint"]),
      "not": .object(["required": strings(["preset"])]),
    ])
    let presetOnly: JSONValue = .object([
      "required": strings(["preset", "weights"]),
      "not": .object(["required": strings(["checkpoint"])]),
    ])
    let presetMatchesFamily = ModelFamily.allCases.map { family -> JSONValue in
      let names = presets.filter { $0.family == family }.map(\.name)
      return .object([
        "if": .object([
          "properties": .object(["family": .object(["const": .string(family.rawValue)])]),
          "required": strings(["family"]),
        ]),
        "then": .object(["properties": .object(["preset": .object(["enum": strings(names)])])]),
      ])
    }
    var schema = closedObject(nil, keys: ManifestKeys.model, required: ["family"], fields)
    schema["oneOf"] = .array([checkpointOnly, presetOnly])
    schema["dependencies"] = .object([
      "weights": strings(["preset"]), "config": strings(["preset"]),
    ])
    schema["allOf"] = .array(presetMatchesFamily)
    return schema
  }

  private static var lora: JSONValue {
    let fields: [String: JSONValue] = [
      "layers": described(reference("selectors"), "Nodes to wrap (required)."),
      "exclude": described(reference("selectors"), "Nodes taken out of this rule."),
      "blocks": reference("blocks"),
      "rank": integer(1, nil, "Adapter rank (required); below min(fan_in, out)."),
      "alpha": object(
        "Scale s = alpha / rank (default: alpha = rank).",
        ["type": strings(["number", "null"]), "exclusiveMinimum": .integer(0)]),
      "init": enumeration(
        AdapterInitialization.allCases.map(\.rawValue),
        "lora (A Kaiming-uniform, B = 0) | svd (B·A = rank-r SVD of W) | svd_residual (the same, with the frozen W, b becoming W − s·B·A, b − C) | svd_whitened (the rank-r factors that best reproduce the layer's output on calibration inputs, the input mean folded into C, the frozen part the residual); default lora."
      ),
      "bias_c": enumeration(
        BiasCInitialization.allCases.map(\.rawValue),
        "zeros | copy (C starts at b) | none; default copy with svd_whitened (the only value it takes), zeros with decay, none otherwise."
      ),
      "calibration": closedObject(
        "init svd_whitened only: the training batches whose inputs give each wrapped layer's input mean and covariance (training split only).",
        keys: ManifestKeys.calibration, required: [],
        [
          "batches": integer(
            1, 100_000, "Batches of train.batch_size training examples (default 16).")
        ]),
      "refit": enumeration(
        RefitMode.allCases.map(\.rawValue),
        "init svd_whitened only: none (the factors of each layer's own inputs) | sequential (node by node in forward order, the factors refitted to reproduce the loaded layer's output from the inputs the W-free model gives it, over the same calibration batches); default none."
      ),
      "conv_form": enumeration(
        ConvForm.allCases.map(\.rawValue),
        "Conv2d only: lowrank (k×k conv in→r, then 1×1 r→out) | loralib; default lowrank."),
      "decay": reference("decay"),
      "noise": reference("noise"),
      "budget": closedObject(
        "Per-node ranks (at most rank) from one budget: the rule's nodes share `share` of their W and b parameters, handed out by singular-value energy per parameter.",
        keys: ManifestKeys.budget, required: ["share"],
        [
          "share": object(
            "Deployed factors over the wrapped layers' original parameters; in (0, 1).",
            [
              "type": .string("number"), "exclusiveMinimum": .integer(0),
              "exclusiveMaximum": .integer(1),
            ]),
          "floor": integer(1, nil, "The smallest rank any node gets (default 1)."),
          "by": enumeration(
            BudgetCriterion.allCases.map(\.rawValue),
            "weights (W's singular values) | whitened (output error on the calibration inputs; needs init svd_whitened); default whitened with svd_whitened, weights otherwise."
          ),
        ]),
    ]
    var schema = closedObject(nil, keys: ManifestKeys.lora, required: ["layers", "rank"], fields)
    schema["dependencies"] = .object(["noise": strings(["decay"])])
    return schema
  }

  private static var blocks: JSONValue {
    let index: JSONValue = .object(["type": .string("integer"), "minimum": .integer(0)])
    let range: JSONValue = .object([
      "type": .string("string"), "pattern": .string("^\\s*[0-9]+\\s*(-\\s*[0-9]+\\s*)?$"),
    ])
    let list: JSONValue = .object([
      "type": .string("array"), "minItems": .integer(1),
      "items": .object(["oneOf": .array([index, range])]),
    ])
    return object(
      "Block / convolution indices: 3, \"0-5\" (inclusive) or [0, 2, 4].",
      ["oneOf": .array([index, range, list])])
  }

  private static var decay: JSONValue {
    closedObject(
      "Omit for plain LoRA (W stays, d = 1 throughout).", keys: ManifestKeys.decay,
      [
        "shape": enumeration(ScheduleShape.allCases.map(\.rawValue), "Default linear."),
        "start": fraction("Where d starts to fall from 1 (default 0.05); 0 <= start < end."),
        "end": object(
          "Where d reaches 0 (default 0.85); end <= 1.",
          [
            "type": .string("number"), "exclusiveMinimum": .integer(0), "maximum": .integer(1),
          ]),
      ])
  }

  private static var noise: JSONValue {
    closedObject(
      "Moment-matched noise while W decays; needs decay.", keys: ManifestKeys.noise,
      [
        "stats": enumeration(
          NoiseStatistics.allCases.map(\.rawValue), "global | per_output; default global."),
        "clear_below": object(
          "Noise off once d < this (default 0.3); null = never.",
          [
            "type": strings(["number", "null"]), "exclusiveMinimum": .integer(0),
            "maximum": .integer(1),
          ]),
        "scale": object(
          "Multiplies the noise std (default 1).",
          ["type": .string("number"), "minimum": .integer(0)]),
        "spectral_cap": object(
          "Keeps the noise's spectral norm at most this times d·W's (default null: no cap).",
          ["type": strings(["number", "null"]), "exclusiveMinimum": .integer(0)]),
      ])
  }

  private static var train: JSONValue {
    closedObject(
      "Optional: without it, apply only rewrites and saves.", keys: ManifestKeys.train,
      required: ["task", "data", "steps"],
      [
        "task": enumeration(Task.allCases.map(\.rawValue), "Text for bert, image for vgg."),
        "data": reference("data"),
        "steps": integer(1, nil, "Optimizer steps (required)."),
        "batch_size": integer(1, 65_536, "Default 32."),
        "optimizer": reference("optimizer"),
        "eval_every": integer(1, nil, "Steps between evaluations; default steps / 10."),
        "seed": integer(0, nil, "Default 0."),
        "distill": closedObject(
          "Knowledge distillation from a fully fine-tuned teacher checkpoint.",
          keys: ManifestKeys.distill, required: ["teacher"],
          [
            "teacher": described(
              nonEmptyString, "A checkpoint directory (e.g. a full fine-tuning run's output)."),
            "temperature": object(
              "Softmax temperature of the logit term (default 2).",
              ["type": .string("number"), "exclusiveMinimum": .integer(0)]),
            "logits": object(
              "Weight a: loss = (1 - a) CE + a T^2 KL(teacher || student); default 0.5.",
              ["type": .string("number"), "minimum": .integer(0), "maximum": .integer(1)]),
            "features": object(
              "Weight of the MSE between student and teacher last hidden states; default 0.",
              ["type": .string("number"), "minimum": .integer(0)]),
            "hidden_states": object(
              "Every layer's hidden states (BERT: embeddings and each block, non-padding tokens; VGG: each stage's feature map), each MSE over the teacher's variance there, averaged over layers: `all` (weight 1) or {layers: all, weight}.",
              [
                "oneOf": .array([
                  .object(["const": .string("all")]),
                  closedObject(
                    nil, keys: ManifestKeys.hiddenStates,
                    [
                      "layers": enumeration(["all"], "Which layers: all (default)."),
                      "weight": object(
                        "Weight of the term (default 1).",
                        ["type": .string("number"), "minimum": .integer(0)]),
                    ]),
                ])
              ]),
            "attention": object(
              "BERT only: weight of the MSE between student and teacher pre-softmax attention scores (every block and head, non-padding token pairs); default 0.",
              ["type": .string("number"), "minimum": .integer(0)]),
            "augment": augment,
            "unlabeled": unlabeled,
          ]),
      ])
  }

  /// The `batch_size` and `weight` every extra source of distillation examples takes.
  private static var extraBatch: [String: JSONValue] {
    [
      "batch_size": integer(1, 65_536, "Extra examples per step (default train.batch_size)."),
      "weight": object(
        "Weight w of this source's T^2 KL(teacher || student) term (default 1).",
        ["type": .string("number"), "exclusiveMinimum": .integer(0)]),
    ]
  }

  private static var augment: JSONValue {
    var fields: [String: JSONValue] = [
      "edits": object(
        "Text: delete, swap, mask, synonym; images: flip, crop, noise.",
        [
          "type": .string("array"), "minItems": .integer(1), "uniqueItems": .bool(true),
          "items": .object(["enum": strings(AugmentEdit.allCases.map(\.rawValue))]),
        ]),
      "rate": object(
        "Text: edits per copy = max(1, round(rate * words)); default 0.1.",
        [
          "type": .string("number"), "exclusiveMinimum": .integer(0), "maximum": .integer(1),
        ]),
      "copies": integer(1, 1000, "Distinct edited copies of each training example (default 1)."),
      "seed": integer(0, nil, "Seeds the edits and the copies' order (default 0)."),
      "thesaurus": described(
        nonEmptyString, "Roget's thesaurus as term,CATEGORY lines (data/roget.csv); for synonym."),
      "pad": integer(1, 64, "Images: the crop's zero padding in pixels (default 2)."),
      "noise": object(
        "Images: the Gaussian noise's standard deviation, pixels in [0, 1] (default 0.05).",
        ["type": .string("number"), "exclusiveMinimum": .integer(0)]),
    ]
    fields.merge(extraBatch) { first, _ in first }
    return closedObject(
      "Teacher-labelled edited copies of the training examples (never validation or test).",
      keys: ManifestKeys.augment, required: ["edits"], fields)
  }

  private static var unlabeled: JSONValue {
    var fields: [String: JSONValue] = [
      "format": enumeration(["csv", "tsv", "jsonl"], "A table of texts."),
      "path": nonEmptyString,
      "text": described(nonEmptyString, "The text column."),
      "group_by": described(
        nonEmptyString,
        "Drops rows whose value is a group of the validation or test split (needs data.split.group_by)."
      ),
    ]
    fields.merge(extraBatch) { first, _ in first }
    return closedObject(
      "Unlabeled in-domain texts the teacher labels.", keys: ManifestKeys.unlabeled,
      required: ["format", "path", "text"], fields)
  }

  private static var data: JSONValue {
    let labels = object(
      "Label order (default: sorted unique values).",
      [
        "type": .string("array"), "minItems": .integer(2), "uniqueItems": .bool(true),
        "items": .object(["type": strings(["string", "number", "boolean"])]),
      ])
    return closedObject(
      nil, keys: ManifestKeys.data, required: ["train"],
      [
        "train": reference("dataSource"),
        "test": described(
          reference("dataSource"), "Optional separate test file; else carved by split."),
        "labels": labels,
        "split": reference("split"),
        "max_length": integer(2, 4096, "Text: tokens per example with [CLS]/[SEP]; default 128."),
      ])
  }

  private static var dataSource: JSONValue {
    let table = closedObject(
      nil, keys: ManifestKeys.table, required: ManifestKeys.table,
      [
        "format": enumeration(["csv", "tsv", "jsonl"], "A table of texts and labels."),
        "path": nonEmptyString,
        "text": described(nonEmptyString, "The text column."),
        "label": described(nonEmptyString, "The label column."),
      ])
    let images = closedObject(
      nil, keys: ManifestKeys.images, required: ManifestKeys.images,
      [
        "format": enumeration(["idx"], "IDX image and label files (.gz allowed)."),
        "images": nonEmptyString,
        "labels": nonEmptyString,
      ])
    return .object(["oneOf": .array([table, images])])
  }

  private static var split: JSONValue {
    closedObject(
      nil, keys: ManifestKeys.split,
      [
        "validation": fraction("Default 0.1; validation + test < 1."),
        "test": fraction("Default 0.2 without data.test, else 0."),
        "group_by": described(
          nonEmptyString, "A column whose equal values stay on one side of every split."),
        "seed": integer(0, nil, "Default 0."),
        "part": described(
          .object(["type": .string("string"), "pattern": .string("^[0-9]+/[0-9]+$")]),
          "\"K/N\": keep the K-th of N equal parts of the examples before splitting (a fixed shuffle, so stages see complementary parts)."
        ),
      ])
  }

  private static var optimizer: JSONValue {
    closedObject(
      nil, keys: ManifestKeys.optimizer,
      [
        "name": enumeration(["adamw"], "The only optimizer."),
        "lr": object(
          "Learning rate (default 1e-3).",
          ["type": .string("number"), "exclusiveMinimum": .integer(0)]),
        "weight_decay": object(
          "Default 0.", ["type": .string("number"), "minimum": .integer(0)]),
        "warmup": fraction("Fraction of steps (default 0)."),
      ])
  }

  private static var output: JSONValue {
    closedObject(
      nil, keys: ManifestKeys.output,
      [
        "dir": object(
          "Relative or absolute, without '..' or '~'; default checkpoints/<name>.",
          [
            "type": .string("string"), "minLength": .integer(1),
            "not": .object(["pattern": .string("^~|^/+$|(^|/)\\.\\.(/|$)")]),
          ]),
        "compress": object(
          "Also write the W-free model (default false).", ["type": .string("boolean")]),
        "onnx": object(
          "Also write onnx/: the deployed model as ONNX (opset 17) with vocab.txt and surgeon.json (default false).",
          ["type": .string("boolean")]),
        "checkpoint_every": object(
          "Steps between saved training states.",
          ["type": strings(["integer", "null"]), "minimum": .integer(1)]),
      ])
  }

  // MARK: helpers

  /// An object schema that refuses unknown keys; `keys` (the decoder's) fixes the properties.
  private static func closedObject(
    _ description: String?, keys: [String], required: [String] = [],
    _ schemas: [String: JSONValue]
  ) -> JSONValue {
    var members: [String: JSONValue] = [
      "type": .string("object"), "additionalProperties": .bool(false),
      "properties": properties(keys, schemas),
    ]
    if let description { members["description"] = .string(description) }
    if !required.isEmpty { members["required"] = strings(required) }
    return .object(members)
  }

  /// Exactly the decoder's keys; a key without a schema accepts anything (the tests catch it).
  private static func properties(_ keys: [String], _ schemas: [String: JSONValue]) -> JSONValue {
    var result: [String: JSONValue] = [:]
    for key in keys { result[key] = schemas[key] ?? .object([:]) }
    return .object(result)
  }

  private static func object(_ description: String, _ members: [String: JSONValue]) -> JSONValue {
    var members = members
    members["description"] = .string(description)
    return .object(members)
  }

  private static func reference(_ name: String) -> JSONValue {
    .object(["$ref": .string("#/definitions/\(name)")])
  }

  /// Draft-07 ignores the siblings of `$ref`, so a described reference is wrapped in allOf.
  private static func described(_ schema: JSONValue, _ description: String) -> JSONValue {
    guard case .object(var members) = schema, members["$ref"] == nil else {
      return .object(["allOf": .array([schema]), "description": .string(description)])
    }
    members["description"] = .string(description)
    return .object(members)
  }

  private static func rule(_ key: String, _ schema: JSONValue) -> JSONValue {
    .object([
      "type": .string("object"), "additionalProperties": .bool(false),
      "required": strings([key]), "properties": .object([key: schema]),
    ])
  }

  private static var nonEmptyString: JSONValue {
    .object(["type": .string("string"), "minLength": .integer(1)])
  }

  private static func strings(_ values: [String]) -> JSONValue {
    .array(values.map { .string($0) })
  }

  private static func enumeration(_ values: [String], _ description: String) -> JSONValue {
    object(description, ["enum": strings(values)])
  }

  private static func integer(_ minimum: Int, _ maximum: Int?, _ description: String) -> JSONValue {
    var members: [String: JSONValue] = [
      "type": .string("integer"), "minimum": .integer(minimum),
    ]
    if let maximum { members["maximum"] = .integer(maximum) }
    return object(description, members)
  }

  /// A number in [0, 1).
  private static func fraction(_ description: String) -> JSONValue {
    object(
      description,
      ["type": .string("number"), "minimum": .integer(0), "exclusiveMaximum": .integer(1)])
  }

  /// "If model.family is vgg, train.distill has no attention key."
  private static var vggHasNoAttention: JSONValue {
    let condition: JSONValue = .object([
      "properties": .object([
        "model": .object([
          "properties": .object(["family": .object(["const": .string("vgg")])]),
          "required": strings(["family"]),
        ])
      ]),
      "required": strings(["model"]),
    ])
    let consequence: JSONValue = .object([
      "properties": .object([
        "train": .object([
          "properties": .object([
            "distill": .object(["not": .object(["required": strings(["attention"])])])
          ])
        ])
      ])
    ])
    return .object(["if": condition, "then": consequence])
  }

  /// "If model.family is FAMILY, train.task (when given) must be TASK."
  private static func taskMatchesFamily(family: String, task: String) -> JSONValue {
    let condition: JSONValue = .object([
      "properties": .object([
        "model": .object([
          "properties": .object(["family": .object(["const": .string(family)])]),
          "required": strings(["family"]),
        ])
      ]),
      "required": strings(["model"]),
    ])
    let consequence: JSONValue = .object([
      "properties": .object([
        "train": .object(["properties": .object(["task": .object(["const": .string(task)])])])
      ])
    ])
    return .object(["if": condition, "then": consequence])
  }
}

extension JSONValue {
  /// Sets a member of an object; does nothing to other values.
  subscript(key: String) -> JSONValue? {
    get {
      guard case .object(let members) = self else { return nil }
      return members[key]
    }
    set {
      guard case .object(var members) = self else { return }
      members[key] = newValue
      self = .object(members)
    }
  }
}
