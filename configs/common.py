"""Shared defaults for every s2k-jax experiment (paper §4, "Experiment Setup").

Experiment files (`configs/gaussian.py`, `configs/motion.py`, `configs/disk.py`, `configs/sftmd.py`)
start from `get_estimator_config` / `get_restorer_config` and apply a preset: none = the paper's
settings, `:cpu` = visible progress on 2 CPU cores in minutes, `:smoke` = seconds, for tests, and for
estimators `:photo` = the shipped models' recipe (real-photo LR, Welch spectra, 2 CPU cores). Each
preset is a table of the fields it changes (`ESTIMATOR_PRESETS`, `RESTORER_PRESETS`, and
`MOTION_PRESETS` on top for motion kernels): what `:cpu` trains is read off the table, no branch hides
anything. A degradation section holds only its own family's fields, so overriding another family's
field is an error, not a silent no-op.
"""
import ml_collections

from s2k_jax import data
from s2k_jax import degradation
from s2k_jax import kernels
from s2k_jax import spectrum

# The degradation section (family fields, LR synthesis) is the library's: degradation.default_config.
FAMILY_FIELDS = degradation.FAMILY_FIELDS
get_degradation_config = degradation.default_config


def get_spectrum_config() -> ml_collections.ConfigDict:
  """Generator input and target sizes (paper §3.3: 256×256 amplitude spectrum)."""
  s = ml_collections.ConfigDict()
  s.size = 256                     # spectrum side = kernel-map side = generator resolution
  s.mode = spectrum.DEFAULT_MODE   # 'crop' (centred crop) | 'welch' (mean power of tiles); 'dft' input only
  return s


def get_data_config() -> ml_collections.ConfigDict:
  """HR images and the host pipeline (paper §4: DIV2K train for training, DIV2K valid for tests)."""
  d = ml_collections.ConfigDict()
  d.source = 'bundled'             # 'bundled' (scikit-image photos, offline) | 'folder' | 'tfds'
  # Fields of one source only (defaults in data.FOLDER_DEFAULTS / data.TFDS_DEFAULTS): setting one
  # while another source is chosen is an error, not a silent no-op (data.check_fields).
  # folder: train_dir e.g. DIV2K_train_HR (searched recursively), eval_dir e.g. DIV2K_valid_HR.
  d.update(data.FOLDER_DEFAULTS)
  # tfds: tfds_name 's2k_images' (built by `python -m s2k_jax.build_tfds`) or 'div2k/bicubic_x4';
  # tfds_data_dir '' = tfds default (~/tensorflow_datasets); tfds_image_key '' = 'image'
  # (s2k_images) or 'hr' (stock div2k); tfds_train_split / tfds_eval_split.
  d.update(data.TFDS_DEFAULTS)
  d.hr_crop = 0                    # HR crop side, a multiple of the scale; set by the task config
  d.flip = True                    # random mirror; with rot90, a random one of the square's 8 symmetries
  d.rot90 = True                   # random quarter turns
  d.scan = 'full'                  # start-up check of every image: 'full' (decode) | 'header' (fast)
  d.skip_small_images = False      # True: leave out (and log) images smaller than hr_crop, else fail
  d.grayscale = 'keep'             # 'keep' | 'skip' (leave out, and log, R = G = B images; restorers)
  d.num_workers = 4                # grain worker processes (0 = load in the training process)
  d.read_threads = 4               # threads per process reading and decoding images
  d.prefetch = 2                   # batches buffered per worker; read-ahead is max(prefetch, read_threads)
  return d


def get_common_config(family: str) -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  config.seed = 0
  config.degradation = get_degradation_config(family)
  config.data = get_data_config()
  return config


def get_model_config() -> ml_collections.ConfigDict:
  """Generator and discriminator (paper §3.3, Fig. 4 and Fig. 7)."""
  m = ml_collections.ConfigDict()
  m.generator = 'unet-8-64'        # 'unet-8-64' (paper) | 'unet-5-32' | 'ed-8-64' | 'ed-5-32' | 'unet-D-F'
  m.input = 'dft'                  # 'dft' (amplitude spectrum, S2K) | 'spatial' (LR luminance; Table 3)
  m.disc_features = 64             # 70×70 PatchGAN, ndf 64
  m.disc_layers = 3
  m.dtype = 'float32'              # 'float32' | 'bfloat16' (computation; parameters and optimiser state stay float32)
  return m


