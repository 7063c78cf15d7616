"""Shared defaults for every s2k-jax experiment (paper §4, "Experiment Setup").

Experiment files (`configs/gaussian.py`, `configs/motion.py`, `configs/disk.py`) start from
`get_common_config()` and override only what differs; presets (`:cpu`, `:smoke`) shrink
sizes in `apply_preset`.
"""
import ml_collections


def get_degradation_config(family: str) -> ml_collections.ConfigDict:
  """Kernel family and LR synthesis: LR = (HR ⊗ k)↓s + n (paper Eq. 1, §4)."""
  d = ml_collections.ConfigDict()
  d.family = family                # 'gaussian' | 'motion' | 'disk'
  d.kernel_size = {'gaussian': 15, 'motion': 23, 'disk': 15}[family]
  d.scale = 4                      # 2, 3 or 4
  d.downsample = 'direct'          # 'direct' (s-fold subsampling) | 'bicubic' (MATLAB imresize)
  d.noise_max = 0.0                # σ ~ U[0, noise_max] per image, on the [0, 1] scale
  d.quantize = False               # round LR to uint8 levels after the noise
  # Gaussian: σx, σy ~ U[sigma_min, sigma_max], θ ~ U[0, 2π).
  d.sigma_range = (1.0, 3.0)
  # Disk: r ~ U[radius_min, radius_max] (MATLAB fspecial('disk', r)).
  d.radius_range = (1.0, 3.0)
  # Motion: Boracchi & Foi (2012) trajectories.
  d.exposure_range = (0.15, 0.3)
  d.motion_canvas = 64
  d.motion_samples = 2000
  d.motion_max_length = 60
  d.motion_anxiety = 0.005
  # The paper draws from a fixed bank of 500 motion kernels; 0 draws a fresh kernel each time.
  d.motion_bank_size = 500
  d.motion_bank_seed = 0
  d.motion_bank_path = ''          # '' = build the bank from the seed in memory
  return d


def get_spectrum_config() -> ml_collections.ConfigDict:
  """Generator input and target sizes (paper §3.3: 256×256 amplitude spectrum)."""
  s = ml_collections.ConfigDict()
  s.size = 256                     # spectrum side = kernel-map side = generator resolution
  s.mode = 'crop'                  # 'crop' (centred crop) | 'welch' (mean power of tiles)
  return s


def get_data_config() -> ml_collections.ConfigDict:
  """HR images and the host pipeline (paper §4: DIV2K train for training, DIV2K valid for tests)."""
  d = ml_collections.ConfigDict()
  d.source = 'bundled'             # 'bundled' (scikit-image photos, offline) | 'folder' | 'tfds'
  d.train_dir = ''                 # folder source: e.g. DIV2K_train_HR (searched recursively)
  d.eval_dir = ''                  # folder source: e.g. DIV2K_valid_HR
  d.tfds_name = 's2k_images'       # built by `python -m s2k_jax.tfds_builder`; or 'div2k/bicubic_x4'
  d.tfds_data_dir = ''             # '' = tfds default (~/tensorflow_datasets)
  d.tfds_train_split = 'train'
  d.tfds_eval_split = 'validation'
  d.tfds_image_key = ''            # '' = 'image' (s2k_images) or 'hr' (stock div2k)
  d.hr_crop = 1024                 # HR crop side, a multiple of the scale: 256·s gives 256² LR spectra
  d.flip = True                    # random mirror; with rot90, a random one of the square's 8 symmetries
  d.rot90 = True                   # random quarter turns
  d.scan = 'full'                  # start-up check of every image: 'full' (decode) | 'header' (fast)
  d.skip_small_images = False      # True: leave out (and log) images smaller than hr_crop, else fail
  d.num_workers = 4                # grain worker processes (0 = load in the training process)
  d.read_threads = 4               # threads per process reading and decoding images
  d.prefetch = 2                   # batches buffered per worker; read-ahead is max(prefetch, read_threads)
  return d


def get_common_config(family: str) -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  config.seed = 0
  config.degradation = get_degradation_config(family)
  config.spectrum = get_spectrum_config()
  config.data = get_data_config()
  return config


