"""Blind super-resolution of arrays: LR → spectrum → S2K kernel → restorer (paper §3.4, Fig. 2).

The estimator (§3.3) turns the LR amplitude spectrum into a kernel map, decoded to a k×k kernel and put
in the canonical form of `spectrum.canonical_kernel` (centred on its mass; of k and its 180° rotation,
the one the third-moment rule picks). Any restorer (`restorers.base.Restorer`, e.g. IKC's SFTMD) then
super-resolves with that kernel. `super_resolve` does this for arrays (a list of any sizes is grouped
by size into jitted batches); large images are restored in overlapping tiles whose margins cover the
restorer's receptive field, so tiling does not change the result. The file front end (`s2k-sr`) is
`s2k_jax/cli.py`.

Decisions (canonical form, minimum size, model compatibility, tiling, 8-bit output) are in
docs/conventions.md.
"""
from collections.abc import Sequence
import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from s2k_jax import commands
from s2k_jax import degradation
from s2k_jax import estimator as estimator_lib
from s2k_jax import images
from s2k_jax import kernels
from s2k_jax import noise
from s2k_jax import spectrum
from s2k_jax.restorers import base

# Absolute floor of the LR side (pixels); see `min_lr_side`.
MIN_LR_SIDE = 16
# Images with more LR pixels than AUTO_TILE² are restored in AUTO_TILE × AUTO_TILE tiles: no single
# restorer call is bigger than one tile (a 512² LR tile at ×4 peaks at a few GiB of activations).
AUTO_TILE = 512


class ImageTooSmallError(ValueError):
  """An LR image smaller than the estimator can read; the message names the image."""


class IncompatibleModelsError(ValueError):
  """An estimator and a restorer (or a requested scale) that cannot work together."""


# ---------------------------------------------------------------------------------------------------
# Checks made before any image is processed.


