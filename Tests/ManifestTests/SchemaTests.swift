import Foundation
import Manifest
import XCTest

final class SchemaTests: XCTestCase {
  func schema() throws -> [String: Any] {
    let text = ManifestSchema.json()
    return try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any])
  }

  func definition(_ name: String) throws -> [String: Any] {
    let definitions = try XCTUnwrap(try schema()["definitions"] as? [String: Any])
    return try XCTUnwrap(definitions[name] as? [String: Any], name)
  }

  func propertyNames(_ object: [String: Any]) -> Set<String> {
    Set((object["properties"] as? [String: Any])?.keys.map { $0 } ?? [])
  }

  func testIsDraft07JSONListingEveryTopLevelKey() throws {
    let document = try schema()
    XCTAssertEqual(document["$schema"] as? String, "http://json-schema.org/draft-07/schema#")
    XCTAssertEqual(
      propertyNames(document),
      ["surgeon", "name", "model", "surgery", "train", "output", "expect"])
    XCTAssertEqual(document["required"] as? [String], ["surgeon", "name", "model"])
    XCTAssertEqual(document["additionalProperties"] as? Bool, false)
  }

  func testIsDeterministicAndSorted() {
    let text = ManifestSchema.json()
    XCTAssertEqual(text, ManifestSchema.json())
    XCTAssertTrue(text.hasPrefix("{\n  \"$schema\": "), String(text.prefix(40)))
  }

  /// The contract's keys, section by section (written out here, not taken from the decoder).
  func testEverySectionListsExactlyTheContractsKeys() throws {
    XCTAssertEqual(
      propertyNames(try definition("model")),
      ["family", "checkpoint", "preset", "weights", "config", "head", "seed"])
    XCTAssertEqual(
      propertyNames(try definition("lora")),
      [
        "layers", "exclude", "blocks", "rank", "alpha", "init", "bias_c", "conv_form", "decay",
        "noise", "budget", "calibration", "refit",
      ], "format 1's keys plus surgeon's lora.budget, lora.calibration and lora.refit")
    XCTAssertEqual(propertyNames(try definition("decay")), ["shape", "start", "end"])
    XCTAssertEqual(
      propertyNames(try definition("noise")), ["stats", "clear_below", "scale", "spectral_cap"],
      "format 1's keys plus surgeon's noise.spectral_cap")
    XCTAssertEqual(
      propertyNames(try definition("train")),
      ["task", "data", "steps", "batch_size", "optimizer", "eval_every", "seed", "distill"],
      "format 1's keys plus surgeon's train.distill")
    XCTAssertEqual(
      propertyNames(try definition("data")), ["train", "test", "labels", "split", "max_length"])
    XCTAssertEqual(
      propertyNames(try definition("split")), ["validation", "test", "group_by", "seed", "part"],
      "format 1's keys plus surgeon's split.part")
    XCTAssertEqual(
      propertyNames(try definition("optimizer")), ["name", "lr", "weight_decay", "warmup"])
    XCTAssertEqual(
      propertyNames(try definition("output")), ["dir", "compress", "onnx", "checkpoint_every"])
    let sources = try XCTUnwrap(try definition("dataSource")["oneOf"] as? [[String: Any]])
    XCTAssertEqual(
      sources.map(propertyNames),
      [["format", "path", "text", "label"], ["format", "images", "labels"]])
  }

  func testEveryReferenceResolves() throws {
    let document = try schema()
    let definitions = try XCTUnwrap(document["definitions"] as? [String: Any])
    var references: [String] = []
    func walk(_ value: Any) {
      if let object = value as? [String: Any] {
        if let reference = object["$ref"] as? String { references.append(reference) }
        object.values.forEach(walk)
      } else if let array = value as? [Any] {
        array.forEach(walk)
      }
    }
    walk(document)
    XCTAssertGreaterThan(references.count, 10)
    for reference in references {
      XCTAssertTrue(reference.hasPrefix("#/definitions/"), reference)
      XCTAssertNotNil(definitions[String(reference.dropFirst("#/definitions/".count))], reference)
    }
  }

  func testTheContractsExampleConformsAndBrokenOnesDoNot() throws {
    let validator = SchemaValidator(schema: try schema())
    let example = try Fixtures.text("good/minilm-rotten-tomatoes.yaml")
    XCTAssertEqual(try validator.errors(yaml: example), [])
    let presetManifest =
      "surgeon: 1\nname: t\nmodel: {family: vgg, preset: vgg16-cifar, weights: random}\n"
    XCTAssertEqual(try validator.errors(yaml: presetManifest), [])
    let expecting =
      presetManifest
      + "output: {dir: /scratch/run}\nexpect: {trainable: 5, total: \">= 100\", coverage: \">= 0.9\", wrapped: 0}\n"
    XCTAssertEqual(try validator.errors(yaml: expecting), [])
    let broken = [
      "surgeon: 2\nname: t\nmodel: {family: bert, checkpoint: x}\n",
      "surgeon: 1\nname: 'a b'\nmodel: {family: bert, checkpoint: x}\n",
      "surgeon: 1\nname: t\nmodel: {family: bert, checkpoint: x, preset: bert-tiny, weights: random}\n",
      "surgeon: 1\nname: t\nmodel: {family: bert, preset: vgg16, weights: random}\n",
      "surgeon: 1\nname: t\nmodel: {family: bert, checkpoint: x, weights: random}\n",
      "surgeon: 1\nname: t\nmodel: {family: bert, checkpoint: x}\nsurgery: [{lora: {layers: q, rnak: 2}}]\n",
      "surgeon: 1\nname: t\nmodel: {family: bert, checkpoint: x}\nsurgery: [{lora: {layers: q, rank: 2, noise: {}}}]\n",
      "surgeon: 1\nname: t\nmodel: {family: bert, checkpoint: x}\nsurgery: [{lora: {layers: q, rank: 2}, freeze: [x]}]\n",
      "surgeon: 1\nname: t\nmodel: {family: vgg, checkpoint: x}\ntrain: {task: text-classification, steps: 1, data: {train: {format: csv, path: a, text: t, label: l}}}\n",
      "surgeon: 1\nname: t\nmodel: {family: bert, checkpoint: x}\noutput: {dir: ../x}\n",
      "surgeon: 1\nname: t\nmodel: {family: bert, checkpoint: x}\noutput: {dir: /x/../y}\n",
      "surgeon: 1\nname: t\nmodel: {family: bert, checkpoint: x}\noutput: {dir: ~/x}\n",
      "surgeon: 1\nname: t\nmodel: {family: bert, checkpoint: x}\nexpect: {trainabel: 5}\n",
      "surgeon: 1\nname: t\nmodel: {family: bert, checkpoint: x}\nexpect: {coverage: 1.5}\n",
      "surgeon: 1\nname: t\nmodel: {family: bert, checkpoint: x}\nexpect: {total: about}\n",
    ]
    for text in broken {
      XCTAssertNotEqual(try validator.errors(yaml: text), [], text)
    }
  }

  func testDeepDistillationKeysConformAsTheDecoderSays() throws {
    let validator = SchemaValidator(schema: try schema())
    func manifest(_ family: String, _ distill: String) -> String {
      let task = family == "bert" ? "text-classification" : "image-classification"
      let data =
        family == "bert"
        ? "{format: csv, path: a, text: t, label: l}" : "{format: idx, images: a, labels: b}"
      return
        "surgeon: 1\nname: t\nmodel: {family: \(family), checkpoint: x}\ntrain: {task: \(task), steps: 1, data: {train: \(data)}, distill: {teacher: t, \(distill)}}\n"
    }
    for (family, distill) in [
      ("bert", "hidden_states: all, attention: 0.5"),
      ("bert", "hidden_states: {layers: all, weight: 2}"),
      ("vgg", "hidden_states: {weight: 0.5}"),
    ] {
      let text = manifest(family, distill)
      XCTAssertEqual(try validator.errors(yaml: text), [], text)
      XCTAssertNotNil(ManifestDecoder.decode(text: text, file: "s.yaml").manifest, text)
    }
    for (family, distill) in [
      ("bert", "hidden_states: last"),
      ("bert", "hidden_states: {layers: [0, 1]}"),
      ("bert", "hidden_states: {weight: -1}"),
      ("bert", "attention: -0.5"),
      ("vgg", "attention: 0.5"),
    ] {
      let text = manifest(family, distill)
      XCTAssertNotEqual(try validator.errors(yaml: text), [], text)
      XCTAssertNil(ManifestDecoder.decode(text: text, file: "s.yaml").manifest, text)
    }
  }
}

