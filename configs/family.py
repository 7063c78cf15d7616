r"""Kernel-family classifier for `s2k-sr --family auto` (not in the paper; docs/conventions.md, "Family
recognition"): tells Gaussian, motion and disk blur apart from the LR amplitude spectrum, so that the
estimator of that family runs.

  python train.py --config configs/family.py --workdir runs/family          # GPU/TPU
  python train.py --config configs/family.py:photo --workdir runs/family    # 2 CPU cores, ~25 min (the shipped
                                                                            # --grid direct one; for photos:
                                                                            # configs/release.py:family_x4_resized_classifier)
  python train.py --config configs/family.py:smoke --workdir /tmp/smoke     # tests
  # other scales: --config.degradation.scale=2 (the LR crops stay 96²)
"""
from configs import common


def get_config(arg=None):
  return common.apply_preset(common.get_family_config(), arg)