def get_model_config() -> ml_collections.ConfigDict:
  """Generator and discriminator (paper §3.3, Fig. 4 and Fig. 7)."""
  m = ml_collections.ConfigDict()
  m.generator = 'unet-8-64'        # 'unet-8-64' (paper) | 'unet-5-32' | 'ed-8-64' | 'ed-5-32' | 'unet-D-F'
  m.input = 'dft'                  # 'dft' (amplitude spectrum, S2K) | 'spatial' (LR luminance; Table 3)
  m.disc_features = 64             # 70×70 PatchGAN, ndf 64
  m.disc_layers = 3
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
  t.flip_invariant_l1 = family == 'motion'
  t.log_every = 50
  t.eval_every = 1000
  t.eval_batch_size = 8
  t.checkpoint_every = 1000
  t.keep_checkpoints = 3
  t.distributed = False            # True on multi-host TPU/GPU: calls jax.distributed.initialize()
  return t


def get_estimator_config(family: str) -> ml_collections.ConfigDict:
  """The S2K estimator experiment for one kernel family."""
  config = get_common_config(family)
  config.task = 'estimator'
  config.model = get_model_config()
  config.train = get_train_config(family)
  return config


def get_restorer_config(family: str, scale: int) -> ml_collections.ConfigDict:
  """SFTMD trained on (LR, true kernel code) pairs, as IKC trains it (paper §3.4)."""
  config = get_common_config(family)
  config.task = 'restorer'
  config.degradation.scale = scale
  config.data.hr_crop = 64 * scale     # 64² LR patches (IKC)
  config.spectrum.size = 64            # only for the batch's spectrum; the restorer doesn't read it
  r = config.restorer = ml_collections.ConfigDict()
  r.features = 64
  r.num_blocks = 16
  r.kernel_size = config.degradation.kernel_size  # the code's canvas; other sizes are resized to it
  r.pca_components = 10
  r.pca_center = True                  # see docs/conventions.md, "Centring"
  r.pca_samples = 10_000
  r.pca_seed = 0
  t = config.train = get_train_config(family)
  t.learning_rate = 1e-4
  t.b1, t.b2 = 0.9, 0.99
  t.schedule = 'cosine'
  t.num_steps = 500_000
  return config


def apply_preset(config: ml_collections.ConfigDict, preset: str | None) -> ml_collections.ConfigDict:
  """Presets by config argument (`configs/motion.py:cpu`): '' = paper scale, 'cpu', 'smoke'.

  `cpu` makes visible progress on 2 CPU cores in minutes; `smoke` runs in seconds, for tests.
  """
  if not preset:
    return config
  if preset not in ('cpu', 'smoke'):
    raise ValueError(f"unknown config preset {preset!r}: use '', 'cpu' or 'smoke'")
  cpu, restorer = preset == 'cpu', config.get('task') == 'restorer'
  t, d, deg = config.train, config.data, config.degradation
  d.num_workers, d.read_threads = 0, 2  # Worker processes only slow 2 cores down (measured).
  t.batch_size = 8
  if cpu:
    t.num_steps, t.log_every, t.eval_every, t.checkpoint_every = 2000, 10, 200, 200
    deg.motion_bank_size = 100
  else:
    t.num_steps, t.log_every, t.eval_every, t.checkpoint_every = 4, 1, 2, 2
    deg.motion_bank_size, deg.motion_samples = 8, 500
  # Spectrum side = LR crop side: 64² (estimator) / 32² (restorer) on CPU, half that for smoke tests.
  side = (32 if restorer else 64) // (1 if cpu else 2)
  config.spectrum.size, d.hr_crop = side, side * deg.scale
  if restorer:
    r = config.restorer
    r.num_blocks, r.pca_samples = (8, 4000) if cpu else (1, 200)
    if not cpu:
      r.features = 8
  else:
    m = config.model
    m.generator, m.disc_features = ('unet-6-32', 32) if cpu else ('unet-5-8', 8)
    if not cpu:
      m.disc_layers = 2
  return config
