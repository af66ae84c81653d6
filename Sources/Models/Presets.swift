/// The architecture a checkpoint or preset describes, before any weights exist.
public enum Architecture: Sendable, Equatable {
  /// A BERT and its head's class count (nil: no head).
  case bert(BertConfiguration, classes: Int?)
  case vgg(VGGConfiguration)

  /// The same architecture with a `classes`-way head.
  public func withClasses(_ classes: Int) -> Architecture {
    switch self {
    case .bert(let configuration, _):
      return .bert(configuration, classes: classes)
    case .vgg(var configuration):
      configuration.classCount = classes
      return .vgg(configuration)
    }
  }
}

/// The built-in architectures manifests and `surgeon summary --preset` name.
public enum Preset {
  /// Every preset name, in the order `--help` lists them.
  public static let names: [String] = [
    "bert-tiny", "bert-small", "bert-medium", "bert-base",
    "vgg11", "vgg11-bn", "vgg13", "vgg13-bn", "vgg16", "vgg16-bn", "vgg19", "vgg19-bn",
    "vgg16-cifar",
  ]

  /// torchvision's `cfgs` A, B, D, E (0 is a max-pool).
  private static let vggStages: [String: [Int]] = [
    "vgg11": [64, 0, 128, 0, 256, 256, 0, 512, 512, 0, 512, 512, 0],
    "vgg13": [64, 64, 0, 128, 128, 0, 256, 256, 0, 512, 512, 0, 512, 512, 0],
    "vgg16": [64, 64, 0, 128, 128, 0, 256, 256, 256, 0, 512, 512, 512, 0, 512, 512, 512, 0],
    "vgg19": [
      64, 64, 0, 128, 128, 0, 256, 256, 256, 256, 0, 512, 512, 512, 512, 0, 512, 512, 512, 512, 0,
    ],
  ]

  static func stages(_ widths: [Int]) -> [VGGConfiguration.Stage] {
    widths.map { $0 == 0 ? .maxPool : .convolution(channels: $0) }
  }

  /// The architecture of a preset (BERT presets without a head), or nil for an unknown name.
  public static func architecture(named name: String) -> Architecture? {
    func bert(layers: Int, hidden: Int, heads: Int) -> Architecture {
      .bert(
        BertConfiguration(
          hiddenSize: hidden, layerCount: layers, headCount: heads, intermediateSize: 4 * hidden),
        classes: nil)
    }
    switch name {
    case "bert-tiny": return bert(layers: 2, hidden: 128, heads: 2)
    case "bert-small": return bert(layers: 4, hidden: 512, heads: 8)
    case "bert-medium": return bert(layers: 8, hidden: 512, heads: 8)
    case "bert-base": return bert(layers: 12, hidden: 768, heads: 12)
    case "vgg16-cifar":
      // The notes' Keras VGG16: 13 convolutions on 3×32×32, then 512 → 512 → 10.
      return .vgg(
        VGGConfiguration(
          stages: stages(vggStages["vgg16"]!), batchNorm: false, inChannels: 3, imageSize: 32,
          classCount: 10, classifierHidden: [512], averagePool: nil, dropout: 0.5))
    default:
      let batchNorm = name.hasSuffix("-bn")
      let base = batchNorm ? String(name.dropLast(3)) : name
      guard let widths = vggStages[base] else { return nil }
      return .vgg(
        VGGConfiguration(
          stages: stages(widths), batchNorm: batchNorm, inChannels: 3, imageSize: 224,
          classCount: 1000, classifierHidden: [4096, 4096], averagePool: 7, dropout: 0.5))
    }
  }
}
