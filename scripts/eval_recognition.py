r"""Kernel-family recognition (`s2k-sr --family auto`) on saved test sets (docs/results.md §5).

For each test set (`python -m s2k_jax.make_testset`, e.g. the family sets of scripts/eval_estimators.sh),
the family classifier reads every LR image and the shipped estimator of the family it recognises runs,
as `s2k-sr --family auto` does. Reported per set: how often the set's family was recognised (and what
the others were taken for), and the kernel PSNR (Eq. 13's kernels, flip-invariant for motion, on the
set's canvas) of recognition + estimation against the estimator of the set's own family (what naming
the family gives), each other family's estimator, and the family's mean kernel; then what running the
wrong family's estimator costs on these sets (the shipped classifier's `recognition.costs` were measured
so, on sets made from the training photos: `make_testset --split train`). With --restorer, the same for
the super-resolved image (PSNR-Y, `scale` border pixels cropped; the restorer told each kernel and the
noise σ estimated from the LR, as s2k-sr does), with the true kernel as the ceiling: what a wrong
family costs the user, where kernel PSNR also counts differences the LR cannot show.

  python scripts/eval_recognition.py --out results/recognition TESTSET [TESTSET ...]
  python scripts/eval_recognition.py --out results/recognition --classifier runs/family TESTSET ...
  python scripts/eval_recognition.py --out results/recognition --restorer usrnet TESTSET ...

Writes OUT/recognition.md and OUT/recognition.csv (one row per image).
"""
import argparse
import csv
import os
import sys

import jax.numpy as jnp
import ml_collections
import numpy as np
import tqdm

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from s2k_jax import cli  # pylint: disable=g-import-not-at-top
from s2k_jax import degradation
from s2k_jax import estimator as estimator_lib
from s2k_jax import family as family_lib
from s2k_jax import images
from s2k_jax import kernels
from s2k_jax import metrics
from s2k_jax import modelio
from s2k_jax import pipeline
from s2k_jax import runtime
from s2k_jax import tasks
from s2k_jax import testsets
from s2k_jax.restorers import base

FAMILIES = family_lib.FAMILIES


def evaluate_set(testset: testsets.TestSet, clf: family_lib.Classifier,
                 ests: dict[str, estimator_lib.Estimator], rest: base.Restorer | None = None) -> list[dict]:
  """One row per image: the recognised family and its probability, and each method's kernel PSNR (and,
  with a restorer, the PSNR-Y of the image it restores with each kernel, keys prefixed 'sr ')."""
  deg = testset.manifest['degradation']
  truth, flip = deg['family'], kernels.flip_invariant(deg['family'])
  mean_k = np.asarray(kernels.mean_kernel(ml_collections.ConfigDict(deg)))
  rows = []
  for i, lr8 in enumerate(tqdm.tqdm(testset.lr, desc=os.path.basename(testset.directory), unit='img')):
    lr, true_k = images.to_float(lr8)[None], testset.kernels[i:i + 1]
    recognised, probs = family_lib.classify(clf, lr[0])
    probability = float(probs[FAMILIES.index(recognised)])
    psnr, told = {}, {}
    for name, est in ests.items():
      k = pipeline.estimate(est, jnp.asarray(lr))[0]
      told[name] = (k, pipeline.kernel_downsample(est))
      k = kernels.resize_canvas(k, true_k.shape[-1])
      psnr[name] = float(metrics.kernel_metrics(np.asarray(k), true_k, flip_invariant=flip)['psnr'][0])
    psnr['mean kernel'] = float(metrics.kernel_metrics(mean_k[None], true_k, flip_invariant=flip)['psnr'][0])
    row = dict(testset=os.path.basename(testset.directory), image=i, family=truth,
               recognised=recognised, probability=probability,
               **{f'p_{f}': float(p) for f, p in zip(FAMILIES, probs)}, auto=psnr[recognised],
               named=psnr[truth], **{f'{f} estimator': psnr[f] for f in FAMILIES},
               mean_kernel=psnr['mean kernel'])
    if rest is not None:
      told['true kernel'] = (jnp.asarray(true_k), deg['downsample'])
      sigma, _ = pipeline.noise_level(lr[0], rest, None)
      grid = degradation.lr_grid(deg['downsample'])
      sr = {name: restored_psnr(rest, lr, k, d, grid, sigma, testset.hr[i], testset.scale)
            for name, (k, d) in told.items()}
      row.update({'sr auto': sr[recognised], 'sr named': sr[truth],
                  **{f'sr {f} estimator': sr[f] for f in FAMILIES}, 'sr true kernel': sr['true kernel']})
    rows.append(row)
  return rows


