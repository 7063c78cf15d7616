"""S2K training objectives: generator loss (paper Eq. 11) and discriminator loss (Eq. 12).

  ℓ_G = λ1·‖k − G(s)‖₁ + λ2·[D(s; G(s)) − 1]² + λ3·TV(G(s))
  ℓ_D = D(s; G(s))² + [D(s; k) − 1]²

Beyond the paper, the L1 term can be a quantile (pinball) loss: `train.kernel_quantile` τ (0.5, the paper's
L1, by default; docs/conventions.md, "Kernel quantile"), or a squared error (`train.kernel_loss='l2'`:
minimised by the mean map where the spectrum leaves the kernel uncertain, the L1 by the median;
docs/conventions.md, "Kernel loss").

Everything acts on kernel *maps* (the paper's "Kernel↑", see `spectrum.kernel_to_map`), NHWC with one
channel. For motion kernels the spectrum cannot tell k from its 180° rotation, so the L1 term can take
the smaller of the two distances (`flip_invariant=True`); see docs/conventions.md.
"""
import jax.numpy as jnp

from s2k_jax import spectrum


def l1_map_loss(pred: jnp.ndarray, target: jnp.ndarray, flip_invariant: bool = False) -> jnp.ndarray:
  """Mean absolute error between kernel maps (B, S, S, 1); per-sample min over target flips if asked.

  The map of a 180°-rotated kernel is the map flipped on both spatial axes, because `kernel_to_map`
  puts the kernel centre at the map centre (tested in tests/test_losses.py).
  """
  return jnp.mean(spectrum.kernel_distance(pred, target, flip_invariant, axes=(1, 2)))


def l2_map_loss(pred: jnp.ndarray, target: jnp.ndarray, flip_invariant: bool = False) -> jnp.ndarray:
  """Mean squared error between kernel maps (B, S, S, 1); per-sample min over target flips if asked."""
  return jnp.mean(spectrum.kernel_distance(pred, target, flip_invariant, axes=(1, 2), squared=True))


def total_variation(x: jnp.ndarray) -> jnp.ndarray:
  """Anisotropic TV of NHWC maps: mean |∂x| + mean |∂y| (the ℓ_reg smoothing prior of Eq. 11)."""
  dy = jnp.abs(x[:, 1:, :, :] - x[:, :-1, :, :])
  dx = jnp.abs(x[:, :, 1:, :] - x[:, :, :-1, :])
  return jnp.mean(dy) + jnp.mean(dx)


def lsgan_generator_loss(fake_logits: jnp.ndarray) -> jnp.ndarray:
  """Least-squares adversarial term of Eq. 11: patches of D(s; G(s)) pushed towards 1."""
  return jnp.mean((fake_logits - 1.0) ** 2)


def lsgan_discriminator_loss(real_logits: jnp.ndarray, fake_logits: jnp.ndarray) -> jnp.ndarray:
  """Eq. 12: fake patches towards 0, real patches towards 1 (no ½ factor, as written in the paper)."""
  return jnp.mean(fake_logits ** 2) + jnp.mean((real_logits - 1.0) ** 2)


def quantile_map_loss(pred: jnp.ndarray, target: jnp.ndarray, quantile: float,
                      flip_invariant: bool = False) -> jnp.ndarray:
  """Twice the mean pinball loss ρ_τ(target − pred) between kernel maps: the L1 of `l1_map_loss` at τ = 0.5.

  Minimised by the per-pixel τ-quantile of the target where the L1 is minimised by the median; τ < 0.5
  charges a map value above the target more than one below it, so where the spectrum leaves the kernel
  uncertain the estimate settles on the narrow side (the map is −1 where the kernel is 0). Computed as
  |r| + (2τ − 1)·r with r = target − pred: the second term's mean is the same for the target and its 180°
  rotation, so the flip-invariant minimum is that of the L1 plus it.
  """
  return _with_quantile_term(l1_map_loss(pred, target, flip_invariant), pred, target, quantile)


def _with_quantile_term(l1: jnp.ndarray, pred: jnp.ndarray, target: jnp.ndarray, quantile: float) -> jnp.ndarray:
  """l1 plus what the pinball loss adds to it, (2τ − 1)·mean(target − pred); l1 itself (no op) at τ = 0.5."""
  if quantile == 0.5:
    return l1
  return l1 + (2.0 * quantile - 1.0) * jnp.mean(target - pred)


KERNEL_LOSSES = ('l1', 'l2')  # the λ1 term: the paper's L1 (at a quantile), or a squared error


def generator_loss(pred, target, fake_logits, weights, flip_invariant=False, quantile=0.5, kernel_loss='l1'):
  """Weighted Eq. 11; `weights` = (λ1, λ2, λ3), the first term at `quantile` (`quantile_map_loss`), or the
  squared error if `kernel_loss` is 'l2' (then `quantile` must be 0.5). Returns (total, dict of the three
  terms; 'l1' is the plain L1 whatever the kernel term, for the logs)."""
  if kernel_loss not in KERNEL_LOSSES:
    raise ValueError(f'kernel_loss must be one of {KERNEL_LOSSES}, got {kernel_loss!r}.')
  if kernel_loss == 'l2' and quantile != 0.5:
    raise ValueError(f'a quantile ({quantile}) has no effect with the squared-error kernel term.')
  l1 = l1_map_loss(pred, target, flip_invariant)
  if kernel_loss == 'l2':
    kernel_term = l2_map_loss(pred, target, flip_invariant)
  else:
    kernel_term = _with_quantile_term(l1, pred, target, quantile)
  adv = lsgan_generator_loss(fake_logits)
  tv = total_variation(pred)
  total = weights[0] * kernel_term + weights[1] * adv + weights[2] * tv
  return total, {'l1': l1, 'adv': adv, 'tv': tv}
