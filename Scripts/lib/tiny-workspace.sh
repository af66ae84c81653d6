# Sourced by the round-trip checks (check-peft.sh, check-hf.sh) after `python` is set: a scratch
# directory $work, removed on exit, holding the tiny BERT fixture under checkpoints/tiny-bert and
# tiny.csv, 96 rows of two classes (the "yes" texts contain the word "a").
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/checkpoints"
cp -r Tests/SurgeonTests/Fixtures/tiny-bert "$work/checkpoints/tiny-bert"
"$python" - "$work" <<'PY'
import random, sys
random.seed(0)
rows = ["text,label"]
for i in range(96):
    words = [random.choice("bcdefghijklmnopqrstuvwxyz") for _ in range(random.randint(3, 7))]
    if i % 2 == 0:
        words.insert(random.randrange(len(words)), "a")
    rows.append(f"\"{' '.join(words)}\",{'yes' if i % 2 == 0 else 'no'}")
open(f"{sys.argv[1]}/tiny.csv", "w").write("\n".join(rows) + "\n")
PY
