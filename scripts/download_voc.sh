#!/usr/bin/env bash
# Download Pascal VOC 2007 (trainval + test) and VOC 2012 (trainval) into data/VOCdevkit, the layout that
# conf/dataset/voc07.yaml and voc0712.yaml expect:
#   data/VOCdevkit/VOC2007/{Annotations,ImageSets/Main,JPEGImages}   (trainval 5011 + test 4952 images)
#   data/VOCdevkit/VOC2012/{Annotations,ImageSets/Main,JPEGImages}   (trainval 11540 images)
#
# Usage: bash scripts/download_voc.sh [--2007-only] [DEST]        (DEST defaults to data/, about 2.8 GB of tars)
# Needs internet access to the official VOC servers: it cannot run on the project's CI/dev machines (no network
# there except package registries). The archives' MD5 sums are checked before extraction. Archives already
# present in DEST are reused; delete them afterwards to save space.
set -euo pipefail

usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit "${1:-0}"; }
ONLY_2007=0
DEST=data
for arg in "$@"; do
  case "$arg" in
    -h|--help) usage 0 ;;
    --2007-only) ONLY_2007=1 ;;
    -*) echo "unknown option $arg" >&2; usage 1 ;;
    *) DEST=$arg ;;
  esac
done

# Official host (thor.robots.ox.ac.uk; host.robots.ox.ac.uk is the older name of the same server).
BASE=https://thor.robots.ox.ac.uk/pascal/VOC
MIRROR=http://host.robots.ox.ac.uk/pascal/VOC
FILES=(
  "voc2007/VOCtrainval_06-Nov-2007.tar c52e279531787c972589f7e41ab4ae64"
  "voc2007/VOCtest_06-Nov-2007.tar b6e924de25625d8de591ea690078ad9f"
)
[[ $ONLY_2007 == 1 ]] || FILES+=("voc2012/VOCtrainval_11-May-2012.tar 6cd6e144f989b92b3379bac3b3de84fd")

fetch() {  # fetch URL OUT
  if command -v curl >/dev/null; then curl -fL --retry 3 -C - -o "$2" "$1"; else wget -c -O "$2" "$1"; fi
}

mkdir -p "$DEST"
for entry in "${FILES[@]}"; do
  read -r path md5 <<<"$entry"
  tar_file="$DEST/$(basename "$path")"
  if [[ ! -f "$tar_file" ]] || ! echo "$md5  $tar_file" | md5sum -c --status; then
    echo "[voc] downloading $path"
    fetch "$BASE/$path" "$tar_file" || fetch "$MIRROR/$path" "$tar_file"
  fi
  echo "$md5  $tar_file" | md5sum -c -
  echo "[voc] extracting $tar_file"
  tar -xf "$tar_file" -C "$DEST"   # the tars hold VOCdevkit/VOC20XX/...
done
echo "[voc] done: $DEST/VOCdevkit (train with: frcnn-train dataset=voc07 dataset.root=$DEST/VOCdevkit)"
