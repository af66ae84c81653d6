#!/usr/bin/env python3
"""A Markdown table of a sweep's cell records (docs/compare.md, "Records") beside the same cells
of an earlier `comparison.json` snapshot, as in docs/results.md's status sections:

    python3 Scripts/records-table.py docs/results/records/minilm-rotten-tomatoes \
        docs/results/minilm-rotten-tomatoes-2026-12-07/comparison.json

Only the standard library; reads the committed files and writes nothing.
"""

import glob
import json
import os
import sys


def main() -> int:
    if len(sys.argv) != 3:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    records, snapshot = sys.argv[1], sys.argv[2]
    with open(snapshot) as handle:
        earlier = {cell["id"]: cell for cell in json.load(handle)["cells"]}
    print("| cell | test | validation | same cell in the snapshot (test / validation)"
          " | build (CRC-32) | train s |")
    print("|---|---|---|---|---|---|")
    for path in sorted(glob.glob(os.path.join(records, "*.json"))):
        with open(path) as handle:
            record = json.load(handle)
        old = earlier.get(record["id"])
        before = f"{old['test']:.4f} / {old['validation']:.4f}" if old else "— (first run)"
        print(f"| `{record['id']}` | {record['test']:.4f} | {record['validation']:.4f} | {before}"
              f" | `{record.get('build', '?')}` | {record['train_seconds']:.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
