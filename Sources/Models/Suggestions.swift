/// "Did you mean" hints shared by every module that names things back to the user.

/// The candidate closest to `name` (case-insensitive), when it is close enough to be a plausible
/// typo or a shortening, for "did you mean" hints: a name containing the other ("movie" →
/// "movie_name") wins, else the least edit distance within a third of the longer name.
public func closestName(to name: String, in candidates: [String]) -> String? {
  let lowered = name.lowercased()
  let containing = candidates.filter {
    let candidate = $0.lowercased()
    return !lowered.isEmpty && !candidate.isEmpty
      && (candidate.contains(lowered) || lowered.contains(candidate))
  }
  if let shortest = containing.min(by: { $0.count < $1.count }) { return shortest }
  let target = Array(lowered.unicodeScalars)
  var best: (name: String, distance: Int)?
  for candidate in candidates {
    let distance = editDistance(target, Array(candidate.lowercased().unicodeScalars))
    if distance < (best?.distance ?? Int.max) { best = (candidate, distance) }
  }
  guard let best else { return nil }
  // At least 2: "txt" → "text", but not "label" → "movie_name".
  let allowed = max(2, max(target.count, best.name.unicodeScalars.count) / 3)
  return best.distance <= allowed ? best.name : nil
}

/// Levenshtein distance between two scalar sequences.
public func editDistance(_ a: [Unicode.Scalar], _ b: [Unicode.Scalar]) -> Int {
  if a.isEmpty { return b.count }
  if b.isEmpty { return a.count }
  var previous = Array(0...b.count)
  var current = [Int](repeating: 0, count: b.count + 1)
  for i in 1...a.count {
    current[0] = i
    for j in 1...b.count {
      let substitution = previous[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1)
      current[j] = min(substitution, previous[j] + 1, current[j - 1] + 1)
    }
    swap(&previous, &current)
  }
  return previous[b.count]
}
