"""Evaluation on a saved test set: blind SR as in the paper's Table 1 and kernel estimation as in Figure 6.

Methods compared on the same LR images (paper §4.1), for any restorer (`restorers.base.Restorer`;
its name replaces R):
  * Bicubic          — bicubic upsampling of the LR image (no restorer);
  * R + mean kernel  — the restorer given the family's mean kernel (kernel-unaware);
  * R + S2K kernel   — blind SR, ours: the kernel estimated from the LR spectrum;
  * R + true kernel  — the non-blind upper bound.
Kernel estimates are scored with D_v, D_s and kernel PSNR (Eq. 13; flip-invariant for motion) and the
signed error of their width (`metrics.kernel_width`) against the mean-kernel baseline. Images are grouped by LR size and processed in jitted batches sharded over every
device (data-parallel, like training); per-image rows are written as they complete, so an interrupted
run keeps what it finished.
"""
import collections
import csv
import dataclasses
import functools
import json
import os
from typing import Any, Iterable, Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import tqdm

from s2k_jax import checkpoints
from s2k_jax import degradation
from s2k_jax import estimator as estimator_lib
from s2k_jax import images
from s2k_jax import kernels as kernels_lib
from s2k_jax import metrics
from s2k_jax import noise as noise_lib
from s2k_jax import pipeline
from s2k_jax import sharding
from s2k_jax import testsets
from s2k_jax import visualize
from s2k_jax.restorers import base

BICUBIC = 'Bicubic'
# Row labels of the restorer's methods: format with the restorer's name (`sr_labels`).
MEAN, S2K, TRUE = '{} + mean kernel', '{} + S2K kernel', '{} + true kernel'
KERNEL_METHODS = ('S2K', 'mean kernel')
# Per image and kernel method (metrics.kernel_metrics): Eq. 13's D_v and D_s, kernel PSNR, and the signed
# error of the kernel's width (est − true, HR px).
KERNEL_SCORES = ('D_v', 'D_s', 'psnr', 'width_error')
# Per SR method and image: PSNR / SSIM on Y (Table 1), chroma error vs HR (levels), saturation / HR's,
# and the LR consistency of restorer outputs (dB; NaN for bicubic).
SR_SCORES = ('psnr', 'ssim', 'chroma', 'saturation', 'lr_psnr')
# The noise σ restorers are told: the test set's true σ per image, or the one s2k-sr would estimate from
# each LR image (`pipeline.noise_level`: blind in the noise as well as the kernel).
NOISE_MODES = base.TOLD_NOISE  # the same two choices as training's restorer.told_noise


def restorer_list(rest: base.Restorer | Sequence[base.Restorer] | None) -> list[base.Restorer]:
  """None, one restorer or several → a list; several must have different names (their row labels)."""
  rests = [] if rest is None else [rest] if isinstance(rest, base.Restorer) else list(rest)
  names = [r.name for r in rests]
  if len(set(names)) != len(names):
    raise ValueError(f'restorers to compare side by side need different names, got {names}: name them '
                     'apart with `distinct_names`, or evaluate them one at a time (one --restorer each).')
  return rests


def distinct_names(rests: Sequence[base.Restorer]) -> list[base.Restorer]:
  """Restorers of the same network get their source in their name ('USRNet (usrnet_mixed.npz)'), so
  that two bundles of one network compare side by side; the same source twice is refused."""
  sources = [os.path.normpath(r.directory) for r in rests]
  if len(set(sources)) != len(sources):
    raise ValueError(f'a restorer is given twice ({", ".join(sorted(s for s in set(sources) if sources.count(s) > 1))}): '
                     'give each one once.')
  def short(source):  # a bundle file's name, or a workdir's (not its checkpoints/ folder)
    head, tail = os.path.split(source)
    return os.path.basename(head) if tail == checkpoints.SUBDIR else tail
  names = [r.name for r in rests]
  labels = [short(s) for s in sources]
  out = []
  for r, source, label in zip(rests, sources, labels):
    if names.count(r.name) > 1:
      r = dataclasses.replace(r, name=f'{r.name} ({label if labels.count(label) == 1 else source})')
    out.append(r)
  return restorer_list(out)


