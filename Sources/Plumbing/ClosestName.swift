/// "Did you mean" hints, shared by every module that names things back to the user: manifest
/// keys and values, command-line flags, data-file columns, sweep keys, graph nodes.

/// How close a candidate must be to count as what the user meant.
public enum Closeness: Sendable {
  /// A typo of a name: the same letters up to case, or one edit (two from six letters, an
  /// adjacent transposition counting as one) of a candidate of three letters or more.
  case typo
  /// A typo or a shortening: a candidate containing the name or contained in it wins (the
  /// shortest such), else the fewest edits within a third of the longer name, and at least 2.
  case typoOrShortening
  /// At most `count` edits, letter case counting.
  case edits(atMost: Int)
}

/// The candidate closest to `name`, when it is close enough to be what was meant; ties go to
/// the earlier candidate.
public func closestName(
  to name: String, in candidates: [String], closeness: Closeness = .typoOrShortening
) -> String? {
  switch closeness {
  case .typo:
    let lowered = name.lowercased()
    if let exact = candidates.first(where: { $0.lowercased() == lowered }) { return exact }
    var best: (candidate: String, distance: Int)?
    for candidate in candidates where candidate.count >= 3 {
      let distance = editDistance(lowered, candidate.lowercased(), transpositions: true)
      let allowed = candidate.count >= 6 ? 2 : 1
      if distance <= allowed, distance < (best?.distance ?? Int.max) {
        best = (candidate, distance)
      }
    }
    return best?.candidate
  case .typoOrShortening:
    let lowered = name.lowercased()
    let containing = candidates.filter {
      let candidate = $0.lowercased()
      return !lowered.isEmpty && !candidate.isEmpty
        && (candidate.contains(lowered) || lowered.contains(candidate))
    }
    if let shortest = containing.min(by: { $0.count < $1.count }) { return shortest }
    var best: (name: String, distance: Int)?
    for candidate in candidates {
      let distance = editDistance(lowered, candidate.lowercased())
      if distance < (best?.distance ?? Int.max) { best = (candidate, distance) }
    }
    guard let best else { return nil }
    // At least 2: "txt" → "text", but not "label" → "movie_name".
    let allowed = max(2, max(lowered.unicodeScalars.count, best.name.unicodeScalars.count) / 3)
    return best.distance <= allowed ? best.name : nil
  case .edits(let count):
    var best: (name: String, distance: Int)?
    for candidate in candidates {
      let distance = editDistance(name, candidate)
      if distance < (best?.distance ?? Int.max) { best = (candidate, distance) }
    }
    guard let best, best.distance <= count else { return nil }
    return best.name
  }
}

/// A suggestion among names of several kinds, such as a manifest's keys and a data set's roles:
/// `valeu` → role `value`.
public struct NameSuggestion: Sendable, Equatable, CustomStringConvertible {
  /// What kind of name it is ("key", "role"), as the message names it.
  public var kind: String
  public var name: String

  public init(kind: String, name: String) {
    self.kind = kind
    self.name = name
  }

  /// "role 'value'".
  public var description: String { "\(kind) '\(name)'" }
}

/// The closest name among several kinds of names, by `closeness`; when two kinds offer a name
/// equally close, the kind listed first wins.
public func closestName(
  to name: String, among groups: [(kind: String, names: [String])],
  closeness: Closeness = .typo
) -> NameSuggestion? {
  var best: (suggestion: NameSuggestion, distance: Int)?
  for group in groups {
    guard let candidate = closestName(to: name, in: group.names, closeness: closeness) else {
      continue
    }
    let distance = editDistance(name.lowercased(), candidate.lowercased(), transpositions: true)
    if distance < (best?.distance ?? Int.max) {
      best = (NameSuggestion(kind: group.kind, name: candidate), distance)
    }
  }
  return best?.suggestion
}

/// The `count` names nearest to `text` by the edits to their nearest dotted suffix, so `qurey`
/// is near `…attention.self.query` rather than near the shortest names; case is ignored, ties
/// keep the names' order, repeated names count once.
public func nearestNames(to text: String, in names: [String], count: Int) -> [String] {
  let target = text.lowercased()
  var seen: Set<String> = []
  var scored: [(distance: Int, order: Int, name: String)] = []
  for (order, name) in names.enumerated() where seen.insert(name).inserted {
    let segments = name.lowercased().split(separator: ".", omittingEmptySubsequences: false)
    var best = Int.max
    for start in segments.indices {
      let suffix = segments[start...].joined(separator: ".")
      best = min(best, editDistance(target, suffix))
    }
    scored.append((best, order, name))
  }
  scored.sort { ($0.distance, $0.order) < ($1.distance, $1.order) }
  return scored.prefix(count).map(\.name)
}

/// The edits (insertions, deletions, substitutions of Unicode scalars) that turn `lhs` into
/// `rhs`; with `transpositions`, swapping two adjacent scalars counts as one edit ("rnak" →
/// "rank"), as people type.
public func editDistance(_ lhs: String, _ rhs: String, transpositions: Bool = false) -> Int {
  let a = Array(lhs.unicodeScalars)
  let b = Array(rhs.unicodeScalars)
  if a.isEmpty { return b.count }
  if b.isEmpty { return a.count }
  var previousPrevious = [Int](repeating: 0, count: b.count + 1)
  var previous = Array(0...b.count)
  var current = [Int](repeating: 0, count: b.count + 1)
  for i in 1...a.count {
    current[0] = i
    for j in 1...b.count {
      let cost = a[i - 1] == b[j - 1] ? 0 : 1
      current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + cost)
      if transpositions, i > 1, j > 1, a[i - 1] == b[j - 2], a[i - 2] == b[j - 1] {
        current[j] = min(current[j], previousPrevious[j - 2] + 1)
      }
    }
    (previousPrevious, previous, current) = (previous, current, previousPrevious)
  }
  return previous[b.count]
}
