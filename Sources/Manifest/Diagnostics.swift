import Plumbing

/// A position in a manifest: the file as given and libyaml's 1-based line and column.
///
/// Columns count Unicode scalars, as libyaml's marks do, so they match what an editor shows for
/// UTF-8 text.
public struct SourceLocation: Sendable, Equatable, Hashable, Comparable {
  public var file: String
  public var line: Int
  public var column: Int

  public init(file: String, line: Int, column: Int) {
    self.file = file
    self.line = line
    self.column = column
  }

  /// "LINE:COL", the form messages use to point at another node of the same file.
  public var lineColumn: String { "\(line):\(column)" }

  /// Orders by file, then line, then column: the order diagnostics are reported in.
  public static func < (lhs: SourceLocation, rhs: SourceLocation) -> Bool {
    (lhs.file, lhs.line, lhs.column) < (rhs.file, rhs.line, rhs.column)
  }
}

/// Whether a diagnostic makes the manifest invalid (error) or only deserves attention (warning).
public enum Severity: String, Sendable, Equatable, Hashable {
  case error
  case warning
}

/// One finding about a manifest: where, how bad, what is wrong and, when obvious, how to fix it.
public struct Diagnostic: Sendable, Equatable, Hashable {
  public var location: SourceLocation
  public var severity: Severity
  public var message: String
  public var fix: String?

  public init(location: SourceLocation, severity: Severity, message: String, fix: String? = nil) {
    self.location = location
    self.severity = severity
    self.message = message
    self.fix = fix
  }

  /// The message followed by "; FIX" when there is a fix: what every output format shows.
  public var fullMessage: String {
    guard let fix else { return message }
    return "\(message); \(fix)"
  }

  /// The compiler-style line "FILE:LINE:COL: error: MESSAGE; FIX" that editors and terminals
  /// recognise.
  public var text: String {
    "\(location.file):\(location.line):\(location.column): \(severity.rawValue): \(fullMessage)"
  }
}

/// How `render(_:as:)` prints diagnostics: for people, for GitHub Actions annotations, for tools.
public enum DiagnosticFormat: String, Sendable, CaseIterable {
  case text
  case github
  case json
}

/// The diagnostics in `format`, one per line for text and github (no trailing newline), a JSON
/// list of `{file, line, column, severity, message}` objects for json.
public func render(_ diagnostics: [Diagnostic], as format: DiagnosticFormat) -> String {
  switch format {
  case .text:
    return diagnostics.map(\.text).joined(separator: "\n")
  case .github:
    return diagnostics.map(githubAnnotation).joined(separator: "\n")
  case .json:
    let objects = diagnostics.map { diagnostic -> JSONValue in
      .object([
        "file": .string(diagnostic.location.file),
        "line": .integer(diagnostic.location.line),
        "column": .integer(diagnostic.location.column),
        "severity": .string(diagnostic.severity.rawValue),
        "message": .string(diagnostic.fullMessage),
      ])
    }
    return JSONValue.array(objects).serialized()
  }
}

/// A GitHub workflow command; its data and properties are escaped as the runner expects, so a
/// message with a newline or a file name with a comma stays one annotation.
private func githubAnnotation(_ diagnostic: Diagnostic) -> String {
  func escape(_ text: String, property: Bool) -> String {
    var result = ""
    for character in text {
      switch character {
      case "%": result += "%25"
      case "\r": result += "%0D"
      case "\n": result += "%0A"
      case "\r\n": result += "%0D%0A"
      case ":" where property: result += "%3A"
      case "," where property: result += "%2C"
      default: result.append(character)
      }
    }
    return result
  }
  let location = diagnostic.location
  return "::\(diagnostic.severity.rawValue) file=\(escape(location.file, property: true)),"
    + "line=\(location.line),col=\(location.column)::\(escape(diagnostic.fullMessage, property: false))"
}
