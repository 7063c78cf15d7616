"""The models that ship in `s2k_jax/weights/`: one entry each, the one place that says what a file is,
where `s2k-sr` uses it by default, and which named configs reproduce it.

Each model is reproduced by `python scripts/reproduce_shipped.py NAME` from the stages of its recipe:
`python train.py --config configs/release.py:STAGE`, each stage fine-tuned from the export of the one
before (`train.init_from`), the last one exported (at `export_step`, with `--raw_weights` where set) to the
shipped file. `modelio` answers its lookups (`pretrained_estimator`, `pretrained_restorer`) from here;
`s2k_jax/weights/README.md` says what each was trained on and how long it took (tests check that every
file, entry, recipe and README row agree, and that each recipe's config is the one saved in the bundle).
"""
import dataclasses

from s2k_jax import degradation
from s2k_jax import kernels

ESTIMATOR = 'estimator'
CLASSIFIER = 'family'  # the kernel-family classifier (s2k_jax/family.py) of `s2k-sr --family auto`
RESTORERS = ('usrnet', 'sftmd')  # the restorer networks, as `s2k-sr --restorer` names them
ESTIMATOR_SCALE = 4  # the scale s2k-sr uses when --scale is not given


@dataclasses.dataclass(frozen=True)
class Shipped:
  """One shipped model bundle."""
  file: str                   # in s2k_jax/weights/
  kind: str                   # ESTIMATOR, CLASSIFIER or one of RESTORERS
  family: str                 # its kernel family (kernels.MIXED: every family)
  scales: tuple[int, ...]     # the scales it reads (an estimator: one)
  recipe: tuple[str, ...]     # configs/release.py stages in order; each one after the first starts from
                              # the export of the one before
  default_on: tuple[str, ...] = ()  # the LR grids (degradation.LR_GRIDS) on which s2k-sr uses it by
                                    # default (a restorer: both, or none)
  export_step: int | None = None    # the checkpoint step exported (None: the last)
  raw_weights: bool = False         # exported with --raw_weights (a run that also kept a moving average)
  summary: str = ''

  @property
  def name(self) -> str:
    return self.file.removesuffix('.npz')


