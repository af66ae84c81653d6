import Foundation
import Models

/// Loads a checkpoint directory, printing the loader's warnings to standard error.
func loadCheckpoint(_ directory: URL) throws(CommandError) -> LoadedCheckpoint {
  do {
    let loaded = try CheckpointLoader.load(directory: directory)
    for warning in loaded.warnings { printError(warning) }
    return loaded
  } catch {
    throw CommandError(message: error.description)
  }
}
