#!/usr/bin/env bash
# Download COCO 2017 (train2017 118k images, val2017 5k images, instances annotations) into data/coco, the
# layout that conf/dataset/coco.yaml expects:
#   data/coco/train2017/*.jpg  data/coco/val2017/*.jpg  data/coco/annotations/instances_{train,val}2017.json
#
# Usage: bash scripts/download_coco.sh [--val-only] [DEST]        (DEST defaults to data/coco; about 19 GB of zips)
# Needs internet access to images.cocodataset.org: it cannot run on the project's CI/dev machines (no network
# there except package registries). Archives already present are reused (and resumed when partial); delete the
# zips afterwards to save space. Needs curl or wget, and unzip.
set -euo pipefail

usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit "${1:-0}"; }
VAL_ONLY=0
DEST=data/coco
for arg in "$@"; do
  case "$arg" in
    -h|--help) usage 0 ;;
    --val-only) VAL_ONLY=1 ;;
    -*) echo "unknown option $arg" >&2; usage 1 ;;
    *) DEST=$arg ;;
  esac
done

URLS=(
  http://images.cocodataset.org/annotations/annotations_trainval2017.zip
  http://images.cocodataset.org/zips/val2017.zip
)
[[ $VAL_ONLY == 1 ]] || URLS+=(http://images.cocodataset.org/zips/train2017.zip)

fetch() {  # fetch URL OUT
  if command -v curl >/dev/null; then curl -fL --retry 3 -C - -o "$2" "$1"; else wget -c -O "$2" "$1"; fi
}

mkdir -p "$DEST"
for url in "${URLS[@]}"; do
  zip_file="$DEST/$(basename "$url")"
  if ! unzip -l "$zip_file" >/dev/null 2>&1; then  # absent or partial (a complete zip has its directory)
    echo "[coco] downloading $url"
    fetch "$url" "$zip_file"
  fi
  unzip -l "$zip_file" >/dev/null || { echo "[coco] $zip_file is corrupt; delete it and rerun" >&2; exit 1; }
  echo "[coco] extracting $zip_file"
  unzip -qo "$zip_file" -d "$DEST"   # -> annotations/, val2017/, train2017/
done
echo "[coco] done: $DEST (train with: frcnn-train dataset=coco dataset.root=$DEST)"
