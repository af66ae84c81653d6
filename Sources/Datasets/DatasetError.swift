import Plumbing

/// Why a data file could not be used: the file, where in it ("line 12", "record 40", "byte 16";
/// nil when the whole file is at fault), the problem and a fix, because the person who reads it
/// is the one who has to repair the file or the manifest.
public typealias DatasetError = UserError

/// `names` quoted and comma-separated, for messages that list what is available.
func quotedList(_ names: [String]) -> String {
  names.map { "'\($0)'" }.joined(separator: ", ")
}