def get_train_config(family: str) -> ml_collections.ConfigDict:
  """Optimisation (paper §4: Adam lr 1e-3, β = (0.5, 0.999); λ = (100, 1, 1))."""
  t = ml_collections.ConfigDict()
  t.num_steps = 200_000            # not given in the paper; see docs/conventions.md
  t.batch_size = 16                # global batch over all devices and hosts
  t.learning_rate = 1e-3
  t.b1 = 0.5
  t.b2 = 0.999
  t.eps = 1e-8                     # Adam ε (PyTorch's default, as pix2pix)
  t.schedule = 'constant'          # 'constant' | 'cosine' | 'linear_decay' (pix2pix)
  t.loss_weights = (100.0, 1.0, 1.0)  # λ1 (L1), λ2 (LSGAN shape loss), λ3 (TV); zero one for Table 2
  t.kernel_quantile = 0.5          # the λ1 term's quantile τ: 0.5 the paper's L1, < 0.5 reads narrower kernels
  t.kernel_loss = 'l1'             # the λ1 term: 'l1' (the paper's) | 'l2' (squared error: the mean map where unsure)
  t.log_every = 50
  t.eval_every = 1000
  t.eval_batch_size = 8
  t.checkpoint_every = 1000
  t.keep_checkpoints = 3
  # Several processes (multi-host TPU/GPU, or scripts/launch_local.sh): True calls
  # jax.distributed.initialize() before anything else. The three cluster fields, set together, name the
  # cluster explicitly; left unset, it is auto-detected (cloud TPU, SLURM, …). docs/multihost.md.
  t.distributed = False
  t.coordinator_address = ''       # 'HOST:PORT' of process 0
  t.num_processes = 0              # N ≥ 1 (0: auto-detect)
  t.process_id = -1                # this process, in [0, N) (-1: auto-detect)
  t.init_from = ''                 # a model bundle (.npz) of the same task whose weights start step 0
  return t


def get_estimator_config(family: str) -> ml_collections.ConfigDict:
  """The S2K estimator experiment for one kernel family."""
  config = get_common_config(family)
  config.task = 'estimator'
  config.spectrum = get_spectrum_config()
  # HR crops that give exactly S×S LR crops (paper: 1024 = 256·4); follows overrides of either.
  config.data.hr_crop = config.spectrum.get_ref('size') * config.degradation.get_ref('scale')
  config.model = get_model_config()
  config.train = get_train_config(family)
  # Evaluate and export an exponential moving average of the generator's weights (0: the raw weights,
  # as the paper). The GAN term jolts G between checkpoints; the average smooths it (docs/results.md §5
  # measures when it helps).
  config.train.ema_decay = 0.0
  return config


def get_restorer_config(family: str, scale: int) -> ml_collections.ConfigDict:
  """SFTMD trained on (LR, true kernel code) pairs, as IKC trains it (paper §3.4)."""
  config = get_common_config(family)
  config.task = 'sftmd'
  config.degradation.scale = scale
  config.data.grayscale = 'skip'       # gray photos teach a restorer to desaturate (docs/conventions.md)
  r = config.restorer = ml_collections.ConfigDict()
  r.lr_patch = 64                      # LR patch side (IKC: 64²); the HR crop follows it and the scale
  r.dtype = 'float32'                  # 'float32' | 'bfloat16' (computation; parameters and optimiser state stay float32)
  config.data.hr_crop = r.get_ref('lr_patch') * config.degradation.get_ref('scale')
  r.features = 64
  r.num_blocks = 16
  r.kernel_size = config.degradation.kernel_size  # the code's canvas; other sizes are resized to it
  r.pca_components = 10
  r.pca_center = True                  # see docs/conventions.md, "Centring"
  r.pca_samples = 10_000
  r.pca_seed = 0
  r.anchor = 'bicubic'                 # keep bicubic's chroma and lowest luma frequencies | 'none'
  config.train = get_restorer_train_config(family, b2=0.99)
  return config


