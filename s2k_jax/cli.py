r"""`s2k-sr`: blind super-resolution of image files in one command (paper §3.4, the S2K pipeline).

  s2k-sr photo.png more.jpg --out results/           # the shipped Gaussian ×4 models
  s2k-sr photo.png --out results/ --estimator runs/gaussian --restorer runs/sftmd_gaussian_x4

Writes <stem>_x4.png (<stem>_x4.tif, 16-bit, for a 16-bit input), <stem>_kernel.png, <stem>_kernel.npy
and <stem>_spectrum.png per image and one summary line each. Exit status: 0 all done, 1 some image
failed (the others are still written), 2 bad arguments or checkpoints (nothing processed). The file
front end (`super_resolve_files`: read, run `pipeline.super_resolve_batch`, write, report) is here; the
array API is `s2k_jax/pipeline.py`.

argparse rather than absl flags: the images are positional arguments of a console script (the one
user-facing command; the absl tools are described in docs/architecture.md, "Command lines").
"""
import argparse
from collections.abc import Sequence
import dataclasses
import os
import sys
import time
from typing import Any

import numpy as np
import tqdm

from s2k_jax import degradation
from s2k_jax import estimator as estimator_lib
from s2k_jax import family as family_lib
from s2k_jax import images
from s2k_jax import kernels
from s2k_jax import metrics
from s2k_jax import modelio
from s2k_jax import noise
from s2k_jax import pipeline
from s2k_jax import runtime
from s2k_jax import tasks
from s2k_jax import visualize

EXIT_IMAGE_FAILED = 1
EXIT_USAGE = 2


# ---------------------------------------------------------------------------------------------------
# The file front end.


def kernel_sigmas(kernel: np.ndarray) -> tuple[float, float]:
  """Spread of a kernel: the square roots of its second-moment (covariance) eigenvalues, major first."""
  cov = np.asarray(metrics.kernel_covariance(kernel), np.float64)
  minor, major = np.sqrt(np.maximum(np.linalg.eigvalsh(cov), 0.0))
  return float(major), float(minor)


@dataclasses.dataclass(frozen=True)
class ImageResult:
  """What happened to one input file: outputs and summary numbers, or the error."""
  path: str
  error: str | None = None
  lr_size: tuple[int, int] | None = None      # (height, width)
  sr_size: tuple[int, int] | None = None
  kernel_size: int | None = None
  kernel_sigmas: tuple[float, float] | None = None  # HR pixels, major and minor
  seconds: float | None = None
  outputs: dict[str, str] = dataclasses.field(default_factory=dict)
  models: str | None = None                   # e.g. 'gaussian kernels, ×4, SFTMD'
  noise: str | None = None                    # e.g. 'noise σ 1.2% (estimated)'
  transparency: bool = False                  # the input's alpha was upscaled into the SR image

  def summary(self) -> str:
    name = os.path.basename(self.path)
    if self.error:  # Image errors name the file already; others (e.g. a failed write) get it added.
      return f'FAILED {self.error}' if self.path in self.error else f'FAILED {self.path}: {self.error}'
    (h, w), (sh, sw), (major, minor) = self.lr_size, self.sr_size, self.kernel_sigmas
    others = ', '.join(os.path.basename(p) for k, p in self.outputs.items() if k != 'sr')
    noise = f', {self.noise}' if self.noise else ''
    alpha = ', transparency kept (alpha upscaled by bicubic)' if self.transparency else ''
    return (f'{name}: LR {h}×{w} → SR {sh}×{sw} ({self.models}), kernel {self.kernel_size}×'
            f'{self.kernel_size} σ {major:.2f}/{minor:.2f} HR px{noise}{alpha}, {self.seconds:.1f} s → '
            f'{self.outputs["sr"]} (+ {others})')


