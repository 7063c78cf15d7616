"""Blur kernels of the three families in the paper's experiments (§4, "Experiment Setup").

* Anisotropic Gaussian (size 15, σx, σy ~ U[1, 3], θ ~ U[0, 2π)): the kernel whose spectrum width is
  inversely proportional to its spatial width (§3.2, Eq. 9–10).
* Motion (size 23, exposure T ~ U[0.15, 0.3], anxiety 0.005): Boracchi & Foi (2012) camera-shake
  trajectories, drawn from a fixed bank of 500 kernels as in the paper.
* Disk (r ~ U[1, 3]): MATLAB `fspecial('disk', r)`, embedded in a fixed odd canvas.

Every kernel is float32, non-negative, sums to 1, has an odd side and is centred on its middle pixel.
Each family has a pure function of its parameters and a batch sampler driven by a `jax.random` key; all
of them jit, vmap and run on an accelerator. `sample_kernels` dispatches on the `degradation` section of
`configs/common.py`.
"""
import functools
import math
import os
import pathlib
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax
from jax.scipy import signal
import ml_collections
import numpy as np

FAMILIES = ('gaussian', 'motion', 'disk')
# 'mixed' draws each kernel from one of FAMILIES with equal probability (one restorer for any blur);
# its config holds every family's fields on one canvas.
MIXED = 'mixed'
FAMILY_CHOICES = FAMILIES + (MIXED,)
# Families whose kernels are not their own 180° rotation: the amplitude spectrum cannot tell k from
# rot180(k) (§3.2), so their losses and metrics must be flip-invariant (`flip_invariant`).
_NOT_POINT_SYMMETRIC = frozenset({'motion', MIXED})
# A bank kernel may drift from sum 1 by float32 round-off only.
_BANK_SUM_ATOL = 1e-3
# Defaults of the fields that only some motion modes read (configs/common.py:FAMILY_FIELDS takes them
# from here): a field that differs from its default where it has no effect is an error
# (`check_motion_bank_fields`).
MOTION_BANK_DEFAULTS = dict(motion_bank_seed=0, motion_bank_path='')
# The trajectory model (`motion_kernel`'s defaults, Boracchi & Foi): read when kernels are drawn fresh or
# a bank is built from its seed, never when the bank is read from motion_bank_path.
MOTION_TRAJECTORY_DEFAULTS = dict(exposure_range=(0.15, 0.3), motion_canvas=64, motion_samples=2000,
                                  motion_max_length=60, motion_anxiety=0.005)


def _check_odd_size(size: int, name: str = 'size') -> None:
  if not isinstance(size, (int, np.integer)) or size < 1 or size % 2 == 0:
    raise ValueError(f'{name} must be a positive odd int so the kernel has a middle pixel, got {size!r}.')


def _check_range(name: str, value_range: Any, lowest: float, highest: float = math.inf) -> tuple[float, float]:
  lo, hi = (float(v) for v in value_range)
  if not lowest <= lo <= hi <= highest:
    raise ValueError(
        f'{name} must be (min, max) with {lowest} <= min <= max <= {highest}, got {tuple(value_range)!r}.')
  return lo, hi


def _centred_grid(size: int) -> tuple[jnp.ndarray, jnp.ndarray]:
  """Column (x) and row (y) offsets from the middle pixel, as BasicSR's `mesh_grid`."""
  half = size // 2
  axis = jnp.arange(-half, half + 1, dtype=jnp.float32)
  return jnp.meshgrid(axis, axis, indexing='xy')


def _normalise(kernel: jnp.ndarray) -> jnp.ndarray:
  return kernel / jnp.sum(kernel, axis=(-2, -1), keepdims=True)


# ----------------------------------------------------------------------------------------------------
# Gaussian.


def gaussian_kernel(size: int, sigma_x: jnp.ndarray, sigma_y: jnp.ndarray,
                    theta: jnp.ndarray) -> jnp.ndarray:
  """Anisotropic Gaussian with covariance Σ = R(θ)·diag(σx², σy²)·R(θ)ᵀ on the centred integer grid.

  x is the column offset and y the row offset from the middle pixel (BasicSR `bivariate_Gaussian`).

  Args:
    size: odd side length.
    sigma_x, sigma_y: standard deviations (pixels) along the axes rotated by θ; scalars.
    theta: rotation angle in radians; scalar.

  Returns:
    (size, size) float32, sums to 1.
  """
  _check_odd_size(size)
  x, y = _centred_grid(size)
  cos, sin = jnp.cos(theta), jnp.sin(theta)
  # Rᵀ·(x, y) are the coordinates along the principal axes; no matrix inverse needed.
  u = cos * x + sin * y
  v = -sin * x + cos * y
  return _normalise(jnp.exp(-0.5 * ((u / sigma_x) ** 2 + (v / sigma_y) ** 2)))


