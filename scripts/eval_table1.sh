#!/usr/bin/env bash
# The S2K paper's random-kernel protocol (its §4 and Table 1; docs/benchmarks_sr.md) on a folder of HR
# images: for each kernel family (Gaussian, motion, disk) and scale (×2, ×3, ×4), one seeded random kernel
# per image and direct decimation (`make_testset --protocol=s2k`, OUT/testsets/<family>_x<s>); bicubic and
# USRNet with the mean / S2K / true kernel; OUT/table1.md in the paper's layout (one column per family
# and scale).
#   [SCALES="2 3 4"] [FAMILIES="gaussian motion disk"] [RESTORER=model] [LIMIT=n] [SEED=0] \
#       bash scripts/eval_table1.sh OUT BENCHMARKS_DIR/BSD100
# The estimator of each column is the shipped one s2k-sr uses for directly decimated LR of that family and
# scale (--grid direct); RESTORER defaults to the shipped USRNet. LIMIT=n uses the first n images.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
[ $# = 2 ] || { echo "usage: bash scripts/eval_table1.sh OUT HR_DIR" >&2; exit 2; }
OUT=$1
HR=$2
SCALES=${SCALES:-2 3 4}
FAMILIES=${FAMILIES:-gaussian motion disk}
LIMIT=${LIMIT:-0}
SEED=${SEED:-0}
RESTORER=${RESTORER:-s2k_jax/weights/usrnet_mixed.npz}
for family in $FAMILIES; do
  for s in $SCALES; do
    est=$($PY -c "from s2k_jax import modelio; print(modelio.pretrained_estimator('$family', $s, 'direct'))")
    ts="$OUT/testsets/${family}_x$s"
    [ -d "$ts" ] || $PY -m s2k_jax.make_testset --protocol=s2k --family="$family" --scale="$s" --hr_dir="$HR" \
        --limit="$LIMIT" --seed="$SEED" --out="$ts"
    $PY evaluate.py --estimator "$est" --restorer "$RESTORER" --testset "$ts" --out "$OUT/${family}_x$s" > /dev/null
    echo "$family ×$s done"
  done
done
$PY scripts/collect_benchmarks.py table1 "$OUT"