def output_paths(path: str, out_dir: str, scale: int, sixteen_bit: bool = False) -> dict[str, str]:
  """Where an input's results go; the SR image of a 16-bit input is a 16-bit TIFF, else an 8-bit PNG."""
  stem = os.path.splitext(os.path.basename(path))[0]
  return dict(sr=os.path.join(out_dir, f'{stem}_x{scale}.{"tif" if sixteen_bit else "png"}'),
              kernel_png=os.path.join(out_dir, f'{stem}_kernel.png'),
              kernel_npy=os.path.join(out_dir, f'{stem}_kernel.npy'),
              spectrum_png=os.path.join(out_dir, f'{stem}_spectrum.png'))


def _check_unique_stems(paths: Sequence[str]) -> None:
  seen = {}
  for p in paths:
    stem = os.path.splitext(os.path.basename(p))[0]
    if stem in seen:
      raise ValueError(f'{seen[stem]} and {p} would write the same outputs ({stem}_*); rename one or run '
                       'them with different output folders.')
    seen[stem] = p


def _load(kind: str, model: Any, loader):
  if not isinstance(model, (str, os.PathLike)):
    return model
  try:
    return loader(os.fspath(model))
  except (ValueError, FileNotFoundError) as e:
    raise type(e)(f'{kind}: {e}') from e


# Noise above an estimator's trained noise_max by more than this: its kernel may be worse than the
# family-mean kernel (where the clean-trained Gaussian ×4 estimator falls behind it: docs/results.md §5).
ESTIMATOR_NOISE_MARGIN = 0.02


def estimator_noise_warning(sigma: float, est) -> str | None:
  """A warning when the photo's noise σ is well above what the estimator was trained on, else None."""
  trained = float(est.config.degradation.noise_max)
  if sigma <= trained + ESTIMATOR_NOISE_MARGIN:
    return None
  return (f'noise σ {100 * sigma:.1f}% is far above the σ ≤ {100 * trained:.1f}% the estimator was trained '
          'on: its kernel may be less accurate than the family mean kernel (docs/results.md §5); an '
          'estimator trained with --config.degradation.noise_max fits such photos')


def restorer_noise_warning(sigma: float, rest) -> str | None:
  """A warning when a given noise σ is above the restorer's trained range, else None. Estimated ones are
  clipped to it (`noise_level`); a restorer without a noise input never gets σ > 0
  (`pipeline.check_noise_sigma`)."""
  trained = float(rest.config.degradation.noise_max)
  if not rest.takes_noise or sigma <= trained:
    return None
  return (f'the given noise σ {100 * sigma:.1f}% is above the σ ≤ {100 * trained:.1f}% the restorer '
          f'({rest.name}) was trained on: it never saw such noise, so expect leftover noise or smeared '
          f'detail; give --noise-sigma {trained:g} or less, or a restorer trained with a larger '
          '--config.degradation.noise_max')


def kernel_kinds(family: str) -> str:
  """What an estimator's kernels can be, for the per-image line: 'motion kernels', 'any kernel family'."""
  return 'any kernel family' if family == kernels.MIXED else f'{family} kernels'


def upscale_opacity(opacity: np.ndarray, scale: int, grid: str) -> np.ndarray:
  """(h, w) opacity in [0, 1] → (h·s, w·s) on the SR image's pixel grid: bicubic (the kernel-free
  baseline's resize, `degradation.bicubic_upsample`), since transparency carries no camera blur."""
  up = degradation.bicubic_upsample(np.asarray(opacity, np.float32)[None, :, :, None], scale, grid)
  return np.asarray(up)[0, :, :, 0]


