/// Why a file could not be used, for the person who has to repair it: the file, where in it, what
/// is wrong and what to do. Every module's file errors are this one value, so they all read the
/// same (`FILE[:PLACE]: error: PROBLEM[; FIX]`, the shape editors and CI annotate) and one error
/// can quote another without a second `error:`.
public struct UserError: Error, CustomStringConvertible, Sendable, Equatable {
  /// The file as the caller named it.
  public var file: String
  /// Where in the file: "12:3", "line 12", "record 40", "byte 16"; nil when the whole file is at
  /// fault (a tensor at fault is named in the problem).
  public var location: String?
  /// What is wrong.
  public var problem: String
  /// What to do about it, when there is something better than "fix the file".
  public var fix: String?

  public init(file: String, location: String? = nil, problem: String, fix: String? = nil) {
    self.file = file
    self.location = location
    self.problem = problem
    self.fix = fix
  }

  /// `path:` rather than `file:` for errors about a path being written.
  public init(path: String, problem: String, fix: String) {
    self.init(file: path, problem: problem, fix: fix)
  }

  /// The file, for errors about a path being written.
  public var path: String { file }

  /// `FILE[:PLACE]: error: PROBLEM[; FIX]`.
  public var description: String { rendered(severity: "error") }

  /// `FILE[:PLACE]: PROBLEM[; FIX]`: the error as a clause of another message (a manifest
  /// diagnostic quoting a data file's error), so no message carries two `error:` prefixes.
  public var quoted: String { rendered(severity: nil) }

  /// `FILE[:PLACE]: SEVERITY: PROBLEM[; FIX]` (no severity: as `quoted`).
  public func rendered(severity: String?) -> String {
    var result = file
    if let location { result += ":" + location }
    if let severity { result += ": " + severity }
    result += ": " + problem
    if let fix { result += "; " + fix }
    return result
  }
}

/// `error` as a clause of another message: a `UserError` quoted (its own file and place, no
/// second `error:`), any other error as it describes itself.
public func quotedDescription(of error: any Error) -> String {
  if let error = error as? UserError { return error.quoted }
  return "\(error)"
}
