r"""S2K estimator for motion kernels (paper §4).

  python train.py --config configs/motion.py --workdir runs/motion          # paper scale (GPU/TPU)
  python train.py --config configs/motion.py:cpu --workdir runs/motion_cpu  # 2 CPU cores, minutes
  python train.py --config configs/motion.py:photo --workdir runs/motion_photo  # JPEG + noisy LR, Welch: as shipped
  python train.py --config configs/motion.py:smoke --workdir /tmp/smoke  # tests
"""
from configs import common


def get_config(arg=None):
  return common.apply_preset(common.get_estimator_config('motion'), arg)
