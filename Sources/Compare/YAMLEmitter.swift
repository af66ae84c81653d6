import Manifest

/// Writes a `YAMLNode` tree back as block-style YAML, and edits such trees: what `compare`
/// needs to derive one manifest per grid cell from a base manifest.
///
/// Scalars keep the style they were read with where that is safe (plain stays plain, so `16` is
/// still a number and `null` still null); anything else is written double-quoted. Comments and
/// anchors are not kept: a derived manifest is an output, its base is the file people edit.
public enum YAMLEmitter {
  /// The document as block YAML, ending with a newline.
  public static func emit(_ node: YAMLNode) -> String {
    var lines: [String] = []
    switch node.kind {
    case .scalar:
      lines.append(scalar(node))
    default:
      block(node, indent: 0, into: &lines)
    }
    return lines.joined(separator: "\n") + "\n"
  }

  /// A scalar's text as it must be written to read back the same value.
  static func scalar(_ node: YAMLNode) -> String {
    guard case .scalar(let text, let style) = node.kind else { return "" }
    if style == .plain, isSafePlain(text) { return text }
    var escaped = "\""
    for character in text.unicodeScalars {
      switch character {
      case "\"": escaped += "\\\""
      case "\\": escaped += "\\\\"
      case "\n": escaped += "\\n"
      case "\t": escaped += "\\t"
      case "\r": escaped += "\\r"
      default:
        if character.value < 0x20 {
          escaped += "\\x" + String(character.value, radix: 16).leftPadded(to: 2)
        } else {
          escaped.unicodeScalars.append(character)
        }
      }
    }
    return escaped + "\""
  }

  /// True when `text` written plain in block context reads back as the same plain scalar.
  static func isSafePlain(_ text: String) -> Bool {
    if text.isEmpty { return true }
    guard let first = text.first, let last = text.last else { return true }
    if "-?:,[]{}#&*!|>'\"%@`".contains(first) {
      // "-5" and "-x" are fine; "- x" or ": x" are indicators.
      if first == "-", text.count > 1, text.dropFirst().first != " " {
      } else {
        return false
      }
    }
    if first == " " || last == " " || text.contains(": ") || text.contains(" #")
      || text.hasSuffix(":") || text.contains("\n") || text.contains("\t")
    {
      return false
    }
    return true
  }

  private static func isCollection(_ node: YAMLNode) -> Bool {
    switch node.kind {
    case .scalar: return false
    case .mapping(let entries): return !entries.isEmpty
    case .sequence(let items): return !items.isEmpty
    }
  }

  private static func inline(_ node: YAMLNode) -> String {
    switch node.kind {
    case .scalar: return scalar(node)
    case .mapping: return "{}"
    case .sequence: return "[]"
    }
  }

  private static func block(_ node: YAMLNode, indent: Int, into lines: inout [String]) {
    let pad = String(repeating: " ", count: indent)
    switch node.kind {
    case .scalar:
      lines.append(pad + scalar(node))
    case .mapping(let entries):
      if entries.isEmpty {
        lines.append(pad + "{}")
        return
      }
      for (key, value) in entries {
        let keyText = scalar(key)
        if isCollection(value) {
          lines.append(pad + keyText + ":")
          block(value, indent: indent + 2, into: &lines)
        } else {
          let text = inline(value)
          lines.append(pad + keyText + ":" + (text.isEmpty ? "" : " " + text))
        }
      }
    case .sequence(let items):
      if items.isEmpty {
        lines.append(pad + "[]")
        return
      }
      for item in items {
        if isCollection(item) {
          var nested: [String] = []
          block(item, indent: indent + 2, into: &nested)
          // The first line of the nested block starts at indent + 2: put the dash there.
          nested[0] = pad + "- " + nested[0].dropFirst(indent + 2)
          lines += nested
        } else {
          let text = inline(item)
          lines.append(pad + "-" + (text.isEmpty ? "" : " " + text))
        }
      }
    }
  }
}

extension String {
  fileprivate func leftPadded(to width: Int) -> String {
    String(repeating: "0", count: max(0, width - count)) + self
  }
}

/// Edits of `YAMLNode` trees by key path.
extension YAMLNode {
  /// A plain scalar (a number, a bare word) at `location`.
  public static func plain(_ text: String, at location: SourceLocation) -> YAMLNode {
    YAMLNode(.scalar(text, style: .plain), location: location)
  }

  /// The value under `key` of a mapping (the last entry when a key repeats); nil otherwise.
  public subscript(key: String) -> YAMLNode? {
    guard case .mapping(let entries) = kind else { return nil }
    return entries.last { $0.key.scalarText == key }?.value
  }

  /// `patch` merged into `self`: mappings merge key by key (recursively); any other patch
  /// value (a scalar, a sequence, a mapping over a non-mapping) replaces what was there.
  public func merged(with patch: YAMLNode) -> YAMLNode {
    guard case .mapping(var entries) = kind, case .mapping(let patchEntries) = patch.kind else {
      return patch
    }
    for (key, value) in patchEntries {
      if let index = entries.lastIndex(where: { $0.key.scalarText == key.scalarText }) {
        entries[index].value = entries[index].value.merged(with: value)
      } else {
        entries.append((key, value))
      }
    }
    var result = self
    result.kind = .mapping(entries)
    return result
  }

  /// The mapping without the entries named `keys` (anything else unchanged).
  public func removing(keys: Set<String>) -> YAMLNode {
    guard case .mapping(let entries) = kind else { return self }
    var result = self
    result.kind = .mapping(entries.filter { !keys.contains($0.key.scalarText ?? "") })
    return result
  }

  /// Sets the value at `path` (mapping keys), creating the mappings on the way.
  public mutating func set(_ path: [String], to value: YAMLNode) {
    guard let key = path.first else {
      self = value
      return
    }
    var entries: [(key: YAMLNode, value: YAMLNode)]
    if case .mapping(let existing) = kind { entries = existing } else { entries = [] }
    let rest = Array(path.dropFirst())
    if let index = entries.lastIndex(where: { $0.key.scalarText == key }) {
      entries[index].value.set(rest, to: value)
    } else {
      var child = YAMLNode(.mapping([]), location: location)
      child.set(rest, to: value)
      entries.append((.plain(key, at: location), child))
    }
    kind = .mapping(entries)
  }
}
