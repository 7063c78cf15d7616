#!/usr/bin/env bash
# The field's standard benchmark, Gaussian8 (IKC; docs/benchmarks_sr.md), on folders of HR images:
# builds each protocol test set once (OUT/testsets/<set>_g8_x<s>), evaluates bicubic and USRNet with the
# mean / S2K / true kernel, and writes OUT/gaussian8.md, one row per set and scale.
#   [SCALES="2 3 4"] [ESTIMATOR_X4=model] [RESTORER=model] [LIMIT=n] [NOISE=estimate] \
#       bash scripts/eval_benchmarks.sh OUT BENCHMARKS_DIR/Set5 BENCHMARKS_DIR/Set14 ...
# ESTIMATOR_X<s> defaults to the shipped Gaussian estimator s2k-sr uses at that scale (centre grid), RESTORER to the shipped USRNet.
# LIMIT=n uses the first n images of each folder (all 8 kernels each); the table says so.
# NOISE=estimate tells USRNet the noise σ s2k-sr reads off each LR (as s2k-sr runs); unset: the true σ (0).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
OUT=$1; shift
SCALES=${SCALES:-4}
LIMIT=${LIMIT:-0}
NOISE=${NOISE:-}
RESTORER=${RESTORER:-s2k_jax/weights/usrnet_mixed.npz}
for dir in "$@"; do
  set_name=$(basename "$dir")
  for s in $SCALES; do
    var="ESTIMATOR_X$s"
    est=${!var:-$($PY -c "from s2k_jax import modelio; print(modelio.pretrained_estimator('gaussian', $s, 'centre'))")}
    ts="$OUT/testsets/${set_name}_g8_x$s"
    [ "$LIMIT" = 0 ] || ts="${ts}_first$LIMIT"
    [ -d "$ts" ] || $PY -m s2k_jax.make_testset --protocol=gaussian8 --scale="$s" --hr_dir="$dir" --limit="$LIMIT" --out="$ts"
    res="$OUT/$(basename "$ts")"
    $PY evaluate.py --estimator "$est" --restorer "$RESTORER" --testset "$ts" --out "$res" ${NOISE:+--noise="$NOISE"} > /dev/null
    echo "$set_name ×$s: $(grep -E '^\| (Bicubic|USRNet)' "$res/results.md" | head -4 | cut -d'|' -f2,4 | tr '\n' ' ')"
  done
done
$PY scripts/collect_benchmarks.py gaussian8 "$OUT"
