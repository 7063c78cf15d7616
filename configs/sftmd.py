r"""SFTMD restorer (IKC) trained on true kernel codes, one per kernel family and scale (paper §3.4).

The argument is FAMILY_xSCALE with an optional preset after a comma:

  python train.py --config configs/sftmd.py:gaussian_x4 --workdir runs/sftmd_gaussian_x4
  python train.py --config configs/sftmd.py:gaussian_x4,cpu --workdir runs/sftmd_gaussian_x4_cpu
  python train.py --config configs/sftmd.py:motion_x2,smoke --workdir /tmp/smoke
"""
from configs import common


def get_config(arg='gaussian_x4'):
  name, _, preset = (arg or 'gaussian_x4').partition(',')
  family, _, scale = name.partition('_x')
  if family not in ('gaussian', 'motion', 'disk') or scale not in ('2', '3', '4'):
    raise ValueError(f'configs/sftmd.py takes FAMILY_xSCALE[,PRESET] with FAMILY gaussian, motion or disk '
                     f'and SCALE 2, 3 or 4 (e.g. gaussian_x4,cpu); got {arg!r}.')
  return common.apply_preset(common.get_restorer_config(family, int(scale)), preset)
