#!/usr/bin/env bash
# Checks the shipped pre-commit hook (.pre-commit-hooks.yaml) as a user meets it: installs the
# `pre-commit` package from PyPI into a cached venv, makes a scratch git repository whose
# .pre-commit-config.yaml references these hook definitions, and checks that a commit of a good
# manifest passes while a commit of a bad one is blocked with its file:line:col message. Needs
# the release surgeon (built when missing) and PyPI; nothing else from the network.
set -euo pipefail
cd "$(dirname "$0")/.."
root="$PWD"
# SURGEON_BINARY: another build to check (the default is the release one).
surgeon="${SURGEON_BINARY:-$root/.build/release/surgeon}"
[ -x "$surgeon" ] || swift build -c release --product surgeon >&2
venv="$root/.build/pre-commit-venv"
if ! "$venv/bin/pre-commit" --version >/dev/null 2>&1; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet pre-commit >&2
fi
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
export PRE_COMMIT_HOME="$scratch/cache" PATH="$(dirname "$surgeon"):$PATH"
export GIT_AUTHOR_NAME=check GIT_AUTHOR_EMAIL=check@localhost
export GIT_COMMITTER_NAME=check GIT_COMMITTER_EMAIL=check@localhost

# pre-commit clones a hook repository at a revision: a snapshot of the hook definitions as they
# are in this checkout (committed or not) stands in for this repository.
hooks="$scratch/hooks"
mkdir -p "$hooks"
cp .pre-commit-hooks.yaml "$hooks/"
git -C "$hooks" init -q
git -C "$hooks" add .pre-commit-hooks.yaml
git -C "$hooks" commit -qm "hooks"
rev="$(git -C "$hooks" rev-parse HEAD)"

project="$scratch/project"
mkdir -p "$project/manifests"
cd "$project"
git init -q
cat > .pre-commit-config.yaml <<YAML
repos:
  - repo: $hooks
    rev: $rev
    hooks:
      - id: surgeon-validate
YAML
"$venv/bin/pre-commit" install >/dev/null

cat > manifests/good.yaml <<'YAML'
surgeon: 1
name: good
model:
  family: bert
  preset: bert-tiny
  weights: random
  head: {classes: 2}
surgery:
  - lora: {layers: [query, value], rank: 8}
YAML
git add .pre-commit-config.yaml manifests/good.yaml
if ! git commit -qm "a good manifest" >"$scratch/good.log" 2>&1; then
  cat "$scratch/good.log" >&2
  echo "check-pre-commit.sh: the hook blocked a valid manifest" >&2
  exit 1
fi

cat > manifests/bad.yaml <<'YAML'
surgeon: 1
name: bad
model:
  family: bert
  preset: bert-tiny
  weights: random
surgery:
  - lora:
      layers: [query]
      rnak: 4
YAML
git add manifests/bad.yaml
if git commit -qm "a bad manifest" >"$scratch/bad.log" 2>&1; then
  cat "$scratch/bad.log" >&2
  echo "check-pre-commit.sh: the hook let an invalid manifest be committed" >&2
  exit 1
fi
expected="manifests/bad.yaml:10:7: error: unknown key 'rnak' in lora (did you mean 'rank'?)"
if ! grep -qF "$expected" "$scratch/bad.log"; then
  cat "$scratch/bad.log" >&2
  echo "check-pre-commit.sh: the hook's output lacks: $expected" >&2
  exit 1
fi
echo "check-pre-commit.sh: surgeon-validate passed the good commit and blocked the bad one ($expected)"
