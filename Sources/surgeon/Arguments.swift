import Models
import Plumbing

/// A command-line mistake: printed with the command's usage, exit status 2.
struct UsageError: Error {
  var message: String
}

/// A problem with the user's files or data: printed as is, exit status 1.
struct CommandError: Error {
  var message: String
}

/// The arguments of one subcommand: positionals, `--name value` options and `--flag`s.
struct Arguments {
  private(set) var positionals: [String] = []
  private var values: [String: String] = [:]
  private var flags: Set<String> = []

  init(_ arguments: [String], options: Set<String>, flags allowedFlags: Set<String>)
    throws(UsageError)
  {
    var index = 0
    while index < arguments.count {
      let argument = arguments[index]
      index += 1
      guard argument.hasPrefix("--"), argument.count > 2 else {
        positionals.append(argument)
        continue
      }
      var name = String(argument.dropFirst(2))
      var inlineValue: String?
      if let equals = name.firstIndex(of: "=") {
        inlineValue = String(name[name.index(after: equals)...])
        name = String(name[..<equals])
      }
      if allowedFlags.contains(name) {
        guard inlineValue == nil else { throw UsageError(message: "--\(name) takes no value") }
        flags.insert(name)
      } else if options.contains(name) {
        if let inlineValue {
          values[name] = inlineValue
        } else {
          guard index < arguments.count else {
            throw UsageError(message: "--\(name) needs a value")
          }
          values[name] = arguments[index]
          index += 1
        }
      } else {
        let known = (options.union(allowedFlags)).sorted()
        let suggestion = closestName(to: name, in: known).map { " (did you mean --\($0)?)" } ?? ""
        throw UsageError(message: "unknown option --\(name)\(suggestion)")
      }
    }
  }

  func value(_ name: String) -> String? { values[name] }
  func flag(_ name: String) -> Bool { flags.contains(name) }

  func integer(_ name: String, in range: ClosedRange<Int>) throws(UsageError) -> Int? {
    guard let text = values[name] else { return nil }
    guard let number = Int(text), range.contains(number) else {
      throw UsageError(
        message:
          "--\(name) must be an integer in \(range.lowerBound)...\(range.upperBound), not '\(text)'"
      )
    }
    return number
  }
}
