#!/usr/bin/env bash
# Held-out evaluation of the restorers (docs/results.md §4): test sets of the two held-out bundled
# photos, COPIES degradations each, for every family at ×2 and ×4 (clean) and Gaussian ×4 with noise;
# bicubic, and each restorer with the family's mean kernel, the default shipped S2K estimator's kernel
# (modelio.pretrained_estimator: what s2k-sr uses; none where none ships) and the true kernel. Motion kernels
# are fresh trajectories (motion_bank_size=0): no estimator or restorer trained on them.
#   bash scripts/eval_restorers.sh [USRNET_BUNDLE] [OUT]   (default: the shipped bundle, runs/eval_restorers)
#   SFTMD_DIR=runs/bundles bash scripts/eval_restorers.sh   (SFTMD bundles sftmd_<family>_x4.npz from there)
#   FAMILIES="gaussian motion" SCALES=4 NOISE=0 bash scripts/eval_restorers.sh   (a subset; default: all)
#   TOLD=estimate bash scripts/eval_restorers.sh "A.npz B.npz" OUT   (several USRNets side by side, all told
#       the noise σ s2k-sr reads off each LR, as s2k-sr runs)
# Every restorer is told the same σ, TOLD=true by default (the added σ, the protocol of results.md §4):
# the shipped USRNet was trained told the estimate and the SFTMDs the truth, and evaluate.py refuses to
# pick one of the two for both.
# The tables of docs/results.md §4 end up in OUT/tables.md (scripts/collect_restorers.py).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
USRNET=${1:-s2k_jax/weights/usrnet_mixed.npz}
OUT=${2:-runs/eval_restorers}
COPIES=${COPIES:-10}
SFTMD_DIR=${SFTMD_DIR:-s2k_jax/weights}
FAMILIES=${FAMILIES:-gaussian motion disk}
SCALES=${SCALES:-4 2}
NOISE=${NOISE:-1}
TOLD=${TOLD:-true}
usrnets=(); for bundle in $USRNET; do usrnets+=(--restorer "$bundle"); done
told=(--noise="$TOLD")
CLEAN=(--config.degradation.noise_max=0 --config.degradation.quantize=False --config.degradation.jpeg_prob=0)
# The shipped default estimator for (family, scale), or nothing where none ships.
estimator() { $PY -c "from s2k_jax import modelio
try: print(modelio.pretrained_estimator('$1', $2))
except ValueError: pass"; }
mkdir -p "$OUT"
reports=()
for family in $FAMILIES; do
  fresh=(); [ "$family" = motion ] && fresh=(--config.degradation.motion_bank_size=0)
  for scale in $SCALES; do
    set_dir="$OUT/testsets/${family}_x${scale}"
    [ -d "$set_dir" ] || $PY -m s2k_jax.make_testset --config "configs/${family}.py:cpu" \
        --config.degradation.scale=$scale "${CLEAN[@]}" "${fresh[@]}" --copies "$COPIES" --seed 1 --out "$set_dir"
    models=("${usrnets[@]}")
    est=$(estimator "$family" "$scale")
    [ -n "$est" ] && models+=(--estimator "$est")
    [ -f "$SFTMD_DIR/sftmd_${family}_x${scale}.npz" ] && models+=(--restorer "$SFTMD_DIR/sftmd_${family}_x${scale}.npz")
    $PY evaluate.py "${models[@]}" "${told[@]}" --testset "$set_dir" --out "$OUT/${family}_x${scale}" > /dev/null
    echo "$OUT/${family}_x${scale}/results.md"
    reports+=("$OUT/${family}_x${scale}")
  done
done
# Gaussian ×4 with noise σ ~ U[0, 3%] and 8-bit LR (the restorers are told the true σ unless TOLD says).
if [ "$NOISE" = 1 ]; then
set_dir="$OUT/testsets/gaussian_x4_noise3"
[ -d "$set_dir" ] || $PY -m s2k_jax.make_testset --config configs/gaussian.py:cpu --config.degradation.noise_max=0.03 \
    --config.degradation.quantize=True --config.degradation.jpeg_prob=0 --copies "$COPIES" --seed 2 --out "$set_dir"
models=("${usrnets[@]}")
[ -f "$SFTMD_DIR/sftmd_gaussian_x4.npz" ] && models+=(--restorer "$SFTMD_DIR/sftmd_gaussian_x4.npz")
$PY evaluate.py "${models[@]}" "${told[@]}" --estimator "$(estimator gaussian 4)" --testset "$set_dir" \
    --out "$OUT/gaussian_x4_noise3" > /dev/null
echo "$OUT/gaussian_x4_noise3/results.md"
reports+=("$OUT/gaussian_x4_noise3")
fi
$PY scripts/collect_restorers.py "${reports[@]}" > "$OUT/tables.md"
echo "$OUT/tables.md"
