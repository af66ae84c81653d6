import Foundation

/// Reads a whole file. Foundation's reader keeps a 4 KB buffer it never frees when the file is
/// empty (LeakSanitizer reports it), and empty files are what a broken merge or a full disk leaves
/// behind, so an empty file is answered without it.
public enum FileContents {
  /// The bytes of the file at `path`; nil when there is no readable file there.
  public static func read(_ path: String) -> Data? {
    guard let attributes = try? FileManager.default.attributesOfItem(atPath: path),
      attributes[.type] as? FileAttributeType != .typeDirectory
    else { return nil }
    if (attributes[.size] as? NSNumber)?.intValue == 0,
      attributes[.type] as? FileAttributeType == .typeRegular
    {
      return Data()
    }
    return FileManager.default.contents(atPath: path)
  }
}