def default_noise(rests: Sequence[base.Restorer]) -> str:
  """The noise σ to tell `rests` when the caller does not say: the one they were trained told
  (`Restorer.told_noise`: the true σ, or the estimate read off each LR as s2k-sr does)."""
  told = {r.told_noise for r in rests}
  if len(told) > 1:
    raise ValueError('the restorers were trained told different noise σ ('
                     + ', '.join(f'{r.name} in {r.directory}: {r.told_noise}' for r in rests)
                     + f"): choose the σ all are told with noise= one of {NOISE_MODES}.")
  return told.pop() if told else 'true'


def check_compatible(testset: testsets.TestSet, est: estimator_lib.Estimator | None,
                     rest: base.Restorer | Sequence[base.Restorer] | None) -> None:
  """Refuses, with what to do, models that do not fit the test set (scale, family, kernel size)."""
  for r in restorer_list(rest)[1:]:
    check_compatible(testset, est, r)
  rest = (restorer_list(rest) or [None])[0]
  family = testset.manifest.get('family')
  for name, model in (('estimator', est), ('restorer', rest)):
    if model is None:
      continue
    deg = model.config.degradation
    families = model.families if name == 'restorer' else kernels_lib.members(deg.family)
    if family is not None and family not in families:
      raise ValueError(f'{testset.directory} is a {family} test set but the {name} in {model.directory} '
                       f'was trained on {", ".join(families)} kernels; use a {family} {name}.')
  if est is not None and est.config.degradation.scale != testset.scale:
    raise ValueError(f'{testset.directory} is a ×{testset.scale} test set but the estimator in '
                     f'{est.directory} was trained on ×{est.config.degradation.scale} spectra; use a '
                     f'×{testset.scale} estimator.')
  if rest is not None and testset.scale not in rest.scales:
    raise ValueError(f'{testset.directory} is a ×{testset.scale} test set but the restorer in '
                     f'{rest.directory} restores {", ".join(f"×{s}" for s in rest.scales)}; use a '
                     f'×{testset.scale} restorer.')
  if est is not None and rest is not None:
    pipeline.check_compatible(est, rest, testset.scale)  # The two must also fit each other.


def sr_labels(rest: base.Restorer) -> tuple[str, str, str]:
  """The mean-, S2K- and true-kernel row labels of a restorer, e.g. 'SFTMD + mean kernel'."""
  return MEAN.format(rest.name), S2K.format(rest.name), TRUE.format(rest.name)


def _batches(testset: testsets.TestSet, batch_size: int) -> Iterable[list[int]]:
  """Indices grouped by LR size (a jitted batch needs one shape), in test-set order within a group."""
  by_shape = collections.defaultdict(list)
  for i, lr in enumerate(testset.lr):
    by_shape[lr.shape].append(i)
  for indices in by_shape.values():
    for start in range(0, len(indices), batch_size):
      yield indices[start:start + batch_size]


def _sharded(x: np.ndarray, mesh) -> tuple[jax.Array, int]:
  """Pads the batch to a multiple of the device count (repeating its last image) and shards it on
  'data', so the jitted models run data-parallel over every device of every process (each holds the
  whole batch and places its devices' rows); returns (array, true batch size)."""
  n, devices = x.shape[0], mesh.devices.size
  pad = (-n) % devices
  if pad:
    x = np.concatenate([x, np.repeat(x[-1:], pad, axis=0)])
  return sharding.shard_replicated_batch({'x': x}, mesh)['x'], n


def _run_sharded(fn, mesh, *arrays):
  """fn(*sharded arrays) → numpy on every process (gathered first), without the padding rows."""
  sharded = [_sharded(np.asarray(a), mesh) for a in arrays]
  out = sharding.gather(fn(*(a for a, _ in sharded)), mesh)
  n = sharded[0][1]
  return jax.tree.map(lambda y: np.asarray(y)[:n], out)


def _image_scores(sr: np.ndarray, hr: np.ndarray, scale: int) -> tuple[np.ndarray, np.ndarray]:
  return (np.asarray(metrics.psnr(sr, hr, crop_border=scale)),
          np.asarray(metrics.ssim(sr, hr, crop_border=scale)))


class _RowWriter:
  """Per-image CSV written row by row (flushed), so partial results survive an interruption; by
  process 0 alone when several evaluate together."""

  def __init__(self, path: str, fields: list[str]):
    self._file = open(path if jax.process_index() == 0 else os.devnull, 'w', newline='', encoding='utf-8')
    self._csv = csv.DictWriter(self._file, fieldnames=fields)
    self._csv.writeheader()

  def write(self, row: dict[str, Any]) -> None:
    self._csv.writerow({k: (f'{v:.6g}' if isinstance(v, float) else v) for k, v in row.items()})
    self._file.flush()

  def close(self) -> None:
    self._file.close()