# How σx and σy are drawn from sigma_range: 'uniform' (the paper's, BasicSR's) or 'log_uniform'
# (ln σ uniform: as many kernels in [0.2, 0.4] as in [1.7, 3.4], for estimators that must tell a sharp
# resize from a slightly blurred one).
SIGMA_PRIORS = ('uniform', 'log_uniform')


def check_sigma_prior(prior: str) -> str:
  if prior not in SIGMA_PRIORS:
    raise ValueError(f'degradation.sigma_prior must be one of {SIGMA_PRIORS}; got {prior!r}.')
  return prior


def sample_gaussian_kernels(key: jax.Array, batch: int, size: int = 15,
                            sigma_range: tuple[float, float] = (1.0, 3.0),
                            sigma_prior: str = 'uniform', isotropic_prob: float = 0.0) -> jnp.ndarray:
  """Draws σx, σy from sigma_range (per `sigma_prior`, independently) and θ ~ U[0, 2π) per kernel;
  returns (batch, size, size) float32.

  `isotropic_prob` > 0 sets σy = σx on that share of the kernels (drawn per kernel): independent σx, σy
  rarely give the wide, nearly isotropic blurs of benchmarks like Gaussian8 (docs/notebook.md, tenth
  session). At 0 the draws are exactly those of before the option existed.
  """
  _check_odd_size(size)
  lo, hi = _check_range('sigma_range', sigma_range, lowest=1e-3)
  if not 0.0 <= isotropic_prob <= 1.0:
    raise ValueError(f'degradation.isotropic_prob is a probability in [0, 1]; got {isotropic_prob!r}.')
  k_sx, k_sy, k_theta = jax.random.split(key, 3)
  log = check_sigma_prior(sigma_prior) == 'log_uniform'
  bounds = (math.log(lo), math.log(hi)) if log else (lo, hi)
  sigma_x, sigma_y = (jax.random.uniform(k, (batch,), minval=bounds[0], maxval=bounds[1]) for k in (k_sx, k_sy))
  if log:
    sigma_x, sigma_y = jnp.exp(sigma_x), jnp.exp(sigma_y)
  if isotropic_prob > 0:
    # A key of its own, so that the other draws stay as they were. Not fold_in(key, i < 3): that is
    # split(key, 3)[i] (threefry), and a mask drawn from σy's uniforms would leave the anisotropic rest
    # with σy from the top of the range only.
    isotropic = jax.random.uniform(jax.random.fold_in(key, 3), (batch,)) < isotropic_prob
    sigma_y = jnp.where(isotropic, sigma_x, sigma_y)
  theta = jax.random.uniform(k_theta, (batch,), minval=0.0, maxval=2 * jnp.pi)
  return jax.vmap(functools.partial(gaussian_kernel, size))(sigma_x, sigma_y, theta)


# ----------------------------------------------------------------------------------------------------
# Disk.


def _quadrant_disc_area(x: jnp.ndarray, y: jnp.ndarray, radius: jnp.ndarray) -> jnp.ndarray:
  """Area of [0, x] × [0, y] inside the disc of `radius` centred at the origin (x, y ≥ 0), exactly."""
  x = jnp.minimum(x, radius)
  y = jnp.minimum(y, radius)

  def chord(u):  # √(r² − u²), factored so u = r gives exactly 0 even when XLA fuses r² − u² into an FMA.
    return jnp.sqrt(jnp.maximum((radius - u) * (radius + u), 0.0))

  def under_arc(u):  # ∫₀ᵘ √(r² − t²) dt = (u·√(r² − u²) + r²·asin(u/r)) / 2
    # atan2 is asin(u/r) without its infinite slope at u = r, where float32 u/r = 1 − 6e-8 would
    # already cost 3e-4 rad.
    return 0.5 * (u * chord(u) + radius * radius * jnp.arctan2(u, chord(u)))

  # Left of x_cut the arc lies above the rectangle's top edge y, right of it the arc is the top.
  x_cut = jnp.minimum(chord(y), x)
  return x_cut * y + under_arc(x) - under_arc(x_cut)


