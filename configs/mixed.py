r"""S2K estimator for any blur: kernels of the three families mixed (Gaussian, motion, disk, equally).

One model that needs no family from the user. Not shipped: at the `:photo` size it trails the per-family
estimators for Gaussian and disk kernels (docs/results.md §5); pass one with `s2k-sr --estimator`. Kernels
live on the motion canvas (23×23; a Gaussian or disk of the family ranges is the same kernel zero-padded), and
the L1 loss ignores 180° rotations as for motion (kernels.flip_invariant).

  python train.py --config configs/mixed.py --workdir runs/mixed          # paper scale (GPU/TPU)
  python train.py --config configs/mixed.py:cpu --workdir runs/mixed_cpu  # 2 CPU cores, minutes
  python train.py --config configs/mixed.py:photo --workdir runs/mixed_photo  # JPEG + noisy LR, Welch: as shipped
  python train.py --config configs/mixed.py:smoke --workdir /tmp/smoke    # tests
"""
from configs import common
from s2k_jax import kernels


def get_config(arg=None):
  return common.apply_preset(common.get_estimator_config(kernels.MIXED), arg)