def get_restorer_train_config(family: str, b2: float) -> ml_collections.ConfigDict:
  """A restorer's optimisation: L1 with Adam 1e-4 (β2 0.99 as IKC, 0.999 as USRNet), cosine decay."""
  t = get_train_config(family)
  t.learning_rate = 1e-4
  t.b1, t.b2 = 0.9, b2
  t.schedule = 'cosine'
  t.num_steps = 500_000
  del t['loss_weights'], t['kernel_quantile'], t['kernel_loss']  # the estimator's GAN loss; restorers' is L1
  return t


def get_usrnet_config(family: str) -> ml_collections.ConfigDict:
  """USRNet (deep unfolding, models/usrnet.py): one model for the scales in restorer.scales and every
  noise level up to degradation.noise_max, trained on (LR, true kernel, σ) triples."""
  config = get_common_config(family)
  config.task = 'usrnet'
  config.data.grayscale = 'skip'       # gray photos teach a restorer to desaturate (docs/conventions.md)
  del config.degradation['scale']   # restorer.scales instead: every batch is degraded at each
  config.degradation.noise_max = 0.05  # σ ~ U[0, 5%] (on the [0, 1] scale), then 8-bit rounding
  # Half the images noise-free: with noise on every image, σ ≈ 0 is rarely seen and the hyper-network
  # over-weights the prior on clean LR (docs/results.md §4, "Why the window was small").
  config.degradation.noise_prob = 0.5
  config.degradation.quantize = True
  if 'motion_bank_size' in config.degradation:
    config.degradation.motion_bank_size = 0  # fresh trajectories: a user's camera shake is in no bank
  r = config.restorer = ml_collections.ConfigDict()
  r.scales = (2, 3, 4)                 # one step per scale in turn
  r.hr_patch = 96                      # HR crop side, a multiple of every scale (LR 48/32/24)
  r.dtype = 'float32'                  # 'float32' | 'bfloat16' (computation; parameters and optimiser state stay float32); the data step's FFTs stay float32
  r.context = 0                        # HR pixels degraded around each side of the crop (told estimates)
  config.data.hr_crop = r.get_ref('hr_patch') + r.get_ref('context') * 2
  r.iterations = 8                     # data/prior rounds (USRNet: 8)
  r.features = (64, 128, 256, 512)     # ResUNet widths per level (USRNet)
  r.num_blocks = 2                     # residual blocks per level
  r.border = 16                        # LR pixels of reflect padding around the image
  r.hyper_features = 64
  # Kernel estimates wider than the truth, as a blind pipeline's are on sharp LR: on this fraction of
  # training images USRNet is told the true kernel convolved with an isotropic Gaussian of σ drawn
  # uniformly in [0, kernel_error_sigma] LR pixels (σ·s HR pixels at ×s). 0 and 0: told the truth.
  r.kernel_error_prob = 0.0
  r.kernel_error_sigma = 0.0
  # The noise σ USRNet is told in training: 'true' (the σ added), or 'estimate': the σ `noise.
  # estimate_sigmas` reads off each LR image, clipped to noise_max — what s2k-sr tells it about a photo,
  # where texture, aliasing and 8-bit rounding read as 0.2–4% on clean LR (docs/conventions.md).
  r.told_noise = 'true'
  # S2K's own estimates, as s2k-sr tells them: on this share of the images whose kernel is of a told
  # estimator's family, USRNet is told that estimator's kernel read off the LR instead of the truth, so
  # that it learns what the estimate means (too wide on sharp LR, too narrow on blurred; docs/
  # conventions.md, "Told estimates"). 'x2=MODEL,x4=MODEL' or '' for the shipped Gaussian estimators
  # that read the training LR's grid. The estimator reads the LR of the crop plus restorer.context HR
  # pixels on each side (a multiple of every scale), as it reads a whole photo; the loss sees the crop.
  r.told_estimate_prob = 0.0
  r.told_estimators = ''
  config.train = get_restorer_train_config(family, b2=0.999)
  # The hyper-network's learning rate over the rest's: its α and β are a few numbers that Adam moves
  # by at most ~lr a step (docs/results.md §4, "Larger crops and a faster hyper-network").
  config.train.hyper_lr_scale = 1.0
  return config