/// Just enough of a draft-07 validator for the keywords ManifestSchema uses, so the tests can
/// check that the schema accepts what the decoder accepts (and refuses the obvious mistakes).
struct SchemaValidator {
  let schema: [String: Any]

  func errors(yaml: String) throws -> [String] {
    let (root, diagnostics) = YAMLParser.parse(yaml, file: "s.yaml")
    XCTAssertEqual(diagnostics, [])
    var problems: [String] = []
    validate(json(try XCTUnwrap(root)), against: schema, path: "$", problems: &problems)
    return problems
  }

  /// The JSON value yaml-language-server would see (YAML 1.2 core resolution of plain scalars).
  func json(_ node: YAMLNode) -> Any {
    switch node.kind {
    case .mapping(let entries):
      var object: [String: Any] = [:]
      for entry in entries { object[entry.key.scalarText ?? ""] = json(entry.value) }
      return object
    case .sequence(let items):
      return items.map(json)
    case .scalar(let text, let style):
      guard style == .plain, node.tag == nil else { return text }
      switch text {
      case "", "~", "null": return NSNull()
      case "true": return true
      case "false": return false
      default:
        if let integer = Int(text) { return integer }
        if let number = Double(text),
          text.rangeOfCharacter(from: .letters.subtracting(CharacterSet(charactersIn: "eE"))) == nil
        {
          return number
        }
        return text
      }
    }
  }

