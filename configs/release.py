r"""The configs that trained the models shipped in s2k_jax/weights/ (s2k_jax/catalogue.py lists them), one
per training stage, named after the file:

  python train.py --config configs/release.py:gaussian_x4_estimator --workdir runs/release/gaussian_x4_estimator
  python scripts/reproduce_shipped.py gaussian_x4_estimator     # trains and exports it, every stage in turn
  python scripts/reproduce_shipped.py --list                    # every shipped model and its stages

A model trained in several stages (USRNet) has one config per stage, `NAME.1`, `NAME.2`, …; each stage
after the first starts from the export of the one before, `runs/release/NAME.(i-1).npz`
(`train.init_from`; `scripts/reproduce_shipped.py` writes and passes it). What each one saw and how long
it took: s2k_jax/weights/README.md.

Every config here is an experiment file's preset plus the fields that changed; a test checks each one
against the config saved inside the shipped bundle.
"""
from configs import common
from configs import disk
from configs import family
from configs import gaussian
from configs import motion
from configs import sftmd
from configs import usrnet

RELEASE_ROOT = 'runs/release'  # where scripts/reproduce_shipped.py trains and exports by default
# The photo corpus as array_record (scripts/build_photo_corpus.py corpus --tfds_dir corpus/tfds ...).
CORPUS_TFDS = 'corpus/tfds'

_EXPERIMENTS = {'gaussian': gaussian, 'motion': motion, 'disk': disk, 'sftmd': sftmd, 'usrnet': usrnet,
                'family': family}

# The paper's clean LR on the :cpu preset, with the shipped generator size; 6000 steps at a constant rate.
_CLEAN = {'model.generator': 'unet-6-16', 'train.num_steps': 6000}
# USRNet's fine-tunes: cosine from lr 1e-4; larger crops; a faster hyper-network.
_FINETUNE = {'train.learning_rate': 1e-4}
_H144 = {'restorer.hr_patch': 144, 'train.batch_size': 4}
_HYPER = {'train.hyper_lr_scale': 30.0}
# Kernel PSNR lost by running the wrong family's shipped ×4 estimator (dB; rows: the true family, columns:
# the estimator run; Gaussian, motion, disk), measured on direct-grid sets made from the training photos
# (docs/results.md §5, "Recognising the family"): the family classifiers' `recognition.costs`.
_FAMILY_COSTS = ((0.0, 16.2, 16.1), (2.0, 0.0, 6.4), (8.0, 9.7, 0.0))
_CORPUS_SMALL_BLUR = {'data.source': 'tfds', 'data.tfds_data_dir': CORPUS_TFDS,
                      'degradation.sigma_range': (0.2, 3.4)}

