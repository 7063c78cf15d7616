r"""USRNet restorer (deep unfolding; s2k_jax/models/usrnet.py): one model for ×2, ×3 and ×4 and noise
σ ∈ [0, 5%], trained on true kernels of one family or of all three ('mixed', the default).

The argument is FAMILY with an optional preset after a comma:

  python train.py --config configs/usrnet.py --workdir runs/usrnet_mixed            # paper-size USRNet
  python train.py --config configs/usrnet.py:mixed,cpu --workdir runs/usrnet_cpu   # 2 CPU cores
  python train.py --config configs/usrnet.py:gaussian,smoke --workdir /tmp/smoke
"""
from configs import common


def get_config(arg='mixed'):
  family, _, preset = (arg or 'mixed').partition(',')
  if family not in common.FAMILY_FIELDS:
    raise ValueError(f'configs/usrnet.py takes FAMILY[,PRESET] with FAMILY one of '
                     f'{", ".join(sorted(common.FAMILY_FIELDS))} (e.g. mixed,cpu); got {arg!r}.')
  return common.apply_preset(common.get_usrnet_config(family), preset)
