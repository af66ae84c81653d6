import Tensor

extension LowRankAdapter {
  mutating func visitParameters(_ body: (String, inout Tensor) -> Void) {
    body(downName, &down)
    body(upName, &up)
    if bias != nil { body(biasName, &bias!) }
  }
}

extension LayerNorm {
  mutating func visitParameters(_ body: (String, inout Tensor) -> Void) {
    body(weightName, &weight)
    body(biasName, &bias)
  }
}

extension BertModel {
  /// Every Linear of the graph by node name, writable (the rewriter attaches adapters here).
  public mutating func visitLinears(_ body: (inout Linear) -> Void) {
    for index in layers.indices {
      body(&layers[index].query)
      body(&layers[index].key)
      body(&layers[index].value)
      body(&layers[index].attentionOutput)
      body(&layers[index].intermediate)
      body(&layers[index].output)
    }
    if pooler != nil { body(&pooler!) }
    if classifier != nil { body(&classifier!) }
  }

  /// Every parameter by tensor name, writable, in node order.
  public mutating func visitParameters(_ body: (String, inout Tensor) -> Void) {
    body(wordEmbeddings.weightName, &wordEmbeddings.weight)
    body(positionEmbeddings.weightName, &positionEmbeddings.weight)
    body(tokenTypeEmbeddings.weightName, &tokenTypeEmbeddings.weight)
    embeddingNorm.visitParameters(body)
    for index in layers.indices {
      layers[index].query.visitParameters(body)
      layers[index].key.visitParameters(body)
      layers[index].value.visitParameters(body)
      layers[index].attentionOutput.visitParameters(body)
      layers[index].attentionNorm.visitParameters(body)
      layers[index].intermediate.visitParameters(body)
      layers[index].output.visitParameters(body)
      layers[index].outputNorm.visitParameters(body)
    }
    if pooler != nil { pooler!.visitParameters(body) }
    if classifier != nil { classifier!.visitParameters(body) }
  }
}

extension VGGModel {
  /// Every Linear (classifier) and Conv2d (features) by node name, writable.
  public mutating func visitLayers(
    linear: (inout Linear) -> Void, convolution: (inout Conv2d) -> Void
  ) {
    for index in features.indices {
      if case .convolution(var conv) = features[index] {
        convolution(&conv)
        features[index] = .convolution(conv)
      }
    }
    for index in classifier.indices { linear(&classifier[index]) }
  }

  public mutating func visitParameters(_ body: (String, inout Tensor) -> Void) {
    for index in features.indices {
      switch features[index] {
      case .convolution(var conv):
        conv.visitParameters(body)
        features[index] = .convolution(conv)
      case .batchNorm(var norm):
        body(norm.weightName, &norm.weight)
        body(norm.biasName, &norm.bias)
        features[index] = .batchNorm(norm)
      case .relu, .maxPool:
        break
      }
    }
    for index in classifier.indices { classifier[index].visitParameters(body) }
  }
}

extension Model {
  /// Every parameter (adapters included) by tensor name, writable, in node order.
  public mutating func visitParameters(_ body: (String, inout Tensor) -> Void) {
    switch self {
    case .bert(var model):
      model.visitParameters(body)
      self = .bert(model)
    case .vgg(var model):
      model.visitParameters(body)
      self = .vgg(model)
    }
  }

  /// Every wrappable node (Linear or Conv2d), writable.
  public mutating func visitWrappable(
    linear: (inout Linear) -> Void, convolution: (inout Conv2d) -> Void
  ) {
    switch self {
    case .bert(var model):
      model.visitLinears(linear)
      self = .bert(model)
    case .vgg(var model):
      model.visitLayers(linear: linear, convolution: convolution)
      self = .vgg(model)
    }
  }

  /// Every wrappable node's weight as an `out × fan_in` matrix (a convolution's kernel
  /// flattened per output channel), by node name: what whitening and its refit factor.
  public var wrappableWeightMatrices: [String: Tensor] {
    var weights: [String: Tensor] = [:]
    var copy = self
    copy.visitWrappable(
      linear: { weights[$0.name] = $0.weight },
      convolution: {
        weights[$0.name] = $0.weight.reshaped([
          $0.weight.shape[0], $0.weight.count / $0.weight.shape[0],
        ])
      })
    return weights
  }
}

extension Model {
  /// Batch-norm running statistics by tensor name (buffers training moves; saved for resume).
  public var runningStatistics: [String: Tensor] {
    guard case .vgg(let model) = self else { return [:] }
    var result: [String: Tensor] = [:]
    for feature in model.features {
      if case .batchNorm(let norm) = feature {
        result[norm.name + ".running_mean"] = norm.runningMean
        result[norm.name + ".running_var"] = norm.runningVariance
        result[norm.name + ".num_batches_tracked"] = Tensor(
          shape: [1], scalars: [Float(norm.batchesTracked)])
      }
    }
    return result
  }

  /// Restores `runningStatistics` saved earlier (names that do not match are ignored).
  public mutating func restoreRunningStatistics(_ statistics: [String: Tensor]) {
    guard case .vgg(var model) = self else { return }
    for index in model.features.indices {
      guard case .batchNorm(var norm) = model.features[index] else { continue }
      if let mean = statistics[norm.name + ".running_mean"] { norm.runningMean = mean }
      if let variance = statistics[norm.name + ".running_var"] { norm.runningVariance = variance }
      if let tracked = statistics[norm.name + ".num_batches_tracked"] {
        norm.batchesTracked = Int64(tracked[flat: 0])
      }
      model.features[index] = .batchNorm(norm)
    }
    self = .vgg(model)
  }
}