# name → (experiment file, its config argument, the fields changed).
RECIPES = {
    'gaussian_estimator': ('gaussian', 'cpu', _CLEAN),
    'disk_x4_estimator': ('disk', 'cpu', _CLEAN),
    'gaussian_x4_estimator': ('gaussian', 'photo', {}),
    'motion_x4_estimator': ('motion', 'photo', {}),
    'gaussian_x3_estimator': ('gaussian', 'photo', {'degradation.scale': 3, 'train.ema_decay': 0.999}),
    'motion_x3_estimator': ('motion', 'photo', {'degradation.scale': 3, 'data.hr_crop': 288}),
    'disk_x3_estimator': ('disk', 'photo', {'degradation.scale': 3, 'train.ema_decay': 0.999}),
    'gaussian_x2_estimator': ('gaussian', 'photo', {'degradation.scale': 2, 'data.hr_crop': 256,
                                                    'data.skip_small_images': False}),
    'motion_x2_estimator': ('motion', 'photo', {'degradation.scale': 2, 'data.hr_crop': 256}),
    'disk_x2_estimator': ('disk', 'photo', {'degradation.scale': 2, 'data.hr_crop': 256}),
    # The photo corpus, each LR shrunk by a resizer drawn per image, blurs down to σ 0.2, less JPEG.
    'gaussian_x2_resized_estimator': ('gaussian', 'photo', {
        'degradation.scale': 2, 'data.hr_crop': 256, 'degradation.downsample': 'random_resizer',
        'degradation.sigma_range': (0.2, 2.0), 'degradation.jpeg_prob': 0.3,
        'data.source': 'tfds', 'data.tfds_data_dir': CORPUS_TFDS}),
    # The same at ×4, 21×21 kernels up to σ 3.4 (Gaussian8's widest) and σ drawn log-uniformly: as many
    # blurs below σ 0.8 as above it, so that an unblurred resize is not read as a blur.
    'gaussian_x4_resized_estimator': ('gaussian', 'photo', {
        'degradation.downsample': 'random_resizer', 'degradation.kernel_size': 21,
        'degradation.sigma_range': (0.2, 3.4), 'degradation.sigma_prior': 'log_uniform',
        'data.source': 'tfds', 'data.tfds_data_dir': CORPUS_TFDS}),
    # Motion blur on photos: the motion ×4 recipe with each LR shrunk by a resizer drawn per image; its
    # kernels are blurs before a bicubic resize.
    'motion_x4_resized_estimator': ('motion', 'photo', {'degradation.downsample': 'random_resizer'}),
    # Which family's estimator reads directly decimated LR (`s2k-sr --family auto --grid direct`): the
    # bundled photos, every family; its decision weighs what running the wrong family's estimator costs.
    'family_x4_classifier': ('family', 'photo', {
        'recognition.costs': _FAMILY_COSTS}),
    # The same for photos (the centre grid): LR shrunk by a resizer drawn per image, Gaussian blurs as the
    # resized Gaussian estimator learns them (σ log-uniform from 0.2, so that a photo shrunk with no blur
    # is named Gaussian, whose estimator is the default), the costs above (not re-measured on this grid).
    'family_x4_resized_classifier': ('family', 'photo', {
        'degradation.downsample': 'random_resizer', 'degradation.sigma_range': (0.2, 3.4),
        'degradation.sigma_prior': 'log_uniform', 'recognition.costs': _FAMILY_COSTS}),
    'sftmd_gaussian_x4': ('sftmd', 'gaussian_x4,cpu', {'train.num_steps': 3000}),
    'sftmd_motion_x4': ('sftmd', 'motion_x4,cpu', {}),
    # USRNet: 2000 steps with noise on every image, then six fine-tunes on the bundled photos, then three
    # on the photo corpus with blurs down to σ 0.2: bicubic LR, then a resizer drawn per LR image (the
    # data step told 'bicubic', as s2k-sr tells it about a photo).
    'usrnet_mixed.1': ('usrnet', 'mixed,cpu', {'train.num_steps': 2000, 'degradation.noise_prob': 1.0}),
    'usrnet_mixed.2': ('usrnet', 'mixed,cpu', {**_FINETUNE, 'train.num_steps': 800}),
    'usrnet_mixed.3': ('usrnet', 'mixed,cpu', {**_FINETUNE, 'train.num_steps': 400}),
    'usrnet_mixed.4': ('usrnet', 'mixed,cpu', {**_FINETUNE, **_H144, 'train.num_steps': 500}),
    'usrnet_mixed.5': ('usrnet', 'mixed,cpu', {**_FINETUNE, **_HYPER, 'train.num_steps': 400}),
    'usrnet_mixed.6': ('usrnet', 'mixed,cpu', {**_FINETUNE, **_H144, **_HYPER, 'train.num_steps': 600}),
    'usrnet_mixed.7': ('usrnet', 'mixed,cpu', {**_FINETUNE, **_H144, **_HYPER, 'train.num_steps': 600}),
    'usrnet_mixed.8': ('usrnet', 'mixed,cpu', {**_FINETUNE, **_H144, **_HYPER, **_CORPUS_SMALL_BLUR,
                                               'degradation.downsample': 'bicubic',
                                               'train.num_steps': 500, 'train.eval_every': 250}),
    'usrnet_mixed.9': ('usrnet', 'mixed,cpu', {**_FINETUNE, **_H144, **_HYPER, **_CORPUS_SMALL_BLUR,
                                               'degradation.downsample': 'random_resizer',
                                               'train.num_steps': 1200, 'train.eval_every': 400}),
    # Then told, on half the images, the true kernel widened by up to 0.5 LR px, as S2K's estimates on
    # sharp LR are (docs/conventions.md, "Told kernels").
    'usrnet_mixed.10': ('usrnet', 'mixed,cpu', {**_FINETUNE, **_H144, **_HYPER, **_CORPUS_SMALL_BLUR,
                                                'degradation.downsample': 'random_resizer',
                                                'restorer.kernel_error_prob': 0.5,
                                                'restorer.kernel_error_sigma': 0.5,
                                                'train.num_steps': 800, 'train.eval_every': 400}),
    # Then told the noise σ s2k-sr reads off each LR instead of the true one, and, on 3 of 4 Gaussian
    # images, the shipped Gaussian estimator's kernel read off the LR (and 120 HR px around the crop)
    # instead of the truth: what s2k-sr tells it about a photo (docs/conventions.md, "Told estimates").
    'usrnet_mixed.11': ('usrnet', 'mixed,cpu', {**_FINETUNE, **_H144, **_HYPER, **_CORPUS_SMALL_BLUR,
                                                'degradation.downsample': 'random_resizer',
                                                'restorer.kernel_error_prob': 0.5,
                                                'restorer.kernel_error_sigma': 0.5,
                                                'restorer.told_noise': 'estimate',
                                                'restorer.told_estimate_prob': 0.75, 'restorer.context': 120,
                                                'data.skip_small_images': True,
                                                'train.num_steps': 2000, 'train.eval_every': 500}),
}


def previous_stage(name: str) -> str | None:
  """'usrnet_mixed.3' → 'usrnet_mixed.2'; None for a first stage or a one-stage recipe."""
  base, _, index = name.rpartition('.')
  return f'{base}.{int(index) - 1}' if base and index.isdigit() and int(index) > 1 else None


def get_config(name=None):
  if name not in RECIPES:
    raise ValueError(f'configs/release.py takes the name of a shipped model\'s training stage, one of: '
                     f'{", ".join(RECIPES)}; got {name!r}.')
  experiment, arg, changes = RECIPES[name]
  config = common.set_fields(_EXPERIMENTS[experiment].get_config(arg), changes)
  before = previous_stage(name)
  if before:
    config.train.init_from = f'{RELEASE_ROOT}/{before}.npz'
  return config