def get_family_config() -> ml_collections.ConfigDict:
  """The kernel-family classifier (`s2k_jax/family.py`, not in the paper): the LR the shipped estimators
  learn from (real-photo LR: noise σ ≤ 3% on half the images, 8-bit, JPEG q 50–95 on 70%; fresh motion
  trajectories), kernels of every family, and their Welch spectra (64² tiles of a 96² LR crop), as the
  estimators read a whole photo. Paper scale has no meaning here; this default is for GPUs/TPUs and the
  `photo` preset for 2 CPU cores."""
  config = get_common_config(kernels.MIXED)
  config.task = 'family'
  config.spectrum = get_spectrum_config()
  config.spectrum.size = 64
  config.spectrum.mode = 'welch'
  config.data.hr_crop = config.degradation.get_ref('scale') * 96  # 96² LR crops at every scale
  config.data.skip_small_images = True
  config.degradation.update({'noise_max': 0.03, 'noise_prob': 0.5, 'quantize': True, 'jpeg_prob': 0.7,
                             'motion_bank_size': 0})
  m = config.model = ml_collections.ConfigDict()
  m.features = (16, 32, 64, 128)   # channels per level (two 3×3 convs each, the second of stride 2)
  m.hidden = 64                    # the dense layer before the logits
  m.dtype = 'float32'              # 'float32' | 'bfloat16' (computation)
  # The decision (`family.decide`): costs[t][f] is what running family f's estimator on LR of family t
  # costs; the family with the least expected cost under the classifier's probabilities runs. The
  # default, 0 on the diagonal and 1 elsewhere, picks the most probable family.
  config.recognition = ml_collections.ConfigDict()
  config.recognition.costs = tuple(tuple(float(t != f) for f in kernels.FAMILIES) for t in kernels.FAMILIES)
  t = config.train = get_train_config(kernels.MIXED)
  for field in ('loss_weights', 'kernel_quantile', 'kernel_loss'):  # the estimator's loss; a classifier has none of it
    del t[field]
  t.update({'num_steps': 20_000, 'batch_size': 64, 'learning_rate': 1e-3, 'b1': 0.9, 'schedule': 'cosine',
            'eval_every': 1000, 'eval_batch_size': 48})
  return config

# ---------------------------------------------------------------------------------------------------
# Presets: the fields each one changes. Both shrink the run for CPUs; worker processes only slow 2
# cores down (docs/benchmarks.md), so the host pipeline reads in the training process.

_CPU_LOOP = {'train.batch_size': 8, 'train.num_steps': 2000, 'train.log_every': 10,
             'train.eval_every': 200, 'train.checkpoint_every': 200,
             'data.num_workers': 0, 'data.read_threads': 2}
_SMOKE_LOOP = {'train.batch_size': 8, 'train.num_steps': 4, 'train.log_every': 1,
               'train.eval_every': 2, 'train.checkpoint_every': 2,
               'data.num_workers': 0, 'data.read_threads': 2}

ESTIMATOR_PRESETS = {
    # 64² spectra (LR crops) and a 6-level U-Net of width 32: learns on a laptop in minutes. Clean LR, as
    # the paper (the real-photo LR recipe is the 'photo' preset below; docs/results.md §5 compares them).
    'cpu': {**_CPU_LOOP, 'spectrum.size': 64, 'model.generator': 'unet-6-32', 'model.disc_features': 32},
    'smoke': {**_SMOKE_LOOP, 'spectrum.size': 32, 'model.generator': 'unet-3-8', 'model.disc_features': 8,
              'model.disc_layers': 2},
}
# Real-photo LR on 2 CPU cores, the recipe of the shipped estimators (docs/results.md §5): noise σ ≤ 3% on
# half the images, 8-bit, JPEG q 50–95 on 70%, and the Welch spectrum (mean power of 64² tiles) of a
# 96² LR crop at ×4, so that one model reads a whole photo of any size; bundled photos smaller than the
# 384² HR crop are left out. 6000 steps: ~15 minutes.
ESTIMATOR_PRESETS['photo'] = {
    **ESTIMATOR_PRESETS['cpu'], 'model.generator': 'unet-6-16', 'train.num_steps': 6000,
    'train.eval_every': 1000, 'train.checkpoint_every': 1000,
    'degradation.noise_max': 0.03, 'degradation.noise_prob': 0.5, 'degradation.quantize': True,
    'degradation.jpeg_prob': 0.7, 'spectrum.mode': 'welch', 'data.hr_crop': 384,
    'data.skip_small_images': True}
