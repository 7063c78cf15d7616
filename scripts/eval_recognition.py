r"""Kernel-family recognition (`s2k-sr --family auto`) on saved test sets (docs/results.md §5).

For each test set (`python -m s2k_jax.make_testset`, e.g. the family sets of scripts/eval_estimators.sh),
the family classifier reads every LR image and the shipped estimator of the family it recognises runs,
as `s2k-sr --family auto` does. Reported per set: how often the set's family was recognised (and what
the others were taken for), and the kernel PSNR (Eq. 13's kernels, flip-invariant for motion, on the
set's canvas) of recognition + estimation against the estimator of the set's own family (what naming
the family gives), each other family's estimator, and the family's mean kernel; then what running the
wrong family's estimator costs on these sets (the shipped classifier's `recognition.costs` were measured
so, on sets made from the training photos: `make_testset --split train`).

  python scripts/eval_recognition.py --out results/recognition TESTSET [TESTSET ...]
  python scripts/eval_recognition.py --out results/recognition --classifier runs/family TESTSET ...

Writes OUT/recognition.md and OUT/recognition.csv (one row per image).
"""
import argparse
import csv
import os
import sys

import jax.numpy as jnp
import ml_collections
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from s2k_jax import degradation  # pylint: disable=g-import-not-at-top
from s2k_jax import estimator as estimator_lib
from s2k_jax import family as family_lib
from s2k_jax import images
from s2k_jax import kernels
from s2k_jax import metrics
from s2k_jax import modelio
from s2k_jax import pipeline
from s2k_jax import runtime
from s2k_jax import testsets

FAMILIES = family_lib.FAMILIES


def evaluate_set(testset: testsets.TestSet, clf: family_lib.Classifier,
                 ests: dict[str, estimator_lib.Estimator]) -> list[dict]:
  """One row per image: the recognised family and its probability, and each method's kernel PSNR."""
  deg = testset.manifest['degradation']
  truth, flip = deg['family'], kernels.flip_invariant(deg['family'])
  mean_k = np.asarray(kernels.mean_kernel(ml_collections.ConfigDict(deg)))
  rows = []
  for i, lr8 in enumerate(testset.lr):
    lr, true_k = images.to_float(lr8)[None], testset.kernels[i:i + 1]
    probs = family_lib.recognise(clf, lr)[0]
    recognised, probability = family_lib.recognised(probs, clf.costs)
    psnr = {}
    for name, est in ests.items():
      k = kernels.resize_canvas(pipeline.estimate(est, jnp.asarray(lr))[0], true_k.shape[-1])
      psnr[name] = float(metrics.kernel_metrics(np.asarray(k), true_k, flip_invariant=flip)['psnr'][0])
    psnr['mean kernel'] = float(metrics.kernel_metrics(mean_k[None], true_k, flip_invariant=flip)['psnr'][0])
    rows.append(dict(testset=os.path.basename(testset.directory), image=i, family=truth,
                     recognised=recognised, probability=probability,
                     **{f'p_{f}': float(p) for f, p in zip(FAMILIES, probs)}, auto=psnr[recognised],
                     named=psnr[truth], **{f'{f} estimator': psnr[f] for f in FAMILIES},
                     mean_kernel=psnr['mean kernel']))
  return rows


def table(rows: list[dict]) -> list[str]:
  lines = ['| test set | recognised as ' + ' / '.join(FAMILIES) + ' | auto | family named | '
           + ' | '.join(f'{f} estimator' for f in FAMILIES) + ' | mean kernel |',
           '|---|---|---|---|' + '---|' * len(FAMILIES) + '---|']
  for name in dict.fromkeys(r['testset'] for r in rows):
    part = [r for r in rows if r['testset'] == name]
    counts = ' / '.join(str(sum(r['recognised'] == f for r in part)) for f in FAMILIES)
    mean = lambda key: f'{np.mean([r[key] for r in part]):.2f}'
    lines.append(f'| {name} | {counts} of {len(part)} | **{mean("auto")}** | {mean("named")} | '
                 + ' | '.join(mean(f'{f} estimator') for f in FAMILIES) + f' | {mean("mean_kernel")} |')
  return lines


def measured_costs(rows: list[dict]) -> list[str]:
  """What running each family's estimator on LR of another family costs on these sets: mean kernel PSNR
  of the set's own family's estimator minus the other's (dB; `config.recognition.costs`, rows: the true
  family, columns: the estimator run), for the families the sets cover."""
  lines = ['| LR of \\ estimator run | ' + ' | '.join(FAMILIES) + ' |', '|---|' + '---|' * len(FAMILIES)]
  for truth in FAMILIES:
    part = [r for r in rows if r['family'] == truth]
    if part:
      lines.append(f'| {truth} | ' + ' | '.join(
          f'{np.mean([r["named"] - r[f"{f} estimator"] for r in part]):.1f}' for f in FAMILIES) + ' |')
  return lines


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0], epilog=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument('testsets', nargs='+', help='test set folders (python -m s2k_jax.make_testset)')
  parser.add_argument('--out', required=True)
  parser.add_argument('--classifier', default=None,
                      help='family classifier (workdir or bundle); default: the shipped one of the sets\' scale')
  parser.add_argument('--grid', choices=degradation.LR_GRIDS, default='direct',
                      help='which shipped estimators run, as s2k-sr --grid picks them (default direct: the LR '
                           'of make_testset\'s family sets)')
  args = parser.parse_args(argv)
  runtime.quiet_library_logs()

  def run():
    sets = [testsets.load(d) for d in args.testsets]
    scales = {t.scale for t in sets}
    if len(scales) != 1:
      raise ValueError(f'the test sets are of several scales ({", ".join(f"×{s}" for s in sorted(scales))}): '
                       'give the sets of one scale per run.')
    scale, = scales
    clf = family_lib.load(args.classifier or modelio.pretrained_classifier(scale))
    if clf.scale != scale:
      raise ValueError(f'the classifier in {clf.directory} reads ×{clf.scale} LR, the test sets are ×{scale}.')
    ests = {f: estimator_lib.load(modelio.pretrained_estimator(f, scale, args.grid)) for f in FAMILIES}
    return [row for t in sets for row in evaluate_set(t, clf, ests)]

  try:
    rows = run()
  except (ValueError, FileNotFoundError) as e:
    print(f'eval_recognition: error: {e}', file=sys.stderr)
    return 2
  os.makedirs(args.out, exist_ok=True)
  with open(os.path.join(args.out, 'recognition.csv'), 'w', newline='', encoding='utf-8') as f:
    writer = csv.DictWriter(f, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
  lines = ['# Kernel-family recognition', '',
           f'Kernel PSNR (dB), mean over each set\'s images; classifier: {args.classifier or "shipped"}; '
           f'estimators: the shipped ones for the {args.grid} grid; "auto" runs the family the classifier\'s '
           'decision picks (its recognition.costs).', ''] + table(rows) + [
               '', 'Kernel PSNR lost by running another family\'s estimator (dB; the costs a classifier\'s '
               'recognition.costs can take):', ''] + measured_costs(rows)
  with open(os.path.join(args.out, 'recognition.md'), 'w', encoding='utf-8') as f:
    f.write('\n'.join(lines) + '\n')
  print('\n'.join(lines[4:]))
  return 0


if __name__ == '__main__':
  sys.exit(main())
