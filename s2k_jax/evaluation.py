"""Kernel-estimation evaluation on a saved test set (paper §4.1 "Kernel Estimation", Figure 6, Eq. 13).

Compares the S2K estimate with the kernel-unaware baseline (the family's mean kernel) on the same LR
images, per image and on average, with D_v = mean |K_est − K_gt| (Eq. 13; flip-invariant for motion
kernels, whose 180° rotation the spectrum cannot see).
"""
import csv
import json
import os
from collections import defaultdict

import numpy as np
import tqdm

from s2k_jax import estimator as estimator_lib
from s2k_jax import kernels as kernels_lib
from s2k_jax import spectrum
from s2k_jax import testsets
from s2k_jax import visualize


def kernel_errors(est: np.ndarray, gt: np.ndarray, flip_invariant: bool) -> np.ndarray:
  """D_v per kernel (B,): mean absolute difference, or its minimum over the 180° rotation of `gt`."""
  if flip_invariant:
    return np.asarray(spectrum.flip_invariant_l1(est, gt))
  return np.mean(np.abs(est - gt), axis=(-2, -1))


def evaluate_kernels(est: estimator_lib.Estimator, testset: testsets.TestSet, batch_size: int = 8,
                     mode: str | None = None) -> dict:
  """Estimates every test kernel (LR grouped by size, in batches) and scores it against the truth."""
  config = est.config
  ksize = int(config.degradation.kernel_size)
  if testset.kernels.shape[-1] != ksize:
    raise ValueError(f'{testset.directory}: test kernels are {testset.kernels.shape[-1]}² but the '
                     f'estimator was trained on {ksize}² {config.degradation.family} kernels.')
  if testset.manifest.get('family') not in (None, config.degradation.family):
    raise ValueError(f'{testset.directory}: a {testset.manifest["family"]} test set, but the estimator '
                     f'was trained on {config.degradation.family} kernels.')
  flip = bool(config.train.flip_invariant_l1)
  by_shape = defaultdict(list)
  for i, lr in enumerate(testset.lr):
    by_shape[lr.shape].append(i)
  estimates = np.zeros_like(testset.kernels)
  inputs = [None] * len(testset)
  with tqdm.tqdm(total=len(testset), desc='estimating kernels', unit='img') as bar:
    for indices in by_shape.values():
      for start in range(0, len(indices), batch_size):
        chunk = indices[start:start + batch_size]
        out = estimator_lib.estimate_kernels(est, np.stack([testset.lr[i] for i in chunk]), mode=mode)
        estimates[chunk] = np.asarray(out['kernel'])
        for j, i in enumerate(chunk):
          inputs[i] = np.asarray(out['inputs'][j])
        bar.update(len(chunk))
  mean_k = kernels_lib.mean_kernel(config.degradation)
  s2k = kernel_errors(estimates, testset.kernels, flip)
  base = kernel_errors(np.broadcast_to(mean_k, testset.kernels.shape), testset.kernels, flip)
  return dict(names=list(testset.names), s2k=s2k, mean_kernel=base, estimates=estimates,
              inputs=inputs, flip_invariant=flip)


def write_report(result: dict, est: estimator_lib.Estimator, testset: testsets.TestSet,
                 out_dir: str) -> dict:
  """Markdown + JSON summary, per-image CSV and a PNG grid of true vs estimated kernels."""
  os.makedirs(out_dir, exist_ok=True)
  family = est.config.degradation.family
  summary = dict(
      family=family, scale=testset.scale, images=len(testset), estimator=est.directory,
      estimator_step=est.step, testset=testset.directory, flip_invariant=result['flip_invariant'],
      D_v={'S2K': float(np.mean(result['s2k'])), 'mean kernel': float(np.mean(result['mean_kernel']))})
  with open(os.path.join(out_dir, 'kernels.json'), 'w') as f:
    json.dump(summary, f, indent=2)
  with open(os.path.join(out_dir, 'kernels_per_image.csv'), 'w', newline='') as f:
    w = csv.writer(f)
    w.writerow(['image', 'D_v_s2k', 'D_v_mean_kernel'])
    for row in zip(result['names'], result['s2k'], result['mean_kernel']):
      w.writerow([row[0], f'{row[1]:.6g}', f'{row[2]:.6g}'])
  flip_note = ' (flip-invariant)' if result['flip_invariant'] else ''
  lines = [f'# Kernel estimation: {family} kernels, ×{testset.scale}, {len(testset)} images', '',
           f'D_v = mean |K_est − K_gt| (paper Eq. 13){flip_note}; lower is better.', '',
           '| method | D_v |', '|---|---|']
  lines += [f'| {k} | {v:.5f} |' for k, v in summary['D_v'].items()]
  with open(os.path.join(out_dir, 'kernels.md'), 'w') as f:
    f.write('\n'.join(lines) + '\n')
  n = min(8, len(testset))
  size = int(est.config.spectrum.size)
  maps_true = np.asarray(spectrum.kernel_to_map(testset.kernels[:n], size))
  maps_est = np.asarray(spectrum.kernel_to_map(result['estimates'][:n], size))
  grid = visualize.estimation_grid(np.stack(result['inputs'][:n]), maps_true, maps_est,
                                   testset.kernels[:n], result['estimates'][:n])
  visualize.save_png(os.path.join(out_dir, 'kernels.png'), grid)
  return summary