RESTORER_PRESETS = {
    'cpu': {**_CPU_LOOP, 'restorer.lr_patch': 32, 'restorer.num_blocks': 8, 'restorer.pca_samples': 4000},
    'smoke': {**_SMOKE_LOOP, 'restorer.lr_patch': 16, 'restorer.num_blocks': 1, 'restorer.features': 8,
              'restorer.pca_samples': 200},
}
FAMILY_PRESETS = {
    # 2 CPU cores: ~25 min (`configs/release.py:family_x4_classifier`).
    'photo': {**_CPU_LOOP, 'train.batch_size': 16, 'train.num_steps': 4000, 'train.eval_every': 500,
              'train.checkpoint_every': 500, 'train.eval_batch_size': 48},
    'smoke': {**_SMOKE_LOOP, 'spectrum.size': 32, 'data.hr_crop': 192, 'model.features': (8, 16),
              'model.hidden': 8, 'train.eval_batch_size': 8},
}
USRNET_PRESETS = {
    # 4 rounds of a 4-level ResUNet of width 16–128: a few hundred ms per step on 2 cores.
    'cpu': {**_CPU_LOOP, 'train.num_steps': 3000, 'train.eval_every': 500, 'train.learning_rate': 3e-4,
            'restorer.iterations': 4, 'restorer.features': (16, 32, 64, 128), 'restorer.num_blocks': 1,
            'restorer.border': 8},
    'smoke': {**_SMOKE_LOOP, 'restorer.hr_patch': 48, 'restorer.iterations': 2,
              'restorer.features': (4, 8), 'restorer.num_blocks': 1, 'restorer.border': 4,
              'restorer.hyper_features': 8},
}
# Motion kernels, on top of the task's preset: a smaller bank (and shorter trajectories for smoke).
MOTION_PRESETS = {
    'cpu': {'degradation.motion_bank_size': 100},
    'photo': {'degradation.motion_bank_size': 0},  # fresh trajectories: a user's camera shake is in no bank
    'smoke': {'degradation.motion_bank_size': 8, 'degradation.motion_samples': 500},
}
# USRNet draws fresh trajectories (no bank) at every preset; smoke shortens them.
USRNET_MOTION_PRESETS = {'cpu': {}, 'smoke': {'degradation.motion_samples': 500}}


def apply_preset(config: ml_collections.ConfigDict, preset: str | None) -> ml_collections.ConfigDict:
  """Applies a preset by config argument (`configs/motion.py:cpu`): '' = paper scale, 'cpu', 'smoke', and
  for estimators 'photo' (real-photo LR on CPUs)."""
  if not preset:
    return config
  tables = {'estimator': ESTIMATOR_PRESETS, 'sftmd': RESTORER_PRESETS,
            'usrnet': USRNET_PRESETS, 'family': FAMILY_PRESETS}[config.task]
  if preset not in tables:
    raise ValueError(f"unknown config preset {preset!r}: use '', {', '.join(map(repr, tables))}")
  changes = dict(tables[preset])
  if config.degradation.family in ('motion', kernels.MIXED):
    changes.update((USRNET_MOTION_PRESETS if config.task == 'usrnet' else MOTION_PRESETS)[preset])
  return set_fields(config, changes)


def set_fields(config: ml_collections.ConfigDict, changes: dict) -> ml_collections.ConfigDict:
  """Sets each 'section.field' of `changes` (an unknown field is an error, as on the command line)."""
  for dotted, value in changes.items():
    section, field = dotted.split('.')
    if field not in config[section]:
      raise KeyError(f'config has no field {dotted!r}.')
    setattr(config[section], field, value)
  return config