  func resolve(_ schema: [String: Any]) -> [String: Any] {
    guard let reference = schema["$ref"] as? String else { return schema }
    let name = String(reference.dropFirst("#/definitions/".count))
    return ((self.schema["definitions"] as? [String: Any])?[name] as? [String: Any]) ?? [:]
  }

  func matches(_ value: Any, _ schema: [String: Any]) -> Bool {
    var problems: [String] = []
    validate(value, against: schema, path: "", problems: &problems)
    return problems.isEmpty
  }

  func typeName(_ value: Any) -> String {
    switch value {
    case is NSNull: return "null"
    case is Bool: return "boolean"
    case is Int: return "integer"
    case is Double: return "number"
    case is String: return "string"
    case is [Any]: return "array"
    default: return "object"
    }
  }

  func equal(_ lhs: Any, _ rhs: Any) -> Bool {
    (lhs as? NSObject)?.isEqual(rhs) ?? false
  }

  func validate(_ value: Any, against raw: [String: Any], path: String, problems: inout [String]) {
    let schema = resolve(raw)
    func fail(_ why: String) { problems.append("\(path): \(why)") }
    if let types = schema["type"] {
      let allowed = (types as? [String]) ?? [(types as? String) ?? ""]
      let actual = typeName(value)
      let ok = allowed.contains(actual) || (actual == "integer" && allowed.contains("number"))
      if !ok { fail("type \(actual) not in \(allowed)") }
    }
    if let options = schema["enum"] as? [Any], !options.contains(where: { equal($0, value) }) {
      fail("not in enum")
    }
    if let constant = schema["const"], !equal(constant, value) { fail("not the const") }
    if let number = (value as? Double) ?? (value as? Int).map(Double.init), !(value is Bool) {
      if let minimum = schema["minimum"] as? Double, number < minimum { fail("below minimum") }
      if let maximum = schema["maximum"] as? Double, number > maximum { fail("above maximum") }
      if let bound = schema["exclusiveMinimum"] as? Double, number <= bound { fail("<= bound") }
      if let bound = schema["exclusiveMaximum"] as? Double, number >= bound { fail(">= bound") }
    }
    if let text = value as? String {
      if let minimum = schema["minLength"] as? Int, text.count < minimum { fail("too short") }
      if let pattern = schema["pattern"] as? String,
        text.range(of: pattern, options: .regularExpression) == nil
      {
        fail("does not match \(pattern)")
      }
    }
    if let array = value as? [Any] {
      if let minimum = schema["minItems"] as? Int, array.count < minimum { fail("too few items") }
      if let items = schema["items"] as? [String: Any] {
        for (index, item) in array.enumerated() {
          validate(item, against: items, path: "\(path)[\(index)]", problems: &problems)
        }
      }
    }
    if let object = value as? [String: Any] {
      let properties = schema["properties"] as? [String: Any] ?? [:]
      for (key, item) in object {
        if let property = properties[key] as? [String: Any] {
          validate(item, against: property, path: "\(path).\(key)", problems: &problems)
        } else if schema["additionalProperties"] as? Bool == false {
          fail("unknown key \(key)")
        }
      }
      for key in schema["required"] as? [String] ?? [] where object[key] == nil {
        fail("missing \(key)")
      }
      for (key, needed) in schema["dependencies"] as? [String: [String]] ?? [:]
      where object[key] != nil {
        for other in needed where object[other] == nil { fail("\(key) needs \(other)") }
      }
    }
    if let all = schema["allOf"] as? [[String: Any]] {
      for part in all { validate(value, against: part, path: path, problems: &problems) }
    }
    if let one = schema["oneOf"] as? [[String: Any]], one.filter({ matches(value, $0) }).count != 1
    {
      fail("not exactly one of oneOf")
    }
    if let not = schema["not"] as? [String: Any], matches(value, not) { fail("matches not") }
    if let condition = schema["if"] as? [String: Any], matches(value, condition),
      let then = schema["then"] as? [String: Any]
    {
      validate(value, against: then, path: path, problems: &problems)
    }
  }
}