def restored_psnr(rest: base.Restorer, lr: np.ndarray, kernel: jnp.ndarray, downsample: str, grid: str,
                  sigma: float, hr: np.ndarray, scale: int) -> float:
  """PSNR-Y (dB, `scale` border pixels cropped) of the restorer's output told `kernel` (a blur before
  `downsample`), the LR pixels on `grid` (the test set's)."""
  sr = rest.restore(jnp.asarray(lr), jnp.reshape(kernel, (1,) + kernel.shape[-2:]),
                    jnp.full((1,), sigma, jnp.float32), scale, downsample=downsample, grid=grid)
  return float(metrics.psnr(np.asarray(sr)[0], hr, crop_border=scale))


def table(rows: list[dict], prefix: str = '', last: str = 'mean_kernel') -> list[str]:
  """Per set: recognition counts and the mean of each method's score (keys `prefix` + method); the last
  column is `last` (the mean kernel for kernel PSNR, the true kernel for restored images)."""
  lines = ['| test set | recognised as ' + ' / '.join(FAMILIES) + ' | auto | family named | '
           + ' | '.join(f'{f} estimator' for f in FAMILIES) + f' | {last.replace("_", " ")} |',
           '|---|---|---|---|' + '---|' * len(FAMILIES) + '---|']
  for name in dict.fromkeys(r['testset'] for r in rows):
    part = [r for r in rows if r['testset'] == name]
    counts = ' / '.join(str(sum(r['recognised'] == f for r in part)) for f in FAMILIES)
    mean = lambda key: f'{np.mean([r[prefix + key] for r in part]):.2f}'
    lines.append(f'| {name} | {counts} of {len(part)} | **{mean("auto")}** | {mean("named")} | '
                 + ' | '.join(mean(f'{f} estimator') for f in FAMILIES) + f' | {mean(last)} |')
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
                      help='family classifier (workdir or bundle); default: the shipped one of the sets\' scale and --grid')
  parser.add_argument('--grid', choices=degradation.LR_GRIDS, default='direct',
                      help='which shipped estimators and classifier run, as s2k-sr --grid picks them (default '
                           'direct: the LR of make_testset\'s family sets; centre for sets made with a resizer)')
  parser.add_argument('--restorer', default=None, metavar='MODEL',
                      help='also restore each image with each kernel: usrnet (the shipped one), or a restorer '
                           'workdir or bundle that serves every family')
  args = parser.parse_args(argv)
  runtime.quiet_library_logs()

  def run():
    sets = [testsets.load(d) for d in args.testsets]
    for t in sets:  # each set's LR grid, before any work (a random-resizer set has none)
      degradation.lr_grid(t.manifest['degradation']['downsample'])
    scales = {t.scale for t in sets}
    if len(scales) != 1:
      raise ValueError(f'the test sets are of several scales ({", ".join(f"×{s}" for s in sorted(scales))}): '
                       'give the sets of one scale per run.')
    scale, = scales
    clf = family_lib.load(args.classifier or modelio.pretrained_classifier(scale, args.grid))
    if clf.scale != scale:
      raise ValueError(f'the classifier in {clf.directory} reads ×{clf.scale} LR, the test sets are ×{scale}.')
    ests = {f: estimator_lib.load(modelio.pretrained_estimator(f, scale, args.grid)) for f in FAMILIES}
    rest = None
    if args.restorer:
      name = args.restorer
      if name in modelio.PRETRAINED_RESTORERS:
        name = cli.shipped_restorer(modelio.AUTO_FAMILY, scale, name)
      rest = tasks.load_restorer(name)
      for est in ests.values():
        pipeline.check_compatible(est, rest)
    return [row for t in sets for row in evaluate_set(t, clf, ests, rest)]

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
  if args.restorer:
    lines += ['', f'PSNR-Y (dB, mean over each set\'s images, scale border pixels cropped) of the '
              f'images {args.restorer} restores with each kernel, the noise σ estimated from the LR:', ''
              ] + table(rows, 'sr ', 'true kernel')
  with open(os.path.join(args.out, 'recognition.md'), 'w', encoding='utf-8') as f:
    f.write('\n'.join(lines) + '\n')
  print('\n'.join(lines[4:]))
  return 0


if __name__ == '__main__':
  sys.exit(main())