def _corner_disc_area(x: jnp.ndarray, y: jnp.ndarray, radius: jnp.ndarray) -> jnp.ndarray:
  # Odd extension in x and y makes pixel area = inclusion–exclusion of four corners for any pixel.
  return jnp.sign(x) * jnp.sign(y) * _quadrant_disc_area(jnp.abs(x), jnp.abs(y), radius)


def disk_kernel(radius: jnp.ndarray, size: int = 15) -> jnp.ndarray:
  """MATLAB `fspecial('disk', radius)` centred in a (size, size) canvas.

  Each pixel holds the exact area of that pixel inside the disc, normalised to sum 1 (what fspecial
  computes). The area has a closed form, so `radius` may be traced (jit/vmap over radii).

  Args:
    radius: disc radius in pixels, scalar; 0 < radius <= size / 2 (a larger disc is cut by the canvas).
    size: odd side of the canvas; fspecial's own support is 2·ceil(radius − 0.5) + 1.

  Returns:
    (size, size) float32, sums to 1.
  """
  _check_odd_size(size)
  radius = jnp.asarray(radius, jnp.float32)
  x, y = _centred_grid(size)
  x0, x1, y0, y1 = x - 0.5, x + 0.5, y - 0.5, y + 0.5
  area = (_corner_disc_area(x1, y1, radius) - _corner_disc_area(x0, y1, radius)
          - _corner_disc_area(x1, y0, radius) + _corner_disc_area(x0, y0, radius))
  # Inclusion–exclusion leaves ±1e-8 round-off on pixels the disc misses; fspecial has exact zeros there.
  nearest_x, nearest_y = jnp.maximum(jnp.abs(x) - 0.5, 0.0), jnp.maximum(jnp.abs(y) - 0.5, 0.0)
  touches_disc = nearest_x ** 2 + nearest_y ** 2 < radius ** 2
  return _normalise(jnp.where(touches_disc, jnp.maximum(area, 0.0), 0.0))


def sample_disk_kernels(key: jax.Array, batch: int, size: int = 15,
                        radius_range: tuple[float, float] = (1.0, 3.0)) -> jnp.ndarray:
  """Draws r ~ U[radius_range] per kernel; returns (batch, size, size) float32."""
  _check_odd_size(size)
  lo, hi = _check_range('radius_range', radius_range, lowest=1e-3, highest=size / 2)
  radius = jax.random.uniform(key, (batch,), minval=lo, maxval=hi)
  return jax.vmap(functools.partial(disk_kernel, size=size))(radius)


# ----------------------------------------------------------------------------------------------------
# Motion (Boracchi & Foi 2012).


def motion_trajectory(key: jax.Array, samples: int = 2000, max_length: float = 60.0,
                      anxiety: float = 0.005) -> jnp.ndarray:
  """Random camera-shake trajectory of Boracchi & Foi (2012), `createTrajectory`.

  A particle starts at 0 with a random direction. At every step its velocity gets a Gaussian
  perturbation, a centripetal pull back towards the start and, rarely, an abrupt shake that roughly
  reverses it; the speed is then renormalised so every step has length max_length / (samples − 1).
  The per-trajectory parameters are drawn as in the reference: centripetal ~ 0.7·U, Gaussian shake
  ~ 10·U, big-shake probability ~ 0.2·U (times anxiety per step), initial angle ~ U[0, 360°).

  Args:
    key: `jax.random` key.
    samples: number of trajectory samples (static).
    max_length: total trajectory length in pixels.
    anxiety: amount of shake; 0 gives a straight line.

  Returns:
    (samples,) complex64 positions, x = real part (columns), y = imaginary part (rows), starting at 0.
  """
  if samples < 2:
    raise ValueError(f'samples must be >= 2 to make a trajectory, got {samples}.')
  k_params, k_shake, k_turn, k_noise = jax.random.split(key, 4)
  centripetal, gaussian_shake, prob_big_shake, init_angle = (
      jax.random.uniform(k_params, (4,)) * jnp.array([0.7, 10.0, 0.2, 2 * jnp.pi]))
  step_length = max_length / (samples - 1)
  v0 = jnp.exp(1j * init_angle).astype(jnp.complex64)
  # The reference starts at speed `anxiety` (a tiny first step) unless the walk is a straight line.
  velocity = v0 * jnp.where(anxiety > 0, anxiety, step_length)

  shake_draw = jax.random.uniform(k_shake, (samples - 1,))
  turn_draw = jax.random.uniform(k_turn, (samples - 1,))
  noise = lax.complex(*jax.random.normal(k_noise, (2, samples - 1)))

  def step(carry, inputs):
    position, velocity = carry
    shake_u, turn_u, gaussian = inputs
    big_shake = jnp.where(shake_u < prob_big_shake * anxiety,
                          2 * velocity * jnp.exp(1j * (jnp.pi + turn_u - 0.5)), 0)
    velocity = velocity + big_shake + anxiety * (
        gaussian_shake * gaussian - centripetal * position) * step_length
    velocity = velocity / jnp.maximum(jnp.abs(velocity), 1e-30) * step_length
    position = position + velocity
    return (position, velocity), position

  start = jnp.zeros((), jnp.complex64)
  _, path = lax.scan(step, (start, velocity.astype(jnp.complex64)),
                     (shake_draw, turn_draw, noise.astype(jnp.complex64)))
  return jnp.concatenate([start[None], path])


