/// Why a data file could not be used, in the compiler's format (`FILE:LOCATION: error: PROBLEM;
/// FIX`) so that editors and CI annotate the right place, and with a fix because the person who
/// reads it is the one who has to repair the file or the manifest.
public struct DatasetError: Error, CustomStringConvertible, Sendable {
  /// The file as the caller named it.
  public var file: String
  /// Where in the file: "line 12", "record 40", "byte 16"; nil when the whole file is at fault.
  public var location: String?
  public var problem: String
  public var fix: String?

  public init(file: String, location: String? = nil, problem: String, fix: String? = nil) {
    self.file = file
    self.location = location
    self.problem = problem
    self.fix = fix
  }

  public var description: String {
    var result = file
    if let location { result += ":" + location }
    result += ": error: " + problem
    if let fix { result += "; " + fix }
    return result
  }
}

/// `names` quoted and comma-separated, for messages that list what is available.
func quotedList(_ names: [String]) -> String {
  names.map { "'\($0)'" }.joined(separator: ", ")
}
