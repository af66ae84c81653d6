import Models
import Tensor
import XCTest

/// Parameter totals of the presets: the original research notes' Keras counts and torchvision's.
final class PresetTests: XCTestCase {
  private func parameterCount(_ preset: String, classes: Int? = nil) throws -> Int {
    var architecture = try XCTUnwrap(Preset.architecture(named: preset), preset)
    if let classes { architecture = architecture.withClasses(classes) }
    return Model(architecture: architecture, initialization: .zeros).parameterCount
  }

  func testBERTPresetTotals() throws {
    XCTAssertEqual(try parameterCount("bert-tiny"), 4_385_920)
    XCTAssertEqual(try parameterCount("bert-tiny", classes: 2), 4_386_178)
    XCTAssertEqual(try parameterCount("bert-small", classes: 2), 28_764_674)
    XCTAssertEqual(try parameterCount("bert-medium", classes: 2), 41_374_210)
    XCTAssertEqual(try parameterCount("bert-base", classes: 2), 109_483_778)
  }

  func testVGGPresetTotals() throws {
    XCTAssertEqual(try parameterCount("vgg16-cifar"), 14_982_474)
    XCTAssertEqual(try parameterCount("vgg16"), 138_357_544)
    // torchvision's published counts for the other variants.
    XCTAssertEqual(try parameterCount("vgg11"), 132_863_336)
    XCTAssertEqual(try parameterCount("vgg13"), 133_047_848)
    XCTAssertEqual(try parameterCount("vgg19"), 143_667_240)
    XCTAssertEqual(try parameterCount("vgg16-bn"), 138_365_992)
  }

  func testEveryPresetHasNamedRolesAndNoUnknownName() throws {
    for name in Preset.names {
      let architecture = try XCTUnwrap(Preset.architecture(named: name))
      let nodes = Model(architecture: architecture, initialization: .zeros).nodes
      XCTAssertEqual(Set(nodes.map(\.name)).count, nodes.count, "\(name): node names are unique")
    }
    XCTAssertNil(Preset.architecture(named: "vgg17"))
  }

  func testBERTNodeNamesAndRolesFollowHuggingFace() throws {
    let architecture = try XCTUnwrap(Preset.architecture(named: "bert-tiny")).withClasses(2)
    let nodes = Model(architecture: architecture, initialization: .zeros, bertPrefix: "bert.")
      .nodes
    let byName = Dictionary(uniqueKeysWithValues: nodes.map { ($0.name, $0) })
    XCTAssertEqual(byName["bert.encoder.layer.1.attention.self.query"]?.role, .query)
    XCTAssertEqual(byName["bert.encoder.layer.1.attention.self.query"]?.block, 1)
    XCTAssertEqual(byName["bert.encoder.layer.0.intermediate.dense"]?.role, .ffnIntermediate)
    XCTAssertEqual(byName["bert.encoder.layer.0.output.dense"]?.role, .ffnOutput)
    XCTAssertEqual(byName["bert.encoder.layer.0.output.LayerNorm"]?.role, .ffnNorm)
    XCTAssertEqual(byName["bert.encoder.layer.0.attention.output.dense"]?.role, .attentionOutput)
    XCTAssertEqual(byName["bert.pooler.dense"]?.role, .pooler)
    XCTAssertEqual(byName["classifier"]?.role, .classifier)
    XCTAssertEqual(byName["bert.embeddings.word_embeddings"]?.kind, .embedding)
  }

  func testVGGNodeNamesFollowTorchvisionIndices() throws {
    let architecture = try XCTUnwrap(Preset.architecture(named: "vgg11-bn"))
    let nodes = Model(architecture: architecture, initialization: .zeros).nodes
    let names = nodes.map(\.name)
    // conv 0, bn 1, relu 2, pool 3, conv 4 …; classifier Linears at 0, 3, 6.
    XCTAssertEqual(Array(names.prefix(3)), ["features.0", "features.1", "features.4"])
    XCTAssertEqual(Array(names.suffix(3)), ["classifier.0", "classifier.3", "classifier.6"])
    XCTAssertEqual(nodes.last?.role, .head)
    XCTAssertEqual(nodes[nodes.count - 2].role, .fc)
    let norm = try XCTUnwrap(nodes.first { $0.kind == .batchNorm2d })
    XCTAssertEqual(norm.parameterCount, 128, "running statistics are buffers, not parameters")
    XCTAssertEqual(norm.buffers.count, 3)
  }

  func testSeededInitIsReproducibleAndScaled() throws {
    let architecture = try XCTUnwrap(Preset.architecture(named: "vgg16-cifar"))
    let first = Model(architecture: architecture, initialization: .seeded(3)).namedParameters
    let second = Model(architecture: architecture, initialization: .seeded(3)).namedParameters
    let other = Model(architecture: architecture, initialization: .seeded(4)).namedParameters
    XCTAssertTrue(first[0].1.isBitwiseEqual(to: second[0].1))
    XCTAssertFalse(first[0].1.isBitwiseEqual(to: other[0].1))
    // Kaiming-normal, fan out = 64·9: standard deviation √(2/576) ≈ 0.059.
    let weight = first[0].1
    let deviation = (weight.dot(weight) / Double(weight.count)).squareRoot()
    XCTAssertEqual(deviation, (2.0 / 576).squareRoot(), accuracy: 0.01)
  }
}