def trajectory_kernel(trajectory: jnp.ndarray, exposure: jnp.ndarray, size: int = 23) -> jnp.ndarray:
  """Motion PSF of the first `exposure` fraction of a trajectory (Boracchi & Foi `createPSFs`).

  Sample t (0-based) of n gets weight clip(exposure·n − t, 0, 1), as the reference integrates time, and
  is splatted bilinearly onto its 4 neighbouring pixels. Before splatting, the trajectory is shifted
  so that its weighted centre of mass lands exactly on the middle pixel: re-centring the continuous
  path is an exact sub-pixel shift (no resampling blur, no FFT ringing) and, since bilinear splatting
  preserves the centre of mass, the kernel is centred. Mass falling outside the (size, size) window is
  dropped and the kernel renormalised.

  Args:
    trajectory: (n,) complex positions (real = column, imag = row), e.g. from `motion_trajectory`.
    exposure: fraction of the trajectory integrated, in (0, 1].
    size: odd side of the output kernel.

  Returns:
    (size, size) float32, sums to 1.
  """
  _check_odd_size(size)
  n = trajectory.shape[0]
  weight = jnp.clip(exposure * n - jnp.arange(n, dtype=jnp.float32), 0.0, 1.0)
  centre_of_mass = jnp.sum(weight * trajectory) / jnp.sum(weight)
  half = size // 2
  path = trajectory - centre_of_mass + half * (1 + 1j)
  pixels = jnp.arange(size, dtype=jnp.float32)
  # Bilinear splat = product of 1-D triangle weights; a matmul instead of a scatter keeps it
  # deterministic on GPU and drops out-of-window samples for free.
  row_weight = jnp.maximum(0.0, 1.0 - jnp.abs(jnp.imag(path)[:, None] - pixels))
  col_weight = jnp.maximum(0.0, 1.0 - jnp.abs(jnp.real(path)[:, None] - pixels))
  kernel = jnp.einsum('t,ti,tj->ij', weight, row_weight, col_weight, precision=lax.Precision.HIGHEST)
  return _normalise(kernel)


def _check_motion_args(size: int, canvas: int, samples: int, max_length: float) -> None:
  _check_odd_size(size)
  if size > canvas:
    raise ValueError(f'kernel size {size} must be <= the trajectory canvas {canvas}.')
  if not 0 < max_length < canvas:
    raise ValueError(
        f'max_length must be in (0, canvas={canvas}) so the whole trajectory fits the reference canvas, '
        f'got {max_length}.')
  if samples < 2:
    raise ValueError(f'samples must be >= 2, got {samples}.')


def motion_kernel(key: jax.Array, size: int = 23, exposure: float | jnp.ndarray | None = None, *,
                  exposure_range: tuple[float, float] = (0.15, 0.3), canvas: int = 64,
                  samples: int = 2000, max_length: float = 60.0, anxiety: float = 0.005) -> jnp.ndarray:
  """One random motion kernel: a Boracchi–Foi trajectory integrated over an exposure fraction.

  Args:
    key: `jax.random` key; the trajectory depends only on it, not on `exposure`.
    size: odd side of the kernel.
    exposure: fraction T of the trajectory; None draws T ~ U[exposure_range].
    exposure_range: (min, max) for the drawn exposure, within (0, 1].
    canvas: the reference's trajectory canvas; only checked (the path is re-centred, so the canvas
      position never reaches the kernel).
    samples, max_length, anxiety: trajectory parameters, see `motion_trajectory`.

  Returns:
    (size, size) float32, sums to 1, centre of mass on the middle pixel.
  """
  _check_motion_args(size, canvas, samples, max_length)
  k_path, k_exposure = jax.random.split(key)
  if exposure is None:
    lo, hi = _check_range('exposure_range', exposure_range, lowest=1e-6, highest=1.0)
    exposure = jax.random.uniform(k_exposure, (), minval=lo, maxval=hi)
  path = motion_trajectory(k_path, samples, max_length, anxiety)
  return trajectory_kernel(path, exposure, size)


