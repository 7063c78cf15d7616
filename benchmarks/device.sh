#!/usr/bin/env bash
# The prepared GPU check: paper-size speed and memory on one accelerator, in one JSON file.
#
#   bash benchmarks/device.sh prepare          # here, where pip reaches a registry: wheels → .whl/
#   bash benchmarks/device.sh run OUT_DIR      # on the GPU machine: → OUT_DIR/device_bench.json
#   bash benchmarks/device.sh install          # on the GPU machine: the carried wheels alone (prints /tmp/site)
#
# The GPU machine reaches no package registry. Its image already holds jax/jaxlib with the CUDA plugin,
# flax, optax, orbax-checkpoint, numpy, scipy, scikit-image, pillow, tifffile, absl-py and tqdm (see
# the device's package list); `prepare` downloads the project's other runtime packages as
# manylinux wheels for CPython 3.12 into .whl/ (a few MB; .gitignore keeps it out of git), with the
# versions this checkout's .venv uses. Carry `.whl` to the machine (the device tool's `carry`), then
# `bash benchmarks/device.sh run "$OUT"`; it installs them into /tmp/site (no network, no deps).
#
# It runs, each as its own process so one failure does not hide the others, with a time limit each:
#   * the four speed workloads at paper size: s2k_step (unet-8-64 + PatchGAN, batch 8, 256²),
#     sftmd_step (×4, LR 64², batch 8), blind_sr (paper models, ×4, batch 8, 256² LR; and 512² LR,
#     batch 1), degrade (batch 16, 256² HR, k 23, ×4);
#   * usrnet_forward / usrnet_step at USRNet's paper size (8 rounds, 64–512 ResUNet);
#   * the input pipeline (benchmarks/data_bench.py: host images/s, the device batch function, and the
#     data share of a loop feeding the paper-size step);
# and writes every JSON line they print, with the machine's description, to OUT_DIR/device_bench.json.
# Peak device memory is in each workload's `device_peak_mb` (jax's memory_stats). Total: ~5–7 minutes (each training step
# also in bfloat16 compute).
set -uo pipefail
cd "$(dirname "$0")/.."
WHEELS=${WHEELS:-.whl}
PY=${PY:-python3}
# Runtime packages of pyproject.toml (and what they need) that the GPU image lacks.
MISSING=(grain array-record portpicker ml-collections tensorboardX)

prepare() {
  mkdir -p "$WHEELS"
  local venv_py=${VENV_PY:-.venv/bin/python}
  for name in "${MISSING[@]}"; do
    version=$("$venv_py" -m pip show "$name" 2>/dev/null | sed -n 's/^Version: //p')
    [ -n "$version" ] || { echo "device.sh: $name is not installed in $venv_py (run make setup)"; exit 1; }
    python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
        --platform manylinux2014_x86_64 --platform manylinux1_x86_64 --platform any \
        -d "$WHEELS" "$name==$version" || { echo "device.sh: no wheel for $name==$version"; exit 1; }
  done
  du -sh "$WHEELS"
}

install() {  # The carried wheels → /tmp/site (no network, no deps); prints that folder, or nothing.
  if ls "$WHEELS"/*.whl > /dev/null 2>&1; then
    $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
        "$WHEELS"/*.whl >&2 || { echo "device.sh: installing the carried wheels failed" >&2; exit 1; }
    echo /tmp/site
  fi
}

run() {
  local out=${1:?usage: benchmarks/device.sh run OUT_DIR} site
  mkdir -p "$out"
  site=$(install) || exit 1
  [ -z "$site" ] || export PYTHONPATH=$site:${PYTHONPATH:-}
  export PYTHONUNBUFFERED=1
  local lines="$out/device_bench.jsonl"
  : > "$lines"
  step() {  # step NAME SECONDS COMMAND...: its JSON lines go to $lines, the rest to $out/NAME.log.
    local name=$1 limit=$2; shift 2
    local start=$SECONDS
    timeout -k 10 "$limit" "$@" > "$out/$name.log" 2>&1
    local rc=$?
    grep '^{' "$out/$name.log" | sed "s/^{/{\"step\": \"$name\", /" >> "$lines"
    echo "$name: exit $rc, $((SECONDS - start)) s"
    [ $rc -eq 0 ] || echo "{\"step\": \"$name\", \"error\": \"exit $rc (log: $name.log)\"}" >> "$lines"
  }
  B=benchmarks/run.py
  step devices 60 $PY -c 'import jax, json; d = jax.devices()[0]; print(json.dumps(dict(jax=jax.__version__,
      backend=jax.default_backend(), device=d.device_kind, device_count=jax.device_count())))'
  step s2k_step 120 $PY $B --workload s2k_step --batch 8 --size 256 --runs 5
  step sftmd_step 90 $PY $B --workload sftmd_step --batch 8 --lr-size 64 --scale 4 --runs 5
  step blind_sr_256 90 $PY $B --workload blind_sr --batch 8 --lr-size 256 --scale 4 --runs 5
  step blind_sr_512 90 $PY $B --workload blind_sr --batch 1 --lr-size 512 --scale 4 --runs 5
  step degrade 60 $PY $B --workload degrade --batch 16 --hr-size 256 --ksize 23 --scale 4 --runs 10
  step usrnet 120 $PY $B --workload usrnet_forward --workload usrnet_step --usrnet-preset '' --batch 8 \
      --lr-size 64 --scale 4 --runs 5
  # The same training steps with bfloat16 computation (float32 parameters and optimiser state).
  step s2k_step_bf16 120 $PY $B --workload s2k_step --batch 8 --size 256 --runs 5 --dtype bfloat16
  step sftmd_step_bf16 90 $PY $B --workload sftmd_step --batch 8 --lr-size 64 --scale 4 --runs 5 --dtype bfloat16
  step usrnet_bf16 120 $PY $B --workload usrnet_step --usrnet-preset '' --batch 8 --lr-size 64 --scale 4 \
      --runs 5 --dtype bfloat16
  step data 150 $PY benchmarks/data_bench.py --images 8 --batches 8 --warmup 4 --steps 6
  $PY - "$lines" "$out/device_bench.json" <<'EOF'
import json, platform, subprocess, sys, datetime
records = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]
try:
  gpu = subprocess.run(['nvidia-smi', '--query-gpu=name,memory.total,driver_version', '--format=csv,noheader'],
                       capture_output=True, text=True, timeout=30).stdout.strip()
except (OSError, subprocess.SubprocessError):
  gpu = ''
json.dump(dict(date=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds'),
               host=platform.node(), gpu=gpu, results=records), open(sys.argv[2], 'w'), indent=1)
print(f'wrote {sys.argv[2]} ({len(records)} records)')
EOF
}

case ${1:-} in
  prepare) prepare ;;
  install) install ;;  # for other device scripts (scripts/device_train.sh)
  run) shift; run "$@" ;;
  *) echo 'usage: bash benchmarks/device.sh prepare | install | run OUT_DIR'; exit 2 ;;
esac
