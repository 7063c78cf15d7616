r"""S2K estimator for gaussian kernels (paper §4).

  python train.py --config configs/gaussian.py --workdir runs/gaussian          # paper scale (GPU/TPU)
  python train.py --config configs/gaussian.py:cpu --workdir runs/gaussian_cpu  # 2 CPU cores, minutes
  python train.py --config configs/gaussian.py:photo --workdir runs/gaussian_photo  # JPEG + noisy LR, Welch: as shipped
  python train.py --config configs/gaussian.py:smoke --workdir /tmp/smoke  # tests
"""
from configs import common


def get_config(arg=None):
  return common.apply_preset(common.get_estimator_config('gaussian'), arg)