def sample_motion_kernels(key: jax.Array, batch: int, size: int = 23, *,
                          exposure_range: tuple[float, float] = (0.15, 0.3), canvas: int = 64,
                          samples: int = 2000, max_length: float = 60.0,
                          anxiety: float = 0.005) -> jnp.ndarray:
  """Fresh motion kernels, kernel i from `motion_kernel(jax.random.split(key, batch)[i])`."""
  make = functools.partial(motion_kernel, size=size, exposure_range=exposure_range, canvas=canvas,
                           samples=samples, max_length=max_length, anxiety=anxiety)
  return jax.vmap(make)(jax.random.split(key, batch))


_MOTION_STATIC = ('size', 'exposure_range', 'canvas', 'samples', 'max_length', 'anxiety')


@functools.partial(jax.jit, static_argnames=_MOTION_STATIC + ('chunk',))
def _motion_kernels_in_chunks(keys, *, chunk, **motion_args):
  return lax.map(functools.partial(motion_kernel, **motion_args), keys, batch_size=chunk)


def motion_kernel_bank(seed: int, n: int = 500, size: int = 23, *,
                       exposure_range: tuple[float, float] = (0.15, 0.3), canvas: int = 64,
                       samples: int = 2000, max_length: float = 60.0, anxiety: float = 0.005,
                       chunk: int = 100) -> np.ndarray:
  """The paper's fixed bank of motion kernels, kernel i from `motion_kernel(split(key(seed), n)[i])`.

  Built on the default device, `chunk` kernels at a time to bound memory. Returns (n, size, size)
  float32 numpy. The bank is a deterministic function of its arguments on a given platform; the chunk
  size and the accelerator change float round-off (~1e-8), so save it (`save_kernel_bank`) to pin it.
  """
  if n < 1:
    raise ValueError(f'n must be >= 1, got {n}.')
  _check_motion_args(size, canvas, samples, max_length)
  chunk = max(1, min(chunk, n))
  # Also called while `sample_kernels` is being traced by jit: compute now, do not stage into the trace.
  with jax.ensure_compile_time_eval():
    keys = jax.random.split(jax.random.key(seed), n)
    # Whole chunks only (padded with repeated keys): a ragged last chunk would compile a second time.
    keys = jnp.concatenate([keys, keys[:(-n) % chunk]])
    bank = _motion_kernels_in_chunks(
        keys, chunk=chunk, size=size, exposure_range=tuple(exposure_range), canvas=canvas,
        samples=samples, max_length=max_length, anxiety=anxiety)
  return np.asarray(bank[:n], dtype=np.float32)


def save_kernel_bank(path: str | os.PathLike, bank: np.ndarray) -> None:
  """Saves a (n, k, k) kernel bank as float32 `.npy` (creates parent folders)."""
  path = pathlib.Path(path)
  if path.suffix != '.npy':
    raise ValueError(f'{path}: a kernel bank is saved as .npy; give a path ending in .npy.')
  bank = np.asarray(bank, dtype=np.float32)
  _check_bank(bank, str(path))
  path.parent.mkdir(parents=True, exist_ok=True)
  np.save(path, bank)


def load_kernel_bank(path: str | os.PathLike) -> np.ndarray:
  """Loads a `.npy` kernel bank and checks it: (n, k, k) with odd k, finite, ≥ 0, each summing to 1."""
  try:
    bank = np.load(path, allow_pickle=False)
  except (OSError, ValueError) as e:
    raise ValueError(f'{path}: cannot read a .npy kernel bank ({e}).') from e
  if not np.issubdtype(bank.dtype, np.floating):
    raise ValueError(f'{path}: kernel bank must hold floats, got dtype {bank.dtype}.')
  bank = bank.astype(np.float32)
  _check_bank(bank, str(path))
  return bank


def _check_bank(bank: np.ndarray, name: str) -> None:
  if bank.ndim != 3 or bank.shape[0] < 1:
    raise ValueError(f'{name}: kernel bank must have shape (n, k, k) with n >= 1, got {bank.shape}.')
  try:
    validate_kernel(bank)
  except ValueError as e:
    raise ValueError(f'{name}: {e}') from e
  sums = bank.sum(axis=(1, 2))
  worst = int(np.argmax(np.abs(sums - 1)))
  if abs(sums[worst] - 1) > _BANK_SUM_ATOL:
    raise ValueError(f'{name}: kernel {worst} sums to {sums[worst]:.6f}, not 1; normalise the bank.')


