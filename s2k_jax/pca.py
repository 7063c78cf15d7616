"""Kernel codes for the non-blind restorer: PCA projection of blur kernels (paper §3.4).

S2K hands its estimated kernel to IKC's SFTMD (Gu et al., CVPR 2019), which does not read a kernel but a
short code: the kernel flattened to a k²-vector and projected onto L principal directions (L = 10), with
the noise level optionally appended as one more entry (SRMD/IKC). This module fits that basis from a
large seeded sample of the configured kernel family, and encodes and decodes with it.

A basis is a plain dict of float32 numpy arrays, so it saves beside the restorer's parameters in one
orbax checkpoint and is reused unchanged at inference:

    {'components': (k·k, L)  orthonormal columns, most significant first,
     'mean':       (k·k,)    subtracted before projecting; all zeros for an uncentred basis,
     'variance':   (L,)      mean squared code of the fitting sample along each component}

code = (vec(k) − mean) @ components; reconstruction = mean + code @ componentsᵀ.

Centring. IKC fits its matrix on centred kernels but encodes without subtracting the mean, so its codes
are projections onto directions fitted for another problem. We keep fit and encode consistent. The
default is centred (`center=True`: covariance eigenvectors, sample mean stored and subtracted): on
held-out 15×15 Gaussians it reconstructs better than the uncentred basis (2.0% vs 2.2% mean relative
L2 error, worst 5.7% vs 8.3%, L = 10), its codes are zero-mean (the uncentred first entry is a nearly
constant ~0.15 offset) and the zero code is the mean kernel. `center=False` gives IKC's encode rule,
with the basis that is optimal for it (top eigenvectors of E[x xᵀ], Eckart–Young) and a zero mean.
"""
import math
from typing import Any

import jax
from jax import lax
import jax.numpy as jnp
import numpy as np

from s2k_jax import kernels as kernels_lib

# SRMD and IKC append σ·10 (σ on the [0, 1] intensity scale) to the kernel code: σ ≤ 0.06 (15/255) then
# spans [0, 0.6], the same order as the leading kernel codes (~0.1–0.3 for 15×15 Gaussians).
NOISE_CODE_SCALE = 10.0
BASIS_KEYS = ('components', 'mean', 'variance')


def _flatten_kernels(kernels: Any, name: str = 'kernels') -> np.ndarray:
  kernels = np.asarray(kernels)
  if kernels.ndim != 3 or kernels.shape[1] != kernels.shape[2]:
    raise ValueError(f'{name} must have shape (N, k, k), got {kernels.shape}.')
  if not np.all(np.isfinite(kernels)):
    raise ValueError(f'{name} contain NaN or inf values.')
  return kernels.reshape(kernels.shape[0], -1).astype(np.float64)


def _fix_signs(vectors: np.ndarray) -> np.ndarray:
  """Makes each column's largest-magnitude entry positive (eigenvector signs are otherwise arbitrary)."""
  peak = np.argmax(np.abs(vectors), axis=0)
  signs = np.sign(vectors[peak, np.arange(vectors.shape[1])])
  return vectors * np.where(signs == 0, 1.0, signs)


def fit_pca(kernels: Any, n_components: int = 10, center: bool = True) -> dict[str, np.ndarray]:
  """Fits an L-component PCA basis to a sample of kernels.

  Args:
    kernels: (N, k, k) kernels (any float dtype, numpy or jax); N ≥ n_components.
    n_components: L, the code length without the noise entry; 1 ≤ L ≤ k².
    center: True (default) fits the covariance and stores the sample mean; False fits the uncentred
      second moment E[x xᵀ] and stores a zero mean (IKC's encode rule).

  Returns:
    Basis dict (see the module docstring), float32 numpy arrays. Computed in float64; components are
    orthonormal, ordered by decreasing variance, each signed so its largest-magnitude entry is positive.
  """
  x = _flatten_kernels(kernels)
  n, dim = x.shape
  if not isinstance(n_components, (int, np.integer)) or not 1 <= n_components <= dim:
    raise ValueError(f'n_components must be an int in [1, k·k = {dim}] for {int(math.isqrt(dim))}×'
                     f'{int(math.isqrt(dim))} kernels, got {n_components!r}.')
  if n < n_components:
    raise ValueError(f'need at least n_components = {n_components} kernels to fit a basis, got {n}; '
                     'sample more kernels (thousands give a stable basis).')
  mean = x.mean(axis=0) if center else np.zeros(dim)
  centred = x - mean
  second_moment = centred.T @ centred / n
  eigenvalues, eigenvectors = np.linalg.eigh(second_moment)  # Ascending.
  top = np.argsort(eigenvalues)[::-1][:n_components]
  return {
      'components': _fix_signs(eigenvectors[:, top]).astype(np.float32),
      'mean': mean.astype(np.float32),
      'variance': np.maximum(eigenvalues[top], 0.0).astype(np.float32),
  }