def _process_file(path: str, out_dir: str, est, rest, noise_sigma: float | None = None,
                  grid: str = 'centre', classifier: family_lib.Classifier | None = None,
                  **kwargs) -> ImageResult:
  """`est`: one estimator, or {family: estimator} with the `classifier` that picks one per image."""
  start = time.perf_counter()
  pixels, opacity = images.decode_with_opacity(images.read_file(path), path)
  sixteen_bit = pixels.dtype == np.uint16
  lr = images.to_float(pixels)
  # With a classifier, every estimator it may pick (its own spectra need no more pixels: MIN_LR_SIDE).
  for candidate in est.values() if classifier is not None else [est]:
    pipeline.check_image_size(lr.shape, candidate, path)
  kinds = None
  if classifier is not None:
    family, probabilities = family_lib.classify(classifier, lr)
    est, kinds = est[family], f'{family} kernels (recognised: {family_lib.describe(probabilities)})'
  estimate = noise.estimate_sigma(lr) if noise_sigma is None else noise_sigma
  sigma, noise_text = pipeline.noise_level(lr, rest, noise_sigma, estimate)
  for warning in (estimator_noise_warning(estimate, est), restorer_noise_warning(sigma, rest)):
    if warning:
      noise_text += f' [warning: {warning}]'
  out = pipeline.super_resolve_batch(lr[None], est, rest, noise_sigma=sigma, grid=grid, **kwargs)
  scale = int(est.config.degradation.scale)
  outputs = output_paths(path, out_dir, scale, sixteen_bit)
  sr = out['sr'][0]
  if opacity is not None:  # RGBA out: the SR colours and the input's transparency, upscaled.
    sr = np.concatenate([sr, upscale_opacity(opacity, scale, grid)[..., None]], axis=-1)
  if sixteen_bit:  # As precise as what came in.
    visualize.save_tiff16(outputs['sr'], sr)
  else:
    visualize.save_png(outputs['sr'], visualize.to_uint8(sr))
  visualize.save_png(outputs['kernel_png'], visualize.kernel_figure(out['kernel'][0]))
  np.save(outputs['kernel_npy'], out['kernel'][0].astype(np.float32))
  visualize.save_png(outputs['spectrum_png'], visualize.spectrum_figure(out['inputs'][0]))
  return ImageResult(path=path, lr_size=lr.shape[:2], sr_size=out['sr'].shape[1:3],
                     kernel_size=out['kernel'].shape[-1], kernel_sigmas=kernel_sigmas(out['kernel'][0]),
                     seconds=time.perf_counter() - start, outputs=outputs,
                     models=f'{kinds or kernel_kinds(est.config.degradation.family)}, ×{scale}, {rest.name}',
                     noise=noise_text, transparency=opacity is not None)