# ----------------------------------------------------------------------------------------------------
# Shared helpers.


def resize_canvas(kernels: jnp.ndarray, size: int) -> jnp.ndarray:
  """Zero-pads or centre-crops the last two (odd, square) axes to `size` without moving the centre.

  A crop renormalises each kernel to sum 1, since it may cut mass; a pad keeps values unchanged.
  """
  _check_odd_size(size)
  if kernels.ndim < 2 or kernels.shape[-2] != kernels.shape[-1] or kernels.shape[-1] % 2 == 0:
    raise ValueError(f'kernels must end in two equal odd axes (..., k, k), got shape {kernels.shape}.')
  k = kernels.shape[-1]
  if size == k:
    return kernels
  if size > k:
    pad = (size - k) // 2
    return jnp.pad(kernels, [(0, 0)] * (kernels.ndim - 2) + [(pad, pad), (pad, pad)])
  cut = (k - size) // 2
  return _normalise(kernels[..., cut:cut + size, cut:cut + size])


def widen(kernels: jnp.ndarray, sigma: jnp.ndarray) -> jnp.ndarray:
  """Each kernel (B, k, k) convolved with an isotropic Gaussian of its own σ (B,) in pixels, on the same
  canvas (mass pushed past the edge is dropped and the rest renormalised). σ = 0 returns the kernel
  unchanged. The told kernel of a restorer trained to tolerate estimates wider than the truth
  (restorers/usrnet.py, restorer.kernel_error_*)."""
  if kernels.ndim != 3 or kernels.shape[1] != kernels.shape[2] or kernels.shape[1] % 2 == 0:
    raise ValueError(f'kernels must have shape (batch, k, k) with k odd, got {kernels.shape}.')
  size = kernels.shape[-1]
  x, y = _centred_grid(size)
  # σ → 0 is a delta on the integer grid: exp(−0.5·(1/σ)²) underflows to 0 off the centre.
  s = jnp.maximum(jnp.asarray(sigma, jnp.float32), 1e-3)[:, None, None]
  blur = _normalise(jnp.exp(-0.5 * (x ** 2 + y ** 2)[None] / s ** 2))
  conv = jax.vmap(lambda k, g: signal.convolve2d(k, g, mode='same'))
  return jnp.where(s > 1e-3, _normalise(conv(kernels, blur)), kernels)


def validate_kernel(kernel: Any) -> None:
  """Raises ValueError saying what is wrong unless `kernel` is a usable (k, k) or (B, k, k) kernel.

  Usable: square with odd side k, finite, non-negative, positive sum (per kernel).
  """
  kernel = np.asarray(kernel)
  if kernel.ndim not in (2, 3):
    raise ValueError(f'kernel must have shape (k, k) or (B, k, k), got {kernel.shape}.')
  height, width = kernel.shape[-2:]
  if height != width:
    raise ValueError(f'kernel must be square, got {height}×{width}; pad it to a square with zeros.')
  if height % 2 == 0:
    raise ValueError(f'kernel side must be odd so it has a middle pixel, got {height}; pad or crop it '
                     'by one (resize_canvas works between odd sizes).')
  if not np.all(np.isfinite(kernel)):
    raise ValueError('kernel contains NaN or inf values.')
  if np.any(kernel < 0):
    raise ValueError(f'kernel has negative values (min {kernel.min():.3g}); blur kernels must be >= 0.')
  sums = kernel.reshape(-1, height * width).sum(axis=1)
  if np.any(sums <= 0):
    raise ValueError('kernel sums to 0 (all zeros); a blur kernel needs positive mass.')


@functools.lru_cache(maxsize=4)
def _bank_from_seed(seed, n, size, exposure_range, canvas, samples, max_length, anxiety) -> np.ndarray:
  bank = motion_kernel_bank(seed, n, size, exposure_range=exposure_range, canvas=canvas,
                            samples=samples, max_length=max_length, anxiety=anxiety)
  bank.flags.writeable = False
  return bank


@functools.lru_cache(maxsize=4)
def _bank_from_file(path: str, modified_ns: int) -> np.ndarray:
  del modified_ns  # Only part of the cache key: an overwritten file is read again.
  bank = load_kernel_bank(path)
  bank.flags.writeable = False
  return bank