def evaluate(testset: testsets.TestSet, out_dir: str, est: estimator_lib.Estimator | None = None,
             rest: base.Restorer | Sequence[base.Restorer] | None = None, batch_size: int = 8,
             spectrum_mode: str | None = None, noise: str | None = None) -> dict[str, Any]:
  """Runs every method the given models allow on `testset`; writes `<out_dir>/per_image.csv` as it goes.

  `rest` may be several restorers: each gets its mean / S2K / true-kernel rows, side by side. `noise`
  (NOISE_MODES) is the σ they are told: the set's true one, or estimated from each LR as s2k-sr does;
  None: the one they were trained told (`default_noise`).
  Returns per-image arrays: kernel metrics per kernel method ('kernels'), PSNR/SSIM per SR method
  ('sr'), the S2K estimates, and a few examples for figures.
  """
  rests = restorer_list(rest)
  if est is None and not rests:
    raise ValueError('nothing to evaluate: give an estimator, a restorer, or both.')
  check_compatible(testset, est, rests)
  noise = default_noise(rests) if noise is None else noise
  if noise not in NOISE_MODES:
    raise ValueError(f'noise must be one of {NOISE_MODES} (the σ restorers are told), got {noise!r}.')
  os.makedirs(out_dir, exist_ok=True)  # every process computes everything; process 0 writes
  scale, n = testset.scale, len(testset)
  # The test set's own kernels define the family and its mean kernel (a mixed-family restorer
  # evaluated on a Gaussian set is compared with the Gaussian mean).
  test_degradation = ml_collections.ConfigDict(testset.manifest['degradation'])
  family = test_degradation.family
  flip = kernels_lib.flip_invariant(family)
  downsample = test_degradation.downsample
  grid = degradation.lr_grid(downsample)
  # The test set's blurs (mean, true) go with its downsampler; S2K's with the one its estimator was
  # trained on (pipeline.kernel_downsample), on the set's grid, as blind SR runs it.
  kernel_downsample = (downsample, pipeline.kernel_downsample(est) if est else None, downsample)
  # A protocol's fixed kernels (gaussian8) average to its mean kernel; random kernels to the family's.
  mean_k = (testset.kernels.mean(axis=0) if testset.manifest.get('protocol') == 'gaussian8'
            else kernels_lib.mean_kernel(test_degradation))
  labels = {r.name: sr_labels(r) for r in rests}
  sr_methods = [BICUBIC] + [m for r in rests for m in labels[r.name] if est or m != labels[r.name][1]]
  kernel_scores = {m: collections.defaultdict(lambda: np.zeros(n, np.float32)) for m in KERNEL_METHODS}
  sr_scores = {m: {k: np.full(n, np.nan, np.float32) for k in SR_SCORES} for m in sr_methods}
  estimates = np.zeros_like(testset.kernels)
  examples = {}
  fields = ['image'] + [f'{m}: {k}' for m in KERNEL_METHODS if est for k in KERNEL_SCORES] + \
      [f'{m}: {k}' for m in sr_methods for k in SR_SCORES]
  rows = _RowWriter(os.path.join(out_dir, 'per_image.csv'), fields)
  mesh = sharding.make_mesh()
  try:
    with tqdm.tqdm(total=n, desc='evaluating', unit='img') as bar:
      for idx in _batches(testset, batch_size):
        lr = images.to_float(np.stack([testset.lr[i] for i in idx]))
        hr = np.stack([testset.hr[i] for i in idx])
        true_k = testset.kernels[idx]
        out = {}
        if est is not None:
          # Exactly what blind SR feeds the restorer: the pipeline's spectrum mode and canonical form.
          # On the test set's canvas: a mixed-family estimator's 23² kernels are scored on a Gaussian
          # set's 15² (a Gaussian or disk of the family ranges has no mass outside it).
          estimates[idx] = kernels_lib.resize_canvas(
              _run_sharded(lambda x: pipeline.estimate(est, x, spectrum_mode)[0], mesh, lr), true_k.shape[-1])
          for method, k in (('S2K', estimates[idx]), ('mean kernel', np.broadcast_to(mean_k, true_k.shape))):
            for name, v in metrics.kernel_metrics(k, true_k, flip_invariant=flip).items():
              kernel_scores[method][name][idx] = np.asarray(v)
        out[BICUBIC] = np.asarray(degradation.bicubic_upsample(jnp.asarray(lr), scale, grid))
        given = {}  # SR method → (the kernels its restorer was given, their downsampler)
        # Estimated once per image; each restorer clips it to its own trained range.
        read = [noise_lib.estimate_sigma(x) for x in lr] if noise == 'estimate' else None
        for r in rests:
          sigma = (testset.noise_sigma[idx] if noise == 'true' else
                   np.array([pipeline.noise_level(x, r, None, e)[0] for x, e in zip(lr, read)], np.float32))
          for method, k, kd in zip(labels[r.name], (np.broadcast_to(mean_k, true_k.shape), estimates[idx], true_k),
                                   kernel_downsample):
            if method in sr_methods:  # the S2K rows only with an estimator
              given[method] = (k, kd)
              restore = functools.partial(r.restore, scale=scale, downsample=kd, grid=grid)
              out[method] = _run_sharded(restore, mesh, lr, k, sigma)
        for method, sr in out.items():
          p, s = _image_scores(sr, hr, scale)
          sr_scores[method]['psnr'][idx], sr_scores[method]['ssim'][idx] = p, s
          for name, value in _colour_scores(sr, hr, scale).items():
            sr_scores[method][name][idx] = value
        for method, (k, kd) in given.items():  # LR consistency: each SR re-degraded as it was restored
          sr_scores[method]['lr_psnr'][idx] = lr_consistency(out[method], lr, k, scale, kd, grid)
        if len(examples.get('lr', [])) < 4:
          examples.setdefault('lr', []).extend(lr[:4])
          examples.setdefault('hr', []).extend(hr[:4])
          examples.setdefault('true_kernel', []).extend(true_k[:4])
          examples.setdefault('est_kernel', []).extend(estimates[idx[:4]] if est is not None else [])
          examples.setdefault('sr', []).extend({m: out[m][j] for m in out} for j in range(min(4, len(idx))))
        for i in idx:
          row = {'image': testset.names[i]}
          if est is not None:
            row.update({f'{m}: {k}': float(kernel_scores[m][k][i]) for m in KERNEL_METHODS
                        for k in KERNEL_SCORES})
          row.update({f'{m}: {k}': float(sr_scores[m][k][i]) for m in sr_methods for k in SR_SCORES})
          rows.write(row)
        bar.update(len(idx))
  finally:
    rows.close()
  return dict(kernels={m: dict(v) for m, v in kernel_scores.items()} if est else {}, sr=sr_scores,
              estimates=estimates, examples=examples, flip_invariant=flip, family=family, noise=noise)