def super_resolve_files(paths: Sequence[str | os.PathLike], out_dir: str | os.PathLike,
                        estimator_dir: Any, restorer_dir: Any, scale: int | None = None, *,
                        spectrum_mode: str | None = None, tile: int | None = None,
                        overlap: int | None = None, noise_sigma: float | None = None,
                        grid: str = 'centre', progress: bool = True,
                        classifier: Any = None) -> list[ImageResult]:
  """Super-resolves image files one by one and writes, per `<stem>` of each input, to `out_dir`:

  `<stem>_x<s>.png` (8-bit RGB SR image; RGBA for an input with transparency, its alpha upscaled by
  bicubic; `<stem>_x<s>.tif`, 16-bit, for a 16-bit input), `<stem>_kernel.png` (the kernel scaled by its
  maximum, nearest-neighbour enlarged), `<stem>_kernel.npy` (float32 (k, k), sums to 1, HR pixels) and
  `<stem>_spectrum.png` (the estimator's input).

  Problems with the models, the scale or the arguments raise before any image is read (ValueError or
  FileNotFoundError naming the directory). A bad image (unreadable, unsupported, too small) does not
  stop the others: its ImageResult carries the error. With `progress`, prints one summary line per
  image and a progress bar for several images.

  Args:
    paths: image files (any format `images.decode_with_opacity` reads: gray is replicated to RGB, 16-bit
      read and written at full precision; transparency (alpha, palette or colour key) is kept as the
      output's alpha).
    out_dir: created if missing; existing outputs are overwritten.
    estimator_dir, restorer_dir: training workdirs (or their checkpoints/), or loaded models;
      estimator_dir may also map each of kernels.FAMILIES to one, with a `classifier` (workdir, bundle
      or loaded `family.Classifier`) that recognises each image's family (`--family auto`).
    scale: the SR factor wanted; None = the restorer's. Must equal the restorer's scale.
    spectrum_mode, tile, overlap: see `pipeline.super_resolve`.
    noise_sigma: LR noise σ on [0, 1] for every image; None = estimated per image (`noise_level`).
    grid: where the LR pixels sit (`pipeline.super_resolve`): 'centre' for photos and resized images,
      'direct' for LR = HR[::s, ::s] after the blur (the papers' synthetic LR).
    progress: print summaries and a tqdm bar.

  Returns:
    One ImageResult per path, in order.
  """
  paths = [os.fspath(p) for p in paths]
  out_dir = os.fspath(out_dir)
  pipeline.check_options(spectrum_mode, tile, overlap)
  degradation.check_grid(grid)
  _check_unique_stems(paths)
  if isinstance(estimator_dir, dict):
    est, classifier = _recognition(estimator_dir, classifier)
  elif classifier is not None:
    raise ValueError('a family classifier has no effect with one estimator: it picks one estimator per '
                     'image among one per family (--family auto); leave --classifier out, or the estimator.')
  else:
    est = pipeline.on_one_device(_load('estimator', estimator_dir, estimator_lib.load))
  rest = _load('restorer', restorer_dir, tasks.load_restorer)
  for candidate in est.values() if isinstance(est, dict) else [est]:
    pipeline.check_compatible(candidate, rest, scale)
  if noise_sigma is not None:
    pipeline.check_noise_sigma(rest, noise_sigma)
  rest = pipeline.on_one_device(rest)
  os.makedirs(out_dir, exist_ok=True)
  results = []
  bar = tqdm.tqdm(paths, desc='s2k-sr', unit='img', disable=not progress or len(paths) < 2)
  for path in bar:
    try:
      result = _process_file(path, out_dir, est, rest, spectrum_mode=spectrum_mode, tile=tile,
                             overlap=overlap, noise_sigma=noise_sigma, grid=grid, classifier=classifier)
    except (ValueError, OSError) as e:  # images.ImageError and ImageTooSmallError are ValueErrors.
      result = ImageResult(path=path, error=str(e))
    results.append(result)
    if progress or result.error:  # Errors are printed even when quiet.
      tqdm.tqdm.write(result.summary(), file=sys.stderr if result.error else sys.stdout)
  return results


def _recognition(estimators: dict, classifier: Any):
  """{family: estimator source} and a classifier source → ({family: loaded estimator}, classifier),
  checked: one estimator per family, each of its family and of the classifier's scale."""
  if set(estimators) != set(kernels.FAMILIES):
    raise ValueError(f'one estimator per kernel family is needed to pick one per image ({", ".join(kernels.FAMILIES)}), '
                     f'got {", ".join(sorted(estimators))}.')
  if classifier is None:
    raise ValueError('estimators per family need a family classifier to pick one per image.')
  clf = _load('classifier', classifier, family_lib.load)
  loaded = {}
  for family, source in estimators.items():
    est = _load(f'{family} estimator', source, estimator_lib.load)
    if est.config.degradation.family != family or est.config.degradation.scale != clf.scale:
      raise ValueError(f'the {family} estimator in {est.directory} reads {est.config.degradation.family} '
                       f'kernels at ×{est.config.degradation.scale}; the classifier in {clf.directory} picks '
                       f'among {family} estimators of ×{clf.scale} (give --scale {clf.scale} for it).')
    loaded[family] = pipeline.on_one_device(est)
  return loaded, pipeline.on_one_device(clf)


# ---------------------------------------------------------------------------------------------------
# Command line.


def _non_negative_int(text: str) -> int:
  value = int(text)
  if value < 0:
    raise argparse.ArgumentTypeError(f'must be >= 0, got {value}')
  return value