def check_motion_bank_fields(config: Any) -> None:
  """Raises ValueError for a motion-bank field of a `degradation` config that would have no effect.

  motion_bank_size 0 draws fresh kernels, so it reads neither motion_bank_seed nor motion_bank_path;
  a bank read from motion_bank_path is not built, so it does not read motion_bank_seed.
  """
  if config.family not in ('motion', MIXED):
    return
  seed, path = config.motion_bank_seed, config.motion_bank_path
  set_fields = [f'{name}={config[name]!r}' for name, default in MOTION_BANK_DEFAULTS.items()
                if config[name] != default]
  if config.motion_bank_size <= 0 and set_fields:
    raise ValueError(f'degradation.{" and degradation.".join(set_fields)} has no effect with '
                     'degradation.motion_bank_size=0 (fresh kernels, no bank): set '
                     '--config.degradation.motion_bank_size to the bank size, or leave it unset.')
  if path and seed != MOTION_BANK_DEFAULTS['motion_bank_seed']:
    raise ValueError(f'degradation.motion_bank_seed={seed!r} has no effect with degradation.motion_bank_path='
                     f'{path!r} (the bank is read from the file, not built): leave one of them unset.')
  changed = [name for name, default in MOTION_TRAJECTORY_DEFAULTS.items()
             if np.ravel(config[name]).tolist() != np.ravel(default).tolist()]
  if path and changed:
    raise ValueError(
        f'degradation.{" and degradation.".join(f"{n}={config[n]!r}" for n in changed)} has no effect with '
        f'degradation.motion_bank_path={path!r}: the bank\'s kernels are read from the file, not drawn from '
        'trajectories (the :smoke preset shortens motion_samples). Set '
        + ' '.join(f'--config.degradation.{n}={MOTION_TRAJECTORY_DEFAULTS[n]!r}'.replace(' ', '') for n in changed)
        + ', or leave motion_bank_path unset.')


def _bank_file_mtime(path: str) -> int:
  """The bank file's modification time (ns), part of the keys of what is cached from it."""
  try:
    return os.stat(path).st_mtime_ns
  except OSError as e:
    raise ValueError(f'{path}: cannot read the motion kernel bank ({e}).') from e


def motion_bank(config: Any) -> np.ndarray:
  """The motion bank a `degradation` config asks for: loaded from motion_bank_path or built from
  motion_bank_seed, cached in the process so repeated calls (and jit traces) do not rebuild it."""
  check_motion_bank_fields(config)
  if config.motion_bank_path:
    path = os.fspath(config.motion_bank_path)
    bank = _bank_from_file(path, _bank_file_mtime(path))
    if bank.shape[1:] != (config.kernel_size,) * 2 or bank.shape[0] != config.motion_bank_size:
      raise ValueError(
          f'{path}: bank holds {bank.shape[0]} kernels of {bank.shape[1]}×{bank.shape[2]} but the config '
          f'asks for motion_bank_size={config.motion_bank_size}, kernel_size={config.kernel_size}; '
          'make them agree.')
    return bank
  return _bank_from_seed(int(config.motion_bank_seed), int(config.motion_bank_size),
                         int(config.kernel_size), tuple(float(v) for v in config.exposure_range),
                         int(config.motion_canvas), int(config.motion_samples),
                         float(config.motion_max_length), float(config.motion_anxiety))


def _sample_family(key: jax.Array, batch: int, config: Any, family: str) -> jnp.ndarray:
  size = config.kernel_size
  if family == 'gaussian':
    # Configs saved before sigma_prior / isotropic_prob existed (bundles, test-set manifests) drew σ
    # uniformly and independently.
    return sample_gaussian_kernels(key, batch, size, config.sigma_range,
                                   config.get('sigma_prior', 'uniform'), float(config.get('isotropic_prob', 0.0)))
  if family == 'disk':
    return sample_disk_kernels(key, batch, size, config.radius_range)
  check_motion_bank_fields(config)
  if config.motion_bank_size > 0:
    bank = jnp.asarray(motion_bank(config))
    return bank[jax.random.randint(key, (batch,), 0, bank.shape[0])]
  return sample_motion_kernels(
      key, batch, size, exposure_range=config.exposure_range, canvas=config.motion_canvas,
      samples=config.motion_samples, max_length=config.motion_max_length,
      anxiety=config.motion_anxiety)


def sample_kernels(key: jax.Array, batch: int, config: Any) -> jnp.ndarray:
  """Draws `batch` kernels of the family in a `degradation` config; (batch, k, k) float32.

  Motion kernels come uniformly from the fixed bank when config.motion_bank_size > 0, otherwise they
  are generated fresh. Family 'mixed' draws a batch of each family and keeps, per image, the one of a
  uniformly chosen family. To jit, bind the static arguments first:
  `jax.jit(functools.partial(sample_kernels, batch=16, config=config))(key)`.
  """
  return sample_kernels_and_families(key, batch, config)[0]