def min_lr_side(est: estimator_lib.Estimator) -> int:
  """Smallest LR side the estimator accepts: max(16, spectrum size / 4).

  Smaller images give windowed spectra much coarser than the S×S crops the generator was trained on.
  """
  return max(MIN_LR_SIDE, int(est.config.spectrum.size) // 4)


def check_image_size(shape: Sequence[int], est: estimator_lib.Estimator, name: str) -> None:
  height, width = int(shape[0]), int(shape[1])
  need = min_lr_side(est)
  if min(height, width) < need:
    raise ImageTooSmallError(
        f'{name}: {height}×{width} pixels is too small for kernel estimation; this estimator (spectrum '
        f'size {est.config.spectrum.size}) needs at least {need} pixels on each side. Use a larger image '
        'or crop (do not upscale it: interpolation changes the blur the estimator should see).')


def check_compatible(est: estimator_lib.Estimator, rest: base.Restorer,
                     scale: int | None = None) -> None:
  """Raises IncompatibleModelsError, saying what to do, unless the two models can run together."""
  e = est.config.degradation
  where = f'estimator {est.directory}, restorer {rest.directory}'
  served = ', '.join(f'×{s}' for s in rest.scales)
  if scale is not None and int(scale) not in rest.scales:
    train = commands.train_command('--config configs/usrnet.py --workdir runs/usrnet')
    raise IncompatibleModelsError(
        f'the restorer in {rest.directory} restores {served}, not ×{scale}: ask for one of those '
        f'(--scale) or train a restorer for ×{scale} ({train}, every scale) and an estimator for ×{scale}.')
  if scale is not None and int(scale) != int(e.scale):
    train = commands.train_command(f'--config configs/{e.family}.py:photo --config.degradation.scale={scale} '
                                   '--workdir runs/est')
    raise IncompatibleModelsError(
        f'the estimator in {est.directory} reads ×{e.scale} LR spectra, not ×{scale}: pass an estimator '
        f'trained for ×{scale} ({train}) with --estimator.')
  if int(e.scale) not in rest.scales:
    raise IncompatibleModelsError(
        f'{where}: the estimator was trained on ×{e.scale} LR images but the restorer restores {served}. '
        'Kernels live at HR resolution and the LR spectrum shows them decimated by the scale, so use an '
        'estimator trained for a scale the restorer serves.')
  missing = [f for f in kernels.members(e.family) if f not in rest.families]
  if missing:
    raise IncompatibleModelsError(
        f'{where}: the estimator knows {e.family} kernels but the restorer was trained on '
        f'{", ".join(rest.families)} kernels only; use a restorer trained on {", ".join(missing)} kernels '
        '(the USRNet trained on all families, configs/usrnet.py, serves every estimator).')
  if int(e.kernel_size) > rest.kernel_size:
    raise IncompatibleModelsError(
        f'{where}: the estimator returns {e.kernel_size}×{e.kernel_size} kernels but the restorer\'s code '
        f'covers only {rest.kernel_size}×{rest.kernel_size}, which would cut the kernels\' tails; train '
        f'the restorer with restorer.kernel_size = {e.kernel_size} or more.')


def check_noise_sigma(rest: base.Restorer, noise_sigma: float) -> None:
  noise.check_sigma(noise_sigma, 'noise_sigma')
  if noise_sigma > 0 and not rest.takes_noise:
    raise ValueError(f'noise_sigma = {noise_sigma}, but the restorer in {rest.directory} was trained '
                     'without noise and has no noise input; leave it at 0.')


def default_overlap(rest: base.Restorer, tile: int) -> int:
  """The receptive-field radius (tiles then reproduce the untiled result), at most a quarter tile."""
  return min(rest.receptive_field, tile // 4)


def check_options(spectrum_mode: str | None, tile: int | None, overlap: int | None) -> None:
  if spectrum_mode not in (None,) + spectrum.SPECTRUM_MODES:
    raise ValueError(f'spectrum_mode must be one of {spectrum.SPECTRUM_MODES} (or None for the '
                     f"estimator's training mode), got {spectrum_mode!r}.")
  if tile is not None and tile < 0:
    raise ValueError(f'tile is the LR tile side in pixels (0 = never tile, None = automatic), got {tile}.')
  if overlap is not None and overlap < 0:
    raise ValueError(f'overlap must be >= 0 LR pixels, got {overlap}.')
  if tile and overlap is not None and tile <= 2 * overlap:
    raise ValueError(f'tile ({tile}) must exceed twice the overlap ({overlap}): each tile drops `overlap` '
                     'pixels at its inner edges. Use a larger tile or a smaller overlap.')


# ---------------------------------------------------------------------------------------------------
# Tiles.


def tile_spans(length: int, tile: int, overlap: int) -> list[tuple[int, int, int, int]]:
  """Tiles along one axis: (start, stop, keep_start, keep_stop) per tile, covering [0, length).

  Every tile has `tile` pixels (one tile of `length` if that is shorter), starts are spread evenly,
  neighbours overlap by at least 2·overlap, and each pixel is kept from exactly one tile, at least
  `overlap` pixels from that tile's inner edges (the seams sit mid-way through the overlaps).
  """
  if length <= tile:
    return [(0, length, 0, length)]
  core = tile - 2 * overlap
  if core < 1:
    raise ValueError(f'tile ({tile}) must exceed twice the overlap ({overlap}).')
  gaps = -(-(length - tile) // core)  # ceil: consecutive starts then differ by at most `core`.
  starts = [i * (length - tile) // gaps for i in range(gaps + 1)]
  seams = [(a + tile + b) // 2 for a, b in zip(starts[:-1], starts[1:])]
  keeps = list(zip([0] + seams, seams + [length]))
  return [(s, s + tile, k0, k1) for s, (k0, k1) in zip(starts, keeps)]


def restore_tiled(rest: base.Restorer, lr: jax.Array, kernels: jax.Array, tile: int,
                  overlap: int, noise_sigma: jax.Array | None = None,
                  scale: int | None = None, downsample: str = 'bicubic',
                  grid: str | None = None) -> np.ndarray:
  """The restorer on overlapping tile×tile LR tiles (all one shape: one compilation), seams cropped.

  Equal to the untiled result (up to float round-off) when overlap ≥ `rest.receptive_field`.
  """
  batch, height, width, _ = lr.shape
  s = rest.resolve_scale(scale)
  out = np.zeros((batch, height * s, width * s, 3), np.float32)
  for r0, r1, kr0, kr1 in tile_spans(height, tile, overlap):
    for c0, c1, kc0, kc1 in tile_spans(width, tile, overlap):
      sr = np.asarray(rest.restore(lr[:, r0:r1, c0:c1], kernels, noise_sigma, s, downsample=downsample,
                                   grid=grid))
      out[:, kr0 * s:kr1 * s, kc0 * s:kc1 * s] = sr[:, (kr0 - r0) * s:(kr1 - r0) * s,
                                                    (kc0 - c0) * s:(kc1 - c0) * s]
  return out


# ---------------------------------------------------------------------------------------------------
# Arrays.


def on_one_device(model):
  """Models load replicated over every device; one image needs one device, not N redundant copies."""
  return dataclasses.replace(model, state=jax.device_put(model.state, jax.local_devices()[0]))


def _as_unit_float(image: Any, name: str) -> np.ndarray:
  """(h, w, 3) uint8/uint16 (÷ white level) or float in [0, 1] → float32."""
  x = np.asarray(image)
  if x.ndim != 3 or x.shape[-1] != 3:
    raise ValueError(f'{name}: expected an (h, w, 3) RGB image, got shape {x.shape}.')
  if x.dtype in (np.uint8, np.uint16):
    return images.to_float(x)
  x = x.astype(np.float32)
  if not np.all(np.isfinite(x)) or x.min() < 0 or x.max() > 1:
    raise ValueError(f'{name}: float pixels must be finite and in [0, 1], got range '
                     f'[{np.nanmin(x):.3g}, {np.nanmax(x):.3g}]; divide by the white level (255, 65535).')
  return x


def noise_level(lr: np.ndarray, rest, noise_sigma: float | None,
                estimate: float | None = None) -> tuple[float, str]:
  """The σ given to the restorer and how it was found: given, or (s2k-sr's default) estimated from
  the LR photo in [0, 1] (`noise.estimate_sigma`, unless `estimate` is passed) and clipped to the
  restorer's trained range."""
  if noise_sigma is not None:
    return noise_sigma, f'noise σ {100 * noise_sigma:.2f}% (given)'
  estimate = noise.estimate_sigma(lr) if estimate is None else estimate
  if not rest.takes_noise:
    return 0.0, f'noise σ ≈ {100 * estimate:.2f}% (estimated; {rest.name} here has no noise input)'
  trained_max = float(rest.config.degradation.noise_max)
  used = min(estimate, trained_max)
  clipped = f', clipped to the trained {100 * trained_max:.1f}%' if used < estimate else ''
  return used, f'noise σ {100 * estimate:.2f}% (estimated{clipped})'


def estimate(est: estimator_lib.Estimator, lr: jax.Array,
             spectrum_mode: str | None = None) -> tuple[jax.Array, jax.Array]:
  """(B, h, w, 3) LR in [0, 1] → canonical kernels (B, k, k) and generator inputs (B, S, S, 1).

  `spectrum_mode` None takes the mode the estimator was trained with (`config.spectrum.mode`): the
  generator reads best the spectra it was trained on (docs/results.md measures crop vs Welch).
  """
  return estimator_lib.estimate_canonical(est, lr, spectrum_mode)


def kernel_downsample(est: estimator_lib.Estimator) -> str:
  """The downsampler an estimator's kernels are blurs before: the one of its training LR. A 'direct'-
  trained estimator's kernel already includes whatever filter made the image smaller. One trained on
  LR from random resizers (degradation.RANDOM_RESIZER) learned blurs before any of them: they are read as
  blurs before a bicubic resize, close to any resizer's (docs/conventions.md, "Random resizer")."""
  return degradation.nominal_downsample(str(est.config.degradation.downsample))


def _auto_tile(height: int, width: int, tile: int | None) -> int:
  if tile is None:
    return AUTO_TILE if height * width > AUTO_TILE ** 2 else 0
  return tile


def super_resolve_batch(lr: Any, est: estimator_lib.Estimator, rest: base.Restorer, *,
                        spectrum_mode: str | None = None, tile: int | None = None,
                        overlap: int | None = None, noise_sigma: float = 0.0,
                        grid: str = 'centre') -> dict[str, np.ndarray]:
  """One batch of same-size LR images → dict(sr (B, h·s, w·s, 3), kernel (B, k, k), inputs (B, S, S, 1)).

  LR is float in [0, 1]; the kernel is estimated once per image from the whole image, and the
  restorer runs on the whole image or, with `tile` (automatic above AUTO_TILE² pixels), per tile.
  """
  lr = jnp.asarray(lr, jnp.float32)
  kernels, inputs = estimate(est, lr, spectrum_mode)
  sigma = jnp.full((lr.shape[0],), noise_sigma, jnp.float32)
  scale = int(est.config.degradation.scale)  # check_compatible: the restorer serves it
  tile = _auto_tile(lr.shape[1], lr.shape[2], tile)
  if tile and max(lr.shape[1:3]) > tile:
    overlap = default_overlap(rest, tile) if overlap is None else overlap
    sr = restore_tiled(rest, lr, kernels, tile, overlap, sigma, scale, kernel_downsample(est), grid)
  else:
    sr = np.asarray(rest.restore(lr, kernels, sigma, scale, downsample=kernel_downsample(est), grid=grid))
  return dict(sr=sr, kernel=np.asarray(kernels), inputs=np.asarray(inputs))


def super_resolve(lr_images: Any, estimator: estimator_lib.Estimator, restorer: base.Restorer, *,
                  spectrum_mode: str | None = None, tile: int | None = None, overlap: int | None = None,
                  noise_sigma: float = 0.0, batch_size: int = 4,
                  names: Sequence[str] | None = None, grid: str = 'centre') -> tuple[Any, Any]:
  """Blind SR: estimate each image's kernel with S2K, then super-resolve with the restorer.

  Args:
    lr_images: (B, h, w, 3) array, or a list of (h, w, 3) arrays of any sizes (grouped by size into
      jitted batches); uint8, uint16 or float in [0, 1].
    estimator, restorer: from `estimator.load` / `tasks.load_restorer`; checked with
      `check_compatible` first.
    spectrum_mode: 'crop' (centred S×S crop), 'welch' (averages the whole image) or None (default:
      the estimator's training mode).
    tile: LR tile side, overlap included; None tiles automatically above AUTO_TILE² LR pixels, 0 never.
    overlap: LR pixels dropped at each inner tile edge; None = the restorer's receptive-field radius, at
      most tile/4 (the paper's 16-block SFTMD has radius 105, so AUTO_TILE tiles reproduce it exactly).
    noise_sigma: LR noise σ on [0, 1] for restorers trained with noise (S2K does not estimate it).
    batch_size: images per jitted call.
    names: one label per image for error messages (file names).
    grid: where the LR pixels sit on the HR grid: 'centre' (the default: photos and images shrunk by any
      resizer, LR pixels at the centres of s×s HR blocks) or 'direct' (LR = (HR ⊗ k)[::s, ::s], the
      papers' synthetic LR); docs/conventions.md, "Pixel grid". The kernel is the blur before the
      downsampler the estimator was trained with (`kernel_downsample`), and the restorer is told so.

  Returns:
    (sr, kernels): for an array input, float32 (B, h·s, w·s, 3) in [0, 1] and (B, k, k) canonical
    kernels (non-negative, sum 1, at HR resolution); for a list, lists of (h·s, w·s, 3) and (k, k).
  """
  check_compatible(estimator, restorer)
  check_noise_sigma(restorer, noise_sigma)
  check_options(spectrum_mode, tile, overlap)
  degradation.check_grid(grid)
  as_list = not hasattr(lr_images, 'ndim')
  if not as_list and lr_images.ndim != 4:
    raise ValueError(f'pass a (B, h, w, 3) batch or a list of (h, w, 3) images, got an array of shape '
                     f'{lr_images.shape}.')
  items = list(lr_images)
  names = list(names) if names is not None else [f'image {i}' for i in range(len(items))]
  items = [_as_unit_float(x, n) for x, n in zip(items, names)]
  for x, name in zip(items, names):
    check_image_size(x.shape, estimator, name)
  est, rest = on_one_device(estimator), on_one_device(restorer)
  by_size = {}
  for i, x in enumerate(items):
    by_size.setdefault(x.shape, []).append(i)
  sr, kernels = [None] * len(items), [None] * len(items)
  for indices in by_size.values():
    for start in range(0, len(indices), batch_size):
      chunk = indices[start:start + batch_size]
      out = super_resolve_batch(np.stack([items[i] for i in chunk]), est, rest, spectrum_mode=spectrum_mode,
                                tile=tile, overlap=overlap, noise_sigma=noise_sigma, grid=grid)
      for j, i in enumerate(chunk):
        sr[i], kernels[i] = out['sr'][j], out['kernel'][j]
  if as_list:
    return sr, kernels
  return np.stack(sr), np.stack(kernels)