def build_parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(
      prog='s2k-sr',
      description='Blind super-resolution (S2K kernel estimation + a kernel-aware restorer, USRNet or '
                  'SFTMD) of image files. Writes '
                  '<stem>_x<s>.png (8-bit RGB; RGBA if the image has transparency; a 16-bit TIFF, '
                  '<stem>_x<s>.tif, for a 16-bit image), <stem>_kernel.png / '
                  '.npy (the estimated blur kernel at HR resolution) and <stem>_spectrum.png (the '
                  'estimator\'s input) for each image.',
      epilog='Exit status: 0 success; 1 some images failed (the others are written); 2 bad arguments or '
             'checkpoints. Without --estimator/--restorer the models shipped in the package are used '
             '(small models trained on a few sample photos: see s2k_jax/weights/README.md); train your '
             'own with train.py and configs/ (configs/gaussian.py, configs/usrnet.py), which come with the '
             'source repository, not with the installed package.')
  parser.add_argument('images', nargs='+', metavar='IMAGE',
                      help='image files (PNG, JPEG, TIFF, BMP, WebP; gray becomes RGB, 16-bit stays 16-bit '
                           '(TIFF out), transparency is kept: its alpha upscaled by bicubic).')
  parser.add_argument('--out', required=True, help='output folder (created if missing).')
  parser.add_argument('--estimator', default=None, metavar='MODEL',
                      help='a trained S2K estimator: training workdir (train.py --config configs/<family>.py) '
                           'or model bundle (.npz, python -m s2k_jax.export). Default: the shipped '
                           'estimator of --family.')
  parser.add_argument('--restorer', default=None, metavar='MODEL',
                      help='usrnet or sftmd (the shipped models of that name), or a trained restorer: '
                           'training workdir (train.py --config configs/usrnet.py, or configs/sftmd.py:'
                           f'<family>_x<s>) or model bundle. Default: {modelio.DEFAULT_RESTORER}, the shipped '
                           'restorer that measures best.')
  parser.add_argument('--family', choices=modelio.estimator_families() + [modelio.AUTO_FAMILY],
                      default='gaussian',
                      help='kernel family of the shipped models used when --estimator/--restorer are not '
                           'given (default: gaussian); auto: recognised per image by a family classifier '
                           '(printed on the image\'s line), whose shipped estimator then runs.')
  parser.add_argument('--classifier', default=None, metavar='MODEL',
                      help='with --family auto: a trained family classifier (train.py --config '
                           'configs/family.py: workdir or model bundle). Default: the shipped one of the scale and --grid.')
  parser.add_argument('--scale', type=int, default=None,
                      help='SR factor, 2, 3 or 4: one the estimator reads and the restorer serves (default: '
                           f'the estimator\'s; {modelio.ESTIMATOR_SCALE} for the shipped estimators).')
  parser.add_argument('--spectrum-mode', choices=('crop', 'welch'), default=None,
                      help='crop: centred S×S crop; welch: average over the whole image (default: the mode '
                           'the estimator was trained with: welch for the shipped Gaussian and motion '
                           'estimators, crop for disk).')
  parser.add_argument('--tile', type=_non_negative_int, default=None,
                      help=f'LR tile side for the restorer (0 = never tile; default: {pipeline.AUTO_TILE} '
                           f'for images over {pipeline.AUTO_TILE}² LR pixels).')
  parser.add_argument('--overlap', type=_non_negative_int, default=None,
                      help='LR pixels dropped at inner tile edges (default: the restorer\'s receptive field, '
                           'at most tile/4, which makes tiles seamless).')
  parser.add_argument('--noise-sigma', type=float, default=None,
                      help=f'LR noise σ (0.01 = 1%%), at most {noise.SIGMA_MAX}; the restorer is trained only '
                           'up to its config\'s degradation.noise_max (the shipped ones: '
                           's2k_jax/weights/README.md), a larger σ gets a warning, and one trained without '
                           'noise takes only 0 (default: estimated from each photo, clipped to that range, '
                           'and printed).')
  parser.add_argument('--grid', choices=degradation.LR_GRIDS, default='centre',
                      help='where the LR pixels sit on the output grid: centre (default: camera photos and images '
                      'shrunk by any resizer; each LR pixel at the centre of its s×s block) or direct (LR = '
                      'HR[::s, ::s] after the blur, the synthetic LR of the S2K/USRNet papers). Without '
                      '--estimator it also picks the shipped estimator where one per grid ships (Gaussian ×2 and ×4, '
                      'motion ×4) and the family classifier of --family auto.')
  parser.add_argument('--quiet', action='store_true', help='print only errors (no progress bar, per-image lines or totals).')
  return parser