def sample_kernels_and_families(key: jax.Array, batch: int, config: Any) -> tuple[jnp.ndarray, jnp.ndarray]:
  """`sample_kernels`' kernels (the same draws) and, per image, the index in FAMILIES of the family
  each was drawn from (batch,) int32."""
  if batch < 1:
    raise ValueError(f'batch must be >= 1, got {batch}.')
  family = config.family
  if family in FAMILIES:
    return _sample_family(key, batch, config, family), jnp.full((batch,), FAMILIES.index(family), jnp.int32)
  if family == MIXED:
    choice_key, *family_keys = jax.random.split(key, len(FAMILIES) + 1)
    draws = jnp.stack([_sample_family(k, batch, config, f) for k, f in zip(family_keys, FAMILIES)])
    choice = jax.random.randint(choice_key, (batch,), 0, len(FAMILIES))
    return draws[choice, jnp.arange(batch)], choice.astype(jnp.int32)
  raise ValueError(f'unknown kernel family {family!r}; choose one of {FAMILY_CHOICES}.')


def members(family: str) -> tuple[str, ...]:
  """The families a config family draws from: all of FAMILIES for 'mixed', else the family itself."""
  if family not in FAMILY_CHOICES:
    raise ValueError(f'unknown kernel family {family!r}; choose one of {FAMILY_CHOICES}.')
  return FAMILIES if family == MIXED else (family,)


def flip_invariant(family: str) -> bool:
  """True for families whose losses and metrics must ignore 180° rotations (see `_NOT_POINT_SYMMETRIC`)."""
  if family not in FAMILY_CHOICES:
    raise ValueError(f'unknown kernel family {family!r}; choose one of {FAMILY_CHOICES}.')
  return family in _NOT_POINT_SYMMETRIC


def sample_in_chunks(config: Any, n: int, seed: int = 0, chunk: int = 1000):
  """Yields n kernels of the config's family as numpy chunks of at most `chunk` (seeded, deterministic).

  Chunk j is `sample_kernels(fold_in(key(seed), j·chunk), ...)`: one compiled sampler per chunk size.
  """
  if n < 1 or chunk < 1:
    raise ValueError(f'n and chunk must be >= 1, got n={n}, chunk={chunk}.')
  key = jax.random.key(seed)
  draws = {}  # One compiled sampler per chunk size (at most two).
  for start in range(0, n, chunk):
    batch = min(chunk, n - start)
    if batch not in draws:
      draws[batch] = jax.jit(functools.partial(sample_kernels, batch=batch, config=config))
    yield np.asarray(draws[batch](jax.random.fold_in(key, start)))


def mean_kernel(config: Any, n: int = 10_000, seed: int = 0, chunk: int = 1000) -> np.ndarray:
  """Mean kernel of the config's family: the kernel-unaware baseline estimate.

  For motion drawn from a bank it is the exact bank mean (the draws are uniform over the bank);
  otherwise the mean of n kernels sampled from `seed`, in chunks of `chunk`. Returns (k, k) float32.
  Sampled means are kept for the process (a pure function of the config and the arguments; a bank file
  that changes is read again): training's evaluations, evaluate.py and s2k-sr ask for the same one many
  times, and 10000 mixed-family kernels take 1.5 s on 2 CPU cores.
  """
  if config.family == 'motion' and config.motion_bank_size > 0:
    return motion_bank(config).mean(axis=0, dtype=np.float64).astype(np.float32)
  bank_mtime = None
  if config.family == MIXED and config.motion_bank_size > 0 and config.motion_bank_path:
    bank_mtime = _bank_file_mtime(os.fspath(config.motion_bank_path))
  frozen = ml_collections.FrozenConfigDict(config)
  return _sampled_mean_kernel(frozen, int(n), int(seed), int(chunk), bank_mtime).copy()


@functools.lru_cache(maxsize=16)
def _sampled_mean_kernel(config: Any, n: int, seed: int, chunk: int, bank_mtime: int | None) -> np.ndarray:
  del bank_mtime  # Only part of the cache key: a rewritten bank file is read again.
  total = np.zeros((config.kernel_size,) * 2, np.float64)
  for part in sample_in_chunks(config, n, seed, chunk):
    total += part.astype(np.float64).sum(axis=0)
  return (total / n).astype(np.float32)
