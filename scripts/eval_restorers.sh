#!/usr/bin/env bash
# Held-out evaluation of the shipped restorers (docs/results.md, "USRNet"): test sets of the two
# held-out bundled photos, COPIES degradations each, for every family at ×2 and ×4 (clean) and Gaussian
# ×4 with noise; bicubic, each restorer with the mean / S2K / true kernel. ×2 has no shipped estimator,
# so it reports mean and true kernels only.
#   bash scripts/eval_restorers.sh [USRNET_BUNDLE] [OUT]   (default: the shipped bundle, runs/eval_restorers)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
USRNET=${1:-s2k_jax/weights/usrnet_mixed.npz}
OUT=${2:-runs/eval_restorers}
COPIES=${COPIES:-10}
W=s2k_jax/weights
CLEAN=(--config.degradation.noise_max=0 --config.degradation.quantize=False --config.degradation.jpeg_prob=0)
mkdir -p "$OUT"
for family in gaussian motion disk; do
  for scale in 4 2; do
    set_dir="$OUT/testsets/${family}_x${scale}"
    [ -d "$set_dir" ] || $PY -m s2k_jax.make_testset --config "configs/${family}.py:cpu" \
        --config.degradation.scale=$scale "${CLEAN[@]}" --copies "$COPIES" --seed 1 --out "$set_dir"
    models=(--restorer "$USRNET")
    if [ "$scale" = 4 ]; then
      models+=(--estimator "$W/${family}_estimator.npz")
      [ -f "$W/sftmd_${family}_x4.npz" ] && models+=(--restorer "$W/sftmd_${family}_x4.npz")
    fi
    $PY evaluate.py "${models[@]}" --testset "$set_dir" --out "$OUT/${family}_x${scale}" > /dev/null
    echo "$OUT/${family}_x${scale}/results.md"
  done
done
# Gaussian ×4 with noise σ ~ U[0, 3%] and 8-bit LR (the restorers are given the true σ).
set_dir="$OUT/testsets/gaussian_x4_noise3"
[ -d "$set_dir" ] || $PY -m s2k_jax.make_testset --config configs/gaussian.py:cpu --config.degradation.noise_max=0.03 \
    --config.degradation.quantize=True --config.degradation.jpeg_prob=0 --copies "$COPIES" --seed 2 --out "$set_dir"
$PY evaluate.py --restorer "$USRNET" --restorer "$W/sftmd_gaussian_x4.npz" --estimator "$W/gaussian_estimator.npz" \
    --testset "$set_dir" --out "$OUT/gaussian_x4_noise3" > /dev/null
echo "$OUT/gaussian_x4_noise3/results.md"