def _sample_family(config: Any, n: int, seed: int, chunk: int) -> np.ndarray:
  """n kernels of the config's family drawn from `seed` as training draws them (a motion bank: n
  uniform draws from the bank, as `kernels.sample_kernels`)."""
  return np.concatenate(list(kernels_lib.sample_in_chunks(config, n, seed, chunk)))


def fit_pca_for_config(degradation_config: Any, n: int = 10_000, seed: int = 0,
                       kernel_size: int | None = None, n_components: int = 10, center: bool = True,
                       chunk: int = 1000) -> dict[str, np.ndarray]:
  """Fits the restorer's kernel basis to the family of a `degradation` config section.

  Args:
    degradation_config: `config.degradation` (family, kernel_size, family parameters, motion bank).
    n: kernels to draw (from the motion bank too, uniformly, as training draws them).
    seed: sampling seed; the same seed gives the same basis.
    kernel_size: odd side the basis works at; kernels are zero-padded or centre-cropped to it with
      `kernels.resize_canvas`. None keeps the config's kernel_size.
    n_components, center: see `fit_pca`.
    chunk: kernels sampled per compiled call.

  Returns:
    Basis dict, components of shape (kernel_size², n_components).
  """
  if n < 1 or chunk < 1:  # Checked here too: a motion bank skips the sampler's own check.
    raise ValueError(f'n and chunk must be >= 1, got n={n}, chunk={chunk}.')
  sample = _sample_family(degradation_config, n, seed, chunk)
  if kernel_size is not None:
    sample = np.asarray(kernels_lib.resize_canvas(jnp.asarray(sample), kernel_size))
  return fit_pca(sample, n_components=n_components, center=center)


def check_basis(basis: Any) -> None:
  """Raises ValueError unless `basis` has the keys and consistent shapes of a `fit_pca` basis."""
  if not isinstance(basis, dict) or set(basis) != set(BASIS_KEYS):
    keys = sorted(basis) if isinstance(basis, dict) else type(basis).__name__
    raise ValueError(f'basis must be a dict with keys {BASIS_KEYS} (from fit_pca), got {keys}.')
  components, mean, variance = (basis[k] for k in BASIS_KEYS)
  if components.ndim != 2 or math.isqrt(components.shape[0]) ** 2 != components.shape[0]:
    raise ValueError(f"basis['components'] must be (k·k, L) for a square kernel, got {components.shape}.")
  if mean.shape != components.shape[:1] or variance.shape != components.shape[1:]:
    raise ValueError(f"basis['mean'] {mean.shape} and ['variance'] {variance.shape} do not match "
                     f"['components'] {components.shape}; expected (k·k,) and (L,).")


def basis_kernel_size(basis: dict[str, Any]) -> int:
  """Side k of the kernels a basis encodes."""
  check_basis(basis)
  return math.isqrt(basis['components'].shape[0])


def code_length(basis: dict[str, Any], with_noise: bool = False) -> int:
  """Length of the codes `encode` returns: L, or L + 1 with the noise entry."""
  check_basis(basis)
  return basis['components'].shape[1] + int(with_noise)


def basis_from_dict(tree: Any) -> dict[str, np.ndarray]:
  """A basis restored from a checkpoint (jax or numpy leaves), as checked float32 numpy arrays."""
  if not isinstance(tree, dict):
    raise ValueError(f'basis must be a dict with keys {BASIS_KEYS}, got {type(tree).__name__}.')
  basis = {k: np.asarray(v, np.float32) for k, v in tree.items()}
  check_basis(basis)
  return basis


