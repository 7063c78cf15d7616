#!/usr/bin/env bash
# Kernel estimation on LR as users have it (docs/results.md §5): the held-out bundled photos, COPIES
# degradations each, kernels of FAMILY (default gaussian) at ×SCALE, as clean 8-bit PNG, JPEG q75, JPEG
# q90 and with noise σ ~ U[0, 4%] (mean 2%); every estimator bundle given is scored against the family's
# mean kernel. Test kernels are drawn with seed 3, independently of training; motion ones are fresh
# trajectories (motion_bank_size=0), in no training bank. SEED=4 draws a second, independent set (to
# re-check a checkpoint that was chosen on the seed-3 sets); its sets and results get a _seed4 suffix, so
# one OUT never mixes two draws.
#   [FAMILY=motion] [SEED=4] bash scripts/eval_estimators.sh OUT SCALE ESTIMATOR.npz [ESTIMATOR.npz ...]
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
OUT=$1; SCALE=$2; shift 2
COPIES=${COPIES:-10}
FAMILY=${FAMILY:-gaussian}
SEED=${SEED:-3}
TAG=""; [ "$SEED" = 3 ] || TAG="_seed$SEED"
FRESH=""; [ "$FAMILY" = gaussian ] || [ "$FAMILY" = disk ] || FRESH="--config.degradation.motion_bank_size=0"
declare -A CONDITIONS=(
  [clean]="--config.degradation.noise_max=0 --config.degradation.quantize=True --config.degradation.jpeg_prob=0"
  [jpeg75]="--config.degradation.noise_max=0 --config.degradation.quantize=True --config.degradation.jpeg_prob=1 --config.degradation.jpeg_quality_range=(75,75)"
  [jpeg90]="--config.degradation.noise_max=0 --config.degradation.quantize=True --config.degradation.jpeg_prob=1 --config.degradation.jpeg_quality_range=(90,90)"
  [noise4]="--config.degradation.noise_max=0.04 --config.degradation.quantize=True --config.degradation.jpeg_prob=0")
for condition in clean jpeg75 jpeg90 noise4; do
  set_dir="$OUT/testsets/${FAMILY}_x${SCALE}_$condition$TAG"
  # shellcheck disable=SC2086
  [ -d "$set_dir" ] || $PY -m s2k_jax.make_testset --config "configs/$FAMILY.py:cpu" --config.degradation.scale="$SCALE" \
      ${CONDITIONS[$condition]} $FRESH --copies "$COPIES" --seed "$SEED" --out "$set_dir"
  for est in "$@"; do
    name=$(basename "$est" .npz)
    res="$OUT/${FAMILY}_x${SCALE}$TAG/$condition/$name"
    $PY evaluate.py --estimator "$est" --testset "$set_dir" --out "$res" > /dev/null
    echo "$FAMILY ×$SCALE $condition $name: $(grep -A5 'Kernel estimation' "$res/results.md" | tail -2 | tr '\n' ' ')"
  done
done
