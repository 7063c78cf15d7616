#!/usr/bin/env bash
# Kernel estimation on LR as users have it (docs/results.md, "Real-photo LR"): the held-out bundled
# photos, COPIES degradations each, Gaussian ×SCALE, as clean 8-bit PNG, JPEG q75, JPEG q90 and with
# noise σ ~ U[0, 4%] (mean 2%); every estimator bundle given is scored against the mean kernel.
#   bash scripts/eval_estimators.sh OUT SCALE ESTIMATOR.npz [ESTIMATOR.npz ...]
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
OUT=$1; SCALE=$2; shift 2
COPIES=${COPIES:-10}
declare -A CONDITIONS=(
  [clean]="--config.degradation.noise_max=0 --config.degradation.quantize=True --config.degradation.jpeg_prob=0"
  [jpeg75]="--config.degradation.noise_max=0 --config.degradation.quantize=True --config.degradation.jpeg_prob=1 --config.degradation.jpeg_quality_range=(75,75)"
  [jpeg90]="--config.degradation.noise_max=0 --config.degradation.quantize=True --config.degradation.jpeg_prob=1 --config.degradation.jpeg_quality_range=(90,90)"
  [noise4]="--config.degradation.noise_max=0.04 --config.degradation.quantize=True --config.degradation.jpeg_prob=0")
for condition in clean jpeg75 jpeg90 noise4; do
  set_dir="$OUT/testsets/gaussian_x${SCALE}_$condition"
  # shellcheck disable=SC2086
  [ -d "$set_dir" ] || $PY -m s2k_jax.make_testset --config configs/gaussian.py:cpu --config.degradation.scale="$SCALE" \
      ${CONDITIONS[$condition]} --copies "$COPIES" --seed 3 --out "$set_dir"
  for est in "$@"; do
    name=$(basename "$est" .npz)
    $PY evaluate.py --estimator "$est" --testset "$set_dir" --out "$OUT/$condition/$name" > /dev/null
    echo "$condition $name: $(grep -A5 'Kernel estimation' "$OUT/$condition/$name/results.md" | tail -2 | tr '\n' ' ')"
  done
done
