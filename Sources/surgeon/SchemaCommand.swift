import Manifest

enum SchemaCommand: Command {
  static let usage = """
    Usage: surgeon schema

    Prints the JSON Schema of the manifest format, for editors: save it as manifests/schema.json
    and start a manifest with `# yaml-language-server: $schema=schema.json`.
    """

  static func run(_ arguments: [String]) throws {
    let parsed = try Arguments(arguments, options: [], flags: [])
    guard parsed.positionals.isEmpty else { throw UsageError(message: "schema takes no arguments") }
    print(ManifestSchema.json())
  }
}
