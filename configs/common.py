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


def get_common_config(family: str) -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  config.seed = 0
  config.degradation = get_degradation_config(family)
  config.spectrum = get_spectrum_config()
  return config
