r"""How far apart disk and Gaussian blur are in the LR image (docs/results.md §5, "Recognition").

For each disk radius r (MATLAB `fspecial('disk', r)`, the disk family's kernels), the isotropic
Gaussian σ whose LR image comes closest to the disk's on each held-out bundled photo (least squares,
HR ⊗ k then the downsampler of --downsample at ×--scale, before noise and rounding), and the PSNR
between the two LR images (dB, 8-bit peak). One grey level of RMS difference is 48.1 dB: above it the
two blurs leave LR images closer than the rounding to 8 bits, let alone JPEG or noise, so no classifier
can tell them apart and any estimator's choice between them is its training prior.

  python scripts/family_separability.py [--scale 4] [--downsample direct]
"""
import argparse
import os
import sys

import jax.numpy as jnp
import numpy as np
from scipy import optimize

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from s2k_jax import data  # pylint: disable=g-import-not-at-top
from s2k_jax import degradation
from s2k_jax import images
from s2k_jax import kernels

SIZE = 15            # the disk family's canvas
ONE_LEVEL_DB = 20 * np.log10(255.0)  # PSNR of an RMS difference of one grey level: 48.1 dB


def lr_image(hr: jnp.ndarray, kernel: jnp.ndarray, scale: int, downsample: str) -> np.ndarray:
  return np.asarray(degradation.blur_then_downsample(hr, kernel[None], scale, downsample))[0]


def closest_gaussian(hr: jnp.ndarray, disk_lr: np.ndarray, scale: int, downsample: str) -> tuple[float, float]:
  """(σ, PSNR in dB) of the isotropic Gaussian whose LR image is closest to `disk_lr`."""
  def mse(sigma):
    gauss = kernels.gaussian_kernel(SIZE, jnp.float32(sigma), jnp.float32(sigma), jnp.float32(0.0))
    return float(np.mean((lr_image(hr, gauss, scale, downsample) - disk_lr) ** 2))
  fit = optimize.minimize_scalar(mse, bounds=(0.2, 4.0), method='bounded', options={'xatol': 1e-3})
  return float(fit.x), float(10 * np.log10(1.0 / max(fit.fun, 1e-20)))


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0], epilog=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument('--scale', type=int, default=4, choices=degradation.SCALES)
  parser.add_argument('--downsample', default='direct', choices=('direct', 'bicubic', 'area'))
  parser.add_argument('--radii', type=float, nargs='+', default=[1.0, 1.5, 2.0, 2.5, 3.0])
  args = parser.parse_args(argv)
  photos = data.bundled_files('eval')
  hrs = [jnp.asarray(images.to_float(images.read_image(p)))[None] for p in photos]
  print(f'×{args.scale} {args.downsample}, held-out photos: {", ".join(os.path.basename(p) for p in photos)}')
  print('| disk r | closest Gaussian σ | LR PSNR disk vs that Gaussian (dB) | below one grey level |')
  print('|---|---|---|---|')
  for r in args.radii:
    disk = kernels.disk_kernel(r, SIZE)
    fits = [closest_gaussian(hr, lr_image(hr, disk, args.scale, args.downsample), args.scale, args.downsample)
            for hr in hrs]
    sigmas, psnrs = zip(*fits)
    close = sum(p > ONE_LEVEL_DB for p in psnrs)
    print(f'| {r:g} | {" / ".join(f"{s:.2f}" for s in sigmas)} | {" / ".join(f"{p:.1f}" for p in psnrs)} '
          f'| {close} of {len(psnrs)} |')
  return 0


if __name__ == '__main__':
  sys.exit(main())