def _colour_scores(sr: np.ndarray, hr: np.ndarray, scale: int) -> dict[str, np.ndarray]:
  """Chroma error vs HR (8-bit levels) and saturation relative to HR, border of the scale cropped."""
  sr, hr = jnp.asarray(sr), images.to_float(jnp.asarray(hr))
  return dict(chroma=np.asarray(metrics.chroma_error(sr, hr, crop_border=scale)),
              saturation=np.asarray(metrics.saturation_ratio(sr, hr, crop_border=scale)))


def lr_consistency(sr: np.ndarray, lr: np.ndarray, kernels: np.ndarray, scale: int, downsample: str,
                   grid: str) -> np.ndarray:
  """PSNR (dB, RGB) of the SR image degraded again with the kernel it was restored with and that
  kernel's downsampler, on the LR's grid (no noise), against the LR input: how exactly the output
  explains what was observed. (B,)."""
  again = degradation.blur_then_downsample(jnp.asarray(sr), kernels, scale, downsample, grid)
  return np.asarray(metrics.psnr_rgb(again, jnp.asarray(lr)))


def _finite_mean(x: np.ndarray) -> float:
  """Mean over images; identical images (PSNR = inf) are left out and counted in the JSON; NaN if the
  score does not apply (bicubic's LR consistency)."""
  if np.isnan(x).all():
    return float('nan')
  finite = np.isfinite(x)
  return float(np.mean(x[finite])) if finite.any() else float('inf')


