#!/usr/bin/env bash
# The commands behind docs/results.md. Each `compare` writes its table (compare.md, compare.json),
# overlay plots and one run directory per method under runs/results/. A rerun skips finished
# methods and resumes interrupted ones.
set -euo pipefail
COMMON_TEXT="--config configs/default.yaml --steps 100 --max-train 3200 --max-val 300 --max-eval 1000 --eval-every 25 --progress false"
case "${1:-all}" in
  minilm-r8|all)
    decaylora compare $COMMON_TEXT --rank 8 --threads "${THREADS:-2}" \
      --methods full,lora,default,decay+noise+c,svd,svd-residual,decay,notes-a,head,decay+noise \
      --out runs/results/minilm-r8 ;;&
  minilm-r32|all)
    decaylora compare $COMMON_TEXT --rank 32 --threads "${THREADS:-2}" \
      --methods lora,decay,decay+noise+c,default,svd \
      --out runs/results/minilm-r32 ;;&
  vgg|all)
    decaylora compare --config configs/vision.yaml --rank 8 --threads "${THREADS:-2}" --progress false \
      --methods full,lora,svd,svd-residual,decay,decay+noise,decay+noise+c,notes-a,head,default \
      --out runs/results/vgg-r8 ;;
esac
