#!/usr/bin/env bash
# Training on a lent GPU for minutes, continued on CPUs: the GPU recipe of issue 32.
#
#   bash scripts/device_train.sh prepare                        # here: wheels the GPU image lacks → .whl/
#   bash scripts/device_train.sh run OUT NAME SECONDS TRAIN_ARGS...   # on the GPU machine
#   bash scripts/device_train.sh unpack FILES_DIR NAME WORKDIR      # here: its checkpoint → WORKDIR
#   (`pack WORKDIR OUT NAME` is the packing step of `run` alone.)
#
# `run` trains `python train.py TRAIN_ARGS --workdir /tmp/device_runs/NAME` for at most SECONDS (then
# SIGTERM: train.py saves a checkpoint at the step it reached and exits), exports the model bundle
# (float16, what s2k-sr and evaluate.py read) and packs the last checkpoint with metrics.jsonl into
# parts of at most 15 MiB, all into OUT: NAME.npz, NAME.ckpt.tar.00, .01, ... and NAME.log. The
# device tool returns at most 8 files of 16 MiB (64 MiB together) from OUT, so a checkpoint (parameters
# and both Adam moments: ~12 bytes per parameter) of more than ~45 MB cannot come back (then only the
# bundle is kept): the CPU presets' sizes fit (a `:photo` estimator's checkpoint is 25 MB, USRNet at
# `:cpu` 6 MB), a unet-6-32 estimator's (74 MB) and the paper sizes do not. `unpack` puts the
# checkpoint into a workdir here, where the same train.py command resumes it (same TRAIN_ARGS, a
# larger --config.train.num_steps to go on); the data stream continues where the GPU stopped.
#
# What travels with a call is limited to 64 MiB: the whole working tree (55 MB, 50 MB of it shipped
# weights) plus the carried paths. The wheels (~8.5 MB, `.whl`) fit; the photo corpus does not, so
# this recipe trains on the bundled photos (`data.source=bundled`, the default: scikit-image's sample
# images, which the GPU image holds). Example, one call of the device tool with carry ['.whl']:
#
#   bash scripts/device_train.sh run "$OUT" usrnet_gpu 480 --config configs/usrnet.py:mixed,cpu \
#       --config.train.batch_size=32 --config.train.num_steps=100000
#
# and here, from the folder the tool put the files in:
#
#   bash scripts/device_train.sh unpack /work/.device/files usrnet_gpu runs/usrnet_gpu
#   python train.py --config configs/usrnet.py:mixed,cpu --config.train.batch_size=32 \
#       --config.train.num_steps=100000 --workdir runs/usrnet_gpu        # continues on CPU
set -uo pipefail
cd "$(dirname "$0")/.."
WHEELS=${WHEELS:-.whl}
PY=${PY:-python3}
PART_BYTES=${PART_BYTES:-$((15 * 1024 * 1024))}  # the tool returns files of at most 16 MiB

run() {
  local out=${1:?usage: device_train.sh run OUT NAME SECONDS TRAIN_ARGS...} name=${2:?NAME} seconds=${3:?SECONDS}
  shift 3
  [[ $name =~ ^[A-Za-z0-9_.-]+$ ]] || { echo "device_train.sh: NAME must be letters, digits, '.', '_', '-': $name"; exit 2; }
  [[ $seconds =~ ^[0-9]+$ ]] || { echo "device_train.sh: SECONDS must be a whole number, got $seconds"; exit 2; }
  mkdir -p "$out"
  local site
  site=$(WHEELS=$WHEELS PY=$PY bash benchmarks/device.sh install) || exit 1
  [ -z "$site" ] || export PYTHONPATH=$site:${PYTHONPATH:-}
  export PYTHONUNBUFFERED=1
  local workdir=${WORKDIR_ROOT:-/tmp/device_runs}/$name log="$out/$name.log"
  # train.py saves on SIGTERM and exits 0; timeout then reports 124, which is the planned end.
  timeout -s TERM -k 120 "$seconds" $PY train.py "$@" --workdir "$workdir" > "$log" 2>&1
  local rc=$?
  if [ $rc -ne 0 ] && [ $rc -ne 124 ]; then
    echo "device_train.sh: train.py failed (exit $rc); the end of $log:"; tail -20 "$log"; exit 1
  fi
  grep -a 'Trained to step\|Stopped early' "$log" | tail -2
  $PY -m s2k_jax.export --workdir "$workdir" --out "$out/$name.npz" --dtype float16 >> "$log" 2>&1 \
      || { echo "device_train.sh: export failed; see $log"; tail -20 "$log"; exit 1; }
  pack "$workdir" "$out" "$name"
}

pack() {  # The last checkpoint and metrics.jsonl of WORKDIR → OUT/NAME.ckpt.tar.NN, if they can come back.
  local workdir=$1 out=$2 name=$3 last
  mkdir -p "$out"
  last=$(ls "$workdir/checkpoints" 2>/dev/null | grep -E '^[0-9]+$' | sort -n | tail -1)
  [ -n "$last" ] || { echo "device_train.sh: no checkpoint in $workdir"; exit 1; }
  tar -C "$workdir" -cf - "checkpoints/$last" metrics.jsonl | split -b "$PART_BYTES" -d - "$out/$name.ckpt.tar." \
      || { echo "device_train.sh: packing $workdir failed"; exit 1; }
  local parts total
  parts=$(ls "$out/$name".ckpt.tar.* | wc -l)
  total=$(find "$out" -maxdepth 1 -type f -printf '%s\n' | awk '{t += $1} END {print t + 0}')
  if [ "$parts" -gt 6 ] || [ "$total" -gt $((62 * 1024 * 1024)) ]; then
    echo "device_train.sh: bundle, log and checkpoint ($parts parts) come to $((total / 1048576)) MiB; at most 8"
    echo "files and 64 MiB come back. Only the bundle is kept; train a smaller model to resume it on CPU."
    rm -f "$out/$name".ckpt.tar.*
  fi
  ls -l "$out"
}

unpack() {
  local files=${1:?usage: device_train.sh unpack FILES_DIR NAME WORKDIR} name=${2:?NAME} workdir=${3:?WORKDIR}
  ls "$files/$name".ckpt.tar.* > /dev/null 2>&1 || { echo "device_train.sh: no $name.ckpt.tar.* in $files"; exit 1; }
  if [ -e "$workdir/checkpoints" ]; then
    echo "device_train.sh: $workdir already has checkpoints; unpack into a new folder"; exit 1
  fi
  mkdir -p "$workdir"
  cat "$files/$name".ckpt.tar.* | tar -C "$workdir" -xf - || { echo "device_train.sh: the parts do not form one archive"; exit 1; }
  echo "unpacked step $(ls "$workdir/checkpoints") into $workdir"
}

case ${1:-} in
  prepare) bash benchmarks/device.sh prepare ;;
  run) shift; run "$@" ;;
  pack) shift; pack "${1:?usage: device_train.sh pack WORKDIR OUT NAME}" "${2:?OUT}" "${3:?NAME}" ;;
  unpack) shift; unpack "$@" ;;
  *) echo 'usage: bash scripts/device_train.sh prepare | run OUT NAME SECONDS TRAIN_ARGS... | unpack FILES_DIR NAME WORKDIR'; exit 2 ;;
esac