_GRIDS = degradation.LR_GRIDS
SHIPPED = (
    # Estimators: one per family and scale, trained on real-photo LR (noise, 8-bit, JPEG, Welch spectra)
    # of directly decimated images, except where noted.
    Shipped('gaussian_x4_estimator.npz', ESTIMATOR, 'gaussian', (4,), ('gaussian_x4_estimator',),
            ('direct',), summary='Gaussian ×4 for directly decimated LR (--grid direct)'),
    Shipped('gaussian_x4_resized_estimator.npz', ESTIMATOR, 'gaussian', (4,),
            ('gaussian_x4_resized_estimator',), ('centre',),
            summary='the default Gaussian ×4 for photos: trained on the photo corpus shrunk by random '
                    'resizers, σ log-uniform down to 0.2; its kernels are blurs before a bicubic resize'),
    Shipped('gaussian_x3_estimator.npz', ESTIMATOR, 'gaussian', (3,), ('gaussian_x3_estimator',), _GRIDS,
            raw_weights=True, summary='the default Gaussian ×3'),
    Shipped('gaussian_x2_estimator.npz', ESTIMATOR, 'gaussian', (2,), ('gaussian_x2_estimator',),
            ('direct',), summary='Gaussian ×2 for directly decimated LR (--grid direct)'),
    Shipped('gaussian_x2_resized_estimator.npz', ESTIMATOR, 'gaussian', (2,),
            ('gaussian_x2_resized_estimator',), ('centre',),
            summary='the default Gaussian ×2 for photos: trained on the photo corpus shrunk by random '
                    'resizers; its kernels are blurs before a bicubic resize'),
    Shipped('motion_x4_estimator.npz', ESTIMATOR, 'motion', (4,), ('motion_x4_estimator',), ('direct',),
            summary='motion ×4 for directly decimated LR (--grid direct)'),
    Shipped('motion_x4_resized_estimator.npz', ESTIMATOR, 'motion', (4,), ('motion_x4_resized_estimator',),
            ('centre',), summary='the default motion ×4 for photos: LR shrunk by random resizers; its kernels '
                                 'are blurs before a bicubic resize'),
    Shipped('motion_x3_estimator.npz', ESTIMATOR, 'motion', (3,), ('motion_x3_estimator',), _GRIDS,
            summary='the default motion ×3'),
    Shipped('motion_x2_estimator.npz', ESTIMATOR, 'motion', (2,), ('motion_x2_estimator',), _GRIDS,
            summary='the default motion ×2'),
    Shipped('disk_x4_estimator.npz', ESTIMATOR, 'disk', (4,), ('disk_x4_estimator',), _GRIDS,
            summary='the default disk ×4: clean LR and centred crops, as the paper (its real-photo twin '
                    'measured worse)'),
    Shipped('disk_x3_estimator.npz', ESTIMATOR, 'disk', (3,), ('disk_x3_estimator',), _GRIDS,
            summary='the default disk ×3'),
    Shipped('disk_x2_estimator.npz', ESTIMATOR, 'disk', (2,), ('disk_x2_estimator',), _GRIDS,
            export_step=5000, summary='the default disk ×2 (step 5000 of 6000, chosen on held-out sets)'),
    Shipped('gaussian_estimator.npz', ESTIMATOR, 'gaussian', (4,), ('gaussian_estimator',),
            summary="clean LR, the paper's setting (docs/results.md §1–3); not a default"),
    # Which family's estimator reads an image (`s2k-sr --family auto`), one per LR grid.
    Shipped('family_x4_classifier.npz', CLASSIFIER, kernels.MIXED, (4,), ('family_x4_classifier',),
            ('direct',), summary='--family auto at ×4 on directly decimated LR (--grid direct): recognises '
                                 'Gaussian, motion or disk blur, whose estimator then runs'),
    Shipped('family_x4_resized_classifier.npz', CLASSIFIER, kernels.MIXED, (4,),
            ('family_x4_resized_classifier',), ('centre',),
            summary='--family auto at ×4 on photos: LR from random resizers, blurs down to σ 0.2 named '
                    'Gaussian'),
    # Restorers.
    Shipped('usrnet_mixed.npz', 'usrnet', kernels.MIXED, degradation.SCALES,
            tuple(f'usrnet_mixed.{i}' for i in range(1, 12)), _GRIDS,
            summary='the default restorer: every family, ×2/×3/×4, noise σ ≤ 5%'),
    Shipped('sftmd_gaussian_x4.npz', 'sftmd', 'gaussian', (4,), ('sftmd_gaussian_x4',),
            summary='--restorer sftmd, Gaussian ×4'),
    Shipped('sftmd_motion_x4.npz', 'sftmd', 'motion', (4,), ('sftmd_motion_x4',),
            summary='--restorer sftmd, motion ×4'),
)


# The restorer network s2k-sr uses by default: the one that measures best on held-out photos
# (docs/results.md).
DEFAULT_RESTORER, = {m.kind for m in SHIPPED if m.kind in RESTORERS and m.default_on}


def by_name(name: str) -> Shipped:
  """The shipped model named `name` (its file without .npz), or a ValueError listing them."""
  for model in SHIPPED:
    if name in (model.name, model.file):
      return model
  raise ValueError(f'no shipped model named {name!r}; shipped: {", ".join(m.name for m in SHIPPED)}.')


def estimators(grid: str) -> dict[tuple[str, int], str]:
  """(family, scale) → file of the estimator s2k-sr uses by default on LR of `grid`."""
  degradation.check_grid(grid)
  return {(m.family, m.scales[0]): m.file for m in SHIPPED if m.kind == ESTIMATOR and grid in m.default_on}


def classifiers(grid: str) -> dict[int, str]:
  """scale → file of the shipped family classifier `s2k-sr --family auto` uses on LR of `grid`."""
  degradation.check_grid(grid)
  return {m.scales[0]: m.file for m in SHIPPED if m.kind == CLASSIFIER and grid in m.default_on}


def restorers(network: str) -> dict[tuple[str, int], str]:
  """(family, scale) → file of the shipped restorer `network` ('usrnet' or 'sftmd') for it."""
  out = {}
  for m in SHIPPED:
    if m.kind == network:
      families = kernels.FAMILIES if m.family == kernels.MIXED else (m.family,)
      out.update({(f, s): m.file for f in families for s in m.scales})
  return out