def summarize(result: dict[str, Any], testset: testsets.TestSet, est, rest) -> dict[str, Any]:
  rests = restorer_list(rest)
  rest = rests[0] if rests else None
  return dict(
      family=result['family'], scale=testset.scale, images=len(testset), testset=testset.directory,
      estimator=None if est is None else dict(directory=est.directory, step=est.step,
                                                generator=est.config.model.generator),
      restorer=None if rest is None else dict(name=rest.name, directory=rest.directory, step=rest.step),
      restorers=[dict(name=r.name, directory=r.directory, step=r.step) for r in rests],
      flip_invariant=result['flip_invariant'], noise=result['noise'],
      kernels={m: {k: _finite_mean(v) for k, v in scores.items()} for m, scores in result['kernels'].items()},
      sr={m: {k: _finite_mean(v) for k, v in scores.items()} for m, scores in result['sr'].items()},
      infinite_psnr_images={m: int(np.sum(~np.isfinite(s['psnr']))) for m, s in result['sr'].items()})


def write_report(result: dict[str, Any], summary: dict[str, Any], out_dir: str) -> None:
  """results.md (Table 1 and Figure 6 layouts), results.json, results.csv and PNG figures; by process 0
  alone when several evaluate together."""
  if jax.process_index() != 0:
    return
  with open(os.path.join(out_dir, 'results.json'), 'w') as f:
    json.dump(summary, f, indent=2)
  s, fam = summary['scale'], summary['family']
  lines = [f'# {fam.capitalize()} kernels, ×{s}, {summary["images"]} images ({summary["testset"]})', '']
  if summary['sr']:
    told = ('the test set\'s true noise σ' if summary['noise'] == 'true' else
            'the noise σ estimated from each LR image, as s2k-sr does')
    lines += ['PSNR (dB) / SSIM on the Y channel, border of the scale cropped (paper Table 1 protocol); '
              f'restorers told {told}.', '',
              f'| Method | Kernel | ×{s} |', '|---|---|---|']
    lines += [f'| {m} | {fam} | {v["psnr"]:.2f} / {v["ssim"]:.4f} |' for m, v in summary['sr'].items()]
    lines += ['', 'Colour and consistency: chroma error vs HR (mean |ΔCb|, |ΔCr|, 8-bit levels), saturation '
              'relative to HR, and PSNR (RGB) of the SR image re-degraded with the kernel it was given vs '
              'the LR input.', '', '| Method | chroma error | saturation / HR | LR consistency (dB) |',
              '|---|---|---|---|']
    lines += [f'| {m} | {v["chroma"]:.2f} | {v["saturation"]:.3f} | '
              + ('–' if not np.isfinite(v['lr_psnr']) else f'{v["lr_psnr"]:.2f}') + ' |'
              for m, v in summary['sr'].items()]
    lines.append('')
  if summary['kernels']:
    note = ' (flip-invariant)' if summary['flip_invariant'] else ''
    lines += [f'Kernel estimation{note}, mean over images (paper Figure 6, Eq. 13; lower D is better).', '',
              f'| Method | D_v ({fam}) | D_s ({fam}) | kernel PSNR (dB) | width error (HR px) |',
              '|---|---|---|---|---|']
    lines += [f'| {m} | {v["D_v"]:.4f} | {v["D_s"]:.3f} | {v["psnr"]:.2f} | {v["width_error"]:+.3f} |'
              for m, v in summary['kernels'].items()]
    lines += ['', 'Width error: mean of the estimate\'s RMS spread per axis minus the truth\'s (√(tr Σ / 2) of '
              'the kernel\'s second moments; σ for an isotropic Gaussian): below 0, too little blur read.']
  with open(os.path.join(out_dir, 'results.md'), 'w') as f:
    f.write('\n'.join(lines) + '\n')
  with open(os.path.join(out_dir, 'results.csv'), 'w', newline='') as f:
    w = csv.writer(f)
    w.writerow(['family', 'scale', 'method', 'metric', 'value'])
    for group in ('sr', 'kernels'):
      for m, values in summary[group].items():
        for k, v in values.items():
          w.writerow([fam, s, m, k, f'{v:.6g}'])
  _write_figures(result, out_dir)


def _write_figures(result: dict[str, Any], out_dir: str) -> None:
  ex = result['examples']
  n = min(4, len(ex.get('lr', [])))
  if n:
    visualize.save_png(os.path.join(out_dir, 'sr_examples.png'), visualize.sr_grid(
        ex['lr'][:n], ex['sr'][:n], ex['hr'][:n], ex['true_kernel'][:n], ex['est_kernel'][:n] or None))
  if result['kernels']:
    visualize.save_png(os.path.join(out_dir, 'kernel_errors.png'), visualize.histogram(
        {m: v['D_v'] for m, v in result['kernels'].items()}, xlabel='D_v'))