def shipped_estimators(args: argparse.Namespace) -> tuple[Any, str | None]:
  """(--estimator or the shipped one of --family; None) or, for --family auto, ({family: the shipped
  estimator}, the classifier)."""
  scale = args.scale or modelio.ESTIMATOR_SCALE
  if args.family != modelio.AUTO_FAMILY:
    if args.classifier:
      raise ValueError(f'--classifier has no effect with --family {args.family}: it recognises the family '
                       f'(--family {modelio.AUTO_FAMILY}); leave it out, or add --family {modelio.AUTO_FAMILY}.')
    return args.estimator or modelio.pretrained_estimator(args.family, scale, args.grid), None
  if args.estimator:
    raise ValueError(f'--family {modelio.AUTO_FAMILY} runs the shipped estimator of the family it recognises; '
                     'with your own --estimator, name its family (--family) instead.')
  return ({family: modelio.pretrained_estimator(family, scale, args.grid) for family in kernels.FAMILIES},
          args.classifier or modelio.pretrained_classifier(scale, args.grid))


def shipped_restorer(family: str, scale: int, name: str) -> str:
  """The shipped restorer `name` for `family`; for --family auto the one that serves every family."""
  if family != modelio.AUTO_FAMILY:
    return modelio.pretrained_restorer(family, scale, name)
  files = {modelio.pretrained_restorer(f, scale, name) for f in kernels.FAMILIES}
  if len(files) != 1:
    raise ValueError(f'--family {modelio.AUTO_FAMILY} needs one restorer for every family; the shipped {name} '
                     'restorers are one per family: use --restorer usrnet, or name the family (--family).')
  return files.pop()


def main(argv: Sequence[str] | None = None) -> int:
  args = build_parser().parse_args(argv)
  runtime.quiet_library_logs()
  try:
    estimator, classifier = shipped_estimators(args)
    restorer = args.restorer or modelio.DEFAULT_RESTORER
    if restorer in modelio.PRETRAINED_RESTORERS:
      restorer = shipped_restorer(args.family, args.scale or modelio.ESTIMATOR_SCALE, restorer)
    results = super_resolve_files(
        args.images, args.out, estimator, restorer, args.scale,
        spectrum_mode=args.spectrum_mode, tile=args.tile, overlap=args.overlap,
        noise_sigma=args.noise_sigma, grid=args.grid, progress=not args.quiet, classifier=classifier)
  except (ValueError, FileNotFoundError) as e:  # Raised before any image is processed.
    print(f's2k-sr: error: {e}', file=sys.stderr)
    return EXIT_USAGE
  failed = [r for r in results if r.error]
  if not args.quiet:
    seconds = sum(r.seconds for r in results if not r.error)
    print(f's2k-sr: {len(results) - len(failed)} of {len(results)} images super-resolved in {seconds:.1f} s '
          f'→ {args.out}')
  if failed:
    print(f's2k-sr: {len(failed)} of {len(results)} images failed: '
          f'{", ".join(r.path for r in failed)}', file=sys.stderr)
    return EXIT_IMAGE_FAILED
  return 0


if __name__ == '__main__':
  sys.exit(main())