def encode(kernels: jax.Array, basis: dict[str, Any],
           noise_sigma: jax.Array | float | None = None) -> jax.Array:
  """Kernel codes for SFTMD: (vec(k) − mean) @ components, optionally with σ·NOISE_CODE_SCALE appended.

  Jit-able with the basis as an argument (shapes are static).

  Args:
    kernels: (B, k, k); k must be the basis's kernel size.
    basis: from `fit_pca` / `fit_pca_for_config` / a checkpoint.
    noise_sigma: None for noise-free codes, else per-image noise σ on the [0, 1] scale, shape (B,) or a
      scalar for the whole batch.

  Returns:
    (B, L) float32 codes, or (B, L + 1) with the noise entry last.
  """
  check_basis(basis)
  components = jnp.asarray(basis['components'], jnp.float32)
  dim = components.shape[0]
  if kernels.ndim != 3 or kernels.shape[1] != kernels.shape[2] or kernels.shape[1] ** 2 != dim:
    side = math.isqrt(dim)
    raise ValueError(f'kernels must have shape (B, {side}, {side}) to match the basis, got '
                     f'{kernels.shape}; resize them with kernels.resize_canvas(kernels, {side}).')
  flat = kernels.reshape(kernels.shape[0], dim).astype(jnp.float32) - jnp.asarray(basis['mean'])
  # HIGHEST: GPU/TPU default matmul precision (TF32/bf16) would cost 3 digits of a small code.
  codes = jnp.dot(flat, components, precision=lax.Precision.HIGHEST)
  if noise_sigma is None:
    return codes
  sigma = jnp.asarray(noise_sigma, jnp.float32)
  if sigma.ndim > 1 or (sigma.ndim == 1 and sigma.shape[0] != kernels.shape[0]):
    raise ValueError(f'noise_sigma must be a scalar or shape ({kernels.shape[0]},), got {sigma.shape}.')
  sigma = jnp.broadcast_to(sigma, (kernels.shape[0],))
  return jnp.concatenate([codes, NOISE_CODE_SCALE * sigma[:, None]], axis=1)


def decode(codes: jax.Array, basis: dict[str, Any], ksize: int | None = None) -> jax.Array:
  """Reconstructs kernels from codes: mean + codes @ componentsᵀ (diagnostics; not clipped or normalised).

  Args:
    codes: (B, L) codes without the noise entry (slice `codes[:, :L]` off noisy codes first).
    basis: the basis that encoded them.
    ksize: expected kernel side, checked against the basis; None takes it from the basis.

  Returns:
    (B, k, k) float32.
  """
  side = basis_kernel_size(basis)
  if ksize is not None and ksize != side:
    raise ValueError(f'ksize={ksize} but the basis encodes {side}×{side} kernels.')
  components = jnp.asarray(basis['components'], jnp.float32)
  if codes.ndim != 2 or codes.shape[1] != components.shape[1]:
    raise ValueError(f'codes must have shape (B, {components.shape[1]}) for this basis, got {codes.shape}'
                     '; drop a trailing noise entry first.')
  flat = jnp.dot(codes.astype(jnp.float32), components.T, precision=lax.Precision.HIGHEST)
  return (flat + jnp.asarray(basis['mean'])).reshape(codes.shape[0], side, side)


def restorer_code(kernels: jax.Array, basis: dict[str, Any],
                  noise_sigma: jax.Array | None = None) -> jax.Array:
  """The kernel code a kernel-conditioned restorer reads (SFTMD, §3.4): the one home of its definition.

  Kernels of any odd size are put on the basis' canvas (`kernels.resize_canvas`), encoded, and the code
  divided by the first component's standard deviation (one global factor: distances between codes keep
  their geometry) so its leading entries are O(1) like the features they are concatenated with; raw
  codes are ~0.01 and a fresh SFTMD learned to ignore them (docs/conventions.md). With `noise_sigma`
  (B,), σ·NOISE_CODE_SCALE is appended.
  """
  k = kernels_lib.resize_canvas(kernels, basis_kernel_size(basis))
  codes = encode(k, basis) / jnp.sqrt(basis['variance'][0])
  if noise_sigma is None:
    return codes
  return jnp.concatenate([codes, NOISE_CODE_SCALE * noise_sigma[:, None]], axis=1)
