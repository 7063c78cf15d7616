r"""S2K estimator for disk kernels (paper §4).

  python train.py --config configs/disk.py --workdir runs/disk          # paper scale (GPU/TPU)
  python train.py --config configs/disk.py:cpu --workdir runs/disk_cpu  # 2 CPU cores, minutes
  python train.py --config configs/disk.py:photo --workdir runs/disk_photo  # JPEG + noisy LR, Welch: as shipped
  python train.py --config configs/disk.py:smoke --workdir /tmp/smoke  # tests
"""
from configs import common


def get_config(arg=None):
  return common.apply_preset(common.get_estimator_config('disk'), arg)
