import CYAML

/// libyaml's version string (the linked library, not the header).
public var yamlLibraryVersion: String {
  String(cString: yaml_get_version_string())
}

/// A scalar of a YAML document with the 1-based line and column libyaml reported for it.
public struct YAMLScalar: Equatable, Sendable {
  public var value: String
  public var line: Int
  public var column: Int
}

/// A YAML syntax error with its 1-based position.
public struct YAMLSyntaxError: Error, Equatable, Sendable {
  public var message: String
  public var line: Int
  public var column: Int
}

/// Every scalar of `text` in document order, through libyaml's event API.
///
/// The smallest use of the parser: it proves libyaml links and reports marks; the manifest
/// decoder (2/7) builds its node tree on the same event loop.
public func yamlScalars(in text: String) throws(YAMLSyntaxError) -> [YAMLScalar] {
  var parser = yaml_parser_t()
  guard yaml_parser_initialize(&parser) == 1 else {
    throw YAMLSyntaxError(message: "libyaml could not allocate a parser", line: 0, column: 0)
  }
  defer { yaml_parser_delete(&parser) }
  let bytes = Array(text.utf8)
  var scalars: [YAMLScalar] = []
  var failure: YAMLSyntaxError?
  bytes.withUnsafeBufferPointer { buffer in
    yaml_parser_set_input_string(&parser, buffer.baseAddress, buffer.count)
    var event = yaml_event_t()
    while true {
      guard yaml_parser_parse(&parser, &event) == 1 else {
        let problem = parser.problem.map { String(cString: $0) } ?? "syntax error"
        failure = YAMLSyntaxError(
          message: problem, line: Int(parser.problem_mark.line) + 1,
          column: Int(parser.problem_mark.column) + 1)
        return
      }
      defer { yaml_event_delete(&event) }
      if event.type == YAML_SCALAR_EVENT {
        let scalar = event.data.scalar
        let value = String(
          decoding: UnsafeBufferPointer(start: scalar.value, count: Int(scalar.length)),
          as: UTF8.self)
        scalars.append(
          YAMLScalar(
            value: value, line: Int(event.start_mark.line) + 1,
            column: Int(event.start_mark.column) + 1))
      }
      if event.type == YAML_STREAM_END_EVENT { return }
    }
  }
  if let failure { throw failure }
  return scalars
}
