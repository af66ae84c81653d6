import Foundation
import Manifest
import Plumbing
import Tensor

/// How predictions are written: one JSON object per line, or CSV with a header.
public enum PredictionOutputFormat: Sendable {
  case jsonLines
  case csv

  /// CSV for a file name ending in `.csv`, JSON Lines otherwise.
  public init(fileName: String?) {
    self = fileName?.lowercased().hasSuffix(".csv") == true ? .csv : .jsonLines
  }
}

/// Turns probabilities into output lines, and counts correct predictions against labels.
public struct PredictionWriter: Sendable {
  public var format: PredictionOutputFormat
  public var labelNames: [String]
  /// Examples with a label seen so far, and how many of them were predicted right.
  public private(set) var labelled = 0
  public private(set) var correct = 0

  public init(format: PredictionOutputFormat, labelNames: [String]) {
    self.format = format
    self.labelNames = labelNames
  }

  /// The CSV header (`row,label,<class>…`), or nothing for JSON Lines.
  public var header: String {
    switch format {
    case .jsonLines: return ""
    case .csv:
      return (["row", "label"] + labelNames).map(Self.csvField).joined(separator: ",") + "\n"
    }
  }

  /// Correct share of the labelled examples; nil when none had a label.
  public var accuracy: Double? {
    labelled == 0 ? nil : Double(correct) / Double(labelled)
  }

  /// The lines for `probabilities` (`rows × classes`), the first being example `firstRow`
  /// (1-based, the input's order); `labels` are the examples' class ids when known.
  public mutating func lines(
    _ probabilities: Tensor, firstRow: Int, labels: ArraySlice<Int32>?
  ) -> String {
    let classes = probabilities.shape[1]
    var text = ""
    probabilities.withUnsafeBufferPointer { p in
      for row in 0..<probabilities.shape[0] {
        let values = p[row * classes..<(row + 1) * classes]
        var best = values.startIndex
        for index in values.indices where values[index] > values[best] { best = index }
        let predicted = best - row * classes
        if let labels {
          labelled += 1
          if labels[labels.startIndex + row] == Int32(predicted) { correct += 1 }
        }
        let number = firstRow + row
        switch format {
        case .jsonLines:
          let pairs = zip(labelNames, values).map { "\(JSONValue.quoted($0)): \($1)" }
          text +=
            "{\"row\": \(number), \"label\": \(JSONValue.quoted(labelNames[predicted])), "
            + "\"probabilities\": {\(pairs.joined(separator: ", "))}}\n"
        case .csv:
          text +=
            ([String(number), Self.csvField(labelNames[predicted])] + values.map { "\($0)" })
            .joined(separator: ",") + "\n"
        }
      }
    }
    return text
  }

  /// An RFC 4180 field: quoted when it holds a comma, a quote or a line break.
  static func csvField(_ value: String) -> String {
    guard value.contains(where: { $0 == "," || $0 == "\"" || $0 == "\n" || $0 == "\r" }) else {
      return value
    }
    return "\"" + value.replacingOccurrences(of: "\"", with: "\"\"") + "\""
  }
}
