#!/usr/bin/env bash
# The README's before/after figure, made by the project from held-out bundled photos with the models
# s2k-sr uses by default on photos (the shipped Gaussian ×4 estimator for the centre grid + USRNet), the LR made as photos are
# (blur, then MATLAB bicubic ÷4: the centre grid; the bicubic column sits on that grid): rows of
# LR | true kernel | S2K's estimate | bicubic | USRNet with the mean / S2K / true kernel | HR.
#   bash scripts/make_figures.sh [OUT]      # OUT (default runs/figures) keeps the test set and report
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
OUT=${1:-runs/figures}
W=s2k_jax/weights
SET="$OUT/testset_gaussian_x4_bicubic"  # made once (2 held-out photos × 2 kernels), reused by later runs
[ -d "$SET" ] || $PY -m s2k_jax.make_testset --config configs/gaussian.py:cpu --config.degradation.downsample=bicubic \
    --seed 1 --copies 2 --out "$SET"
EST=$($PY -c "from s2k_jax import modelio; print(modelio.pretrained_estimator('gaussian', 4, 'centre'))")
$PY evaluate.py --estimator "$EST" --restorer $W/usrnet_mixed.npz \
    --testset "$SET" --out "$OUT/gaussian_x4" > /dev/null
cp "$OUT/gaussian_x4/sr_examples.png" docs/figures/gaussian_x4_blind_sr.png
grep -A12 'Blind SR' "$OUT/gaussian_x4/results.md" || true
echo "wrote docs/figures/gaussian_x4_blind_sr.png (report: $OUT/gaussian_x4/results.md)"
