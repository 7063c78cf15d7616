r"""`s2k-sr`: blind super-resolution of your own photos in one command (paper §3.4, the S2K pipeline).

  s2k-sr photo.png more.jpg --out results/           # the shipped Gaussian ×4 models
  s2k-sr photo.png --out results/ --estimator runs/gaussian --restorer runs/sftmd_gaussian_x4

Writes <stem>_x4.png, <stem>_kernel.png, <stem>_kernel.npy and <stem>_spectrum.png per image and one
summary line each. Exit status: 0 all done, 1 some image failed (the others are still written), 2 bad
arguments or checkpoints (nothing processed). The logic lives in `pipeline.super_resolve_files`.

argparse rather than absl flags: the images are positional arguments of a console script.
"""
import argparse
from collections.abc import Sequence
import sys

from s2k_jax import export
from s2k_jax import loop
from s2k_jax import pipeline

EXIT_IMAGE_FAILED = 1
EXIT_USAGE = 2


def _non_negative_int(text: str) -> int:
  value = int(text)
  if value < 0:
    raise argparse.ArgumentTypeError(f'must be >= 0, got {value}')
  return value


def build_parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(
      prog='s2k-sr',
      description='Blind super-resolution (S2K kernel estimation + SFTMD) of image files. Writes '
                  '<stem>_x<s>.png (8-bit RGB), <stem>_kernel.png / .npy (the estimated blur kernel at HR '
                  'resolution) and <stem>_spectrum.png (the estimator\'s input) for each image.',
      epilog='Exit status: 0 success; 1 some images failed (the others are written); 2 bad arguments or '
             'checkpoints. Without --estimator/--restorer the models shipped in the package are used '
             '(small models trained on a few sample photos: see s2k_jax/weights/README.md); train your '
             'own with train.py (configs/gaussian.py, configs/sftmd.py).')
  parser.add_argument('images', nargs='+', metavar='IMAGE',
                      help='image files (PNG, JPEG, TIFF, BMP, WebP; gray, RGBA and 16-bit are converted).')
  parser.add_argument('--out', required=True, help='output folder (created if missing).')
  parser.add_argument('--estimator', default=None, metavar='MODEL',
                      help='a trained S2K estimator: training workdir (train.py --config configs/<family>.py) '
                           'or model bundle (.npz, python -m s2k_jax.export). Default: the shipped '
                           'estimator of --family.')
  parser.add_argument('--restorer', default=None, metavar='MODEL',
                      help='a trained SFTMD restorer of the same family and scale: training workdir '
                           '(train.py --config configs/sftmd.py:<family>_x<s>) or model bundle. Default: the '
                           'shipped restorer of --family and --scale.')
  parser.add_argument('--family', choices=sorted(export.PRETRAINED_ESTIMATORS), default='gaussian',
                      help='kernel family of the shipped models used when --estimator/--restorer are not '
                           'given (default: gaussian).')
  parser.add_argument('--scale', type=int, default=None,
                      help='SR factor; must be the restorer\'s (default: the restorer\'s; 4 for the shipped '
                           'models).')
  parser.add_argument('--spectrum-mode', choices=('crop', 'welch'), default=None,
                      help='crop: centred S×S crop; welch: average over the whole image (default: the mode '
                           'the estimator was trained with, crop for every shipped and config-built model).')
  parser.add_argument('--tile', type=_non_negative_int, default=None,
                      help=f'LR tile side for the restorer (0 = never tile; default: {pipeline.AUTO_TILE} '
                           f'for images over {pipeline.AUTO_TILE}² LR pixels).')
  parser.add_argument('--overlap', type=_non_negative_int, default=None,
                      help='LR pixels dropped at inner tile edges (default: the restorer\'s receptive field, '
                           'at most tile/4, which makes tiles seamless).')
  parser.add_argument('--noise-sigma', type=float, default=0.0,
                      help='LR noise σ on [0, 1], only for restorers trained with noise (default 0).')
  parser.add_argument('--quiet', action='store_true', help='no progress bar or summary lines.')
  return parser


def main(argv: Sequence[str] | None = None) -> int:
  args = build_parser().parse_args(argv)
  loop.quiet_library_logs()
  try:
    estimator = args.estimator or export.pretrained_estimator(args.family)
    restorer = args.restorer or export.pretrained_restorer(args.family, args.scale or 4)
    results = pipeline.super_resolve_files(
        args.images, args.out, estimator, restorer, args.scale,
        spectrum_mode=args.spectrum_mode, tile=args.tile, overlap=args.overlap,
        noise_sigma=args.noise_sigma, progress=not args.quiet)
  except (ValueError, FileNotFoundError) as e:  # Raised before any image is processed.
    print(f's2k-sr: error: {e}', file=sys.stderr)
    return EXIT_USAGE
  failed = [r for r in results if r.error]
  if failed:
    print(f's2k-sr: {len(failed)} of {len(results)} images failed: '
          f'{", ".join(r.path for r in failed)}', file=sys.stderr)
    return EXIT_IMAGE_FAILED
  return 0


if __name__ == '__main__':
  sys.exit(main())
