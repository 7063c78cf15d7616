"""SFTMD: the non-blind restorer S2K plugs its kernel into (paper §3.4; IKC, Gu et al., CVPR 2019).

Spatial Feature Transform for Multiple Degradations. The kernel code (PCA projection of the kernel, plus
an optional noise entry; see `s2k_jax/pca.py`) is stretched to a constant (h, w, code_len) map and
concatenated to the features at every SFT layer, which predicts a per-pixel scale γ = sigmoid(·) and
shift β from it: SFT(x) = x ⊙ γ + β. Layout, layer for layer, follows `SFTMD` in
`shared/bench/torch_reference.py` (IKC's architecture):

    head: conv3×3(3→nf) → LReLU(0.2) → conv3×3 → LReLU(0.2) → conv3×3
    16 × [relu(SFT) → conv3×3 → relu(SFT) → conv3×3, + input]
    global skip (+ head output) → SFT → conv3×3
    upsampler: ×2/×3 one stage, ×4 two ×2 stages, each conv3×3(nf→nf·r²) → pixel shuffle → LReLU(0.2)
    conv9×9(nf→3), clipped to [0, 1] at inference

Each SFT layer has two branches conv3×3(nf+code→32) → LReLU(0.2) → conv3×3(32→nf), one for γ and one for
β. With nf = 64 and code length 10 the network has 4,086,979 / 4,271,619 / 4,234,691 parameters at
×2 / ×3 / ×4, exactly as the PyTorch reference.

Porting PyTorch weights: a `Conv2d` weight (out, in, kh, kw) is our kernel transposed to (kh, kw, in, out);
`pixel_shuffle` uses PyTorch's channel order and the code map is concatenated after the features, as
`torch.cat([x, code_map], 1)`, so no channel permutation is needed anywhere.

Initialisation is PyTorch's `Conv2d` default, which IKC keeps: weight and bias ~ U(±1/√fan_in),
fan_in = in_channels·kh·kw (kaiming_uniform with a = √5).
"""
import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from s2k_jax.degradation import SCALES
from s2k_jax.models.layers import DIMENSION_NUMBERS
SFT_HIDDEN = 32  # Width of the SFT branches in IKC, independent of `features`.


def pixel_shuffle(x: jax.Array, r: int) -> jax.Array:
  """PyTorch `PixelShuffle(r)` on NHWC: (B, H, W, C·r²) → (B, H·r, W·r, C).

  In NCHW PyTorch sets out[b, c, h·r + i, w·r + j] = in[b, c·r² + i·r + j, h, w]; here the same with the
  channel axis last: out[b, h·r + i, w·r + j, c] = in[b, h, w, c·r² + i·r + j].
  """
  b, h, w, channels = x.shape
  if channels % (r * r):
    raise ValueError(f'pixel_shuffle needs channels divisible by r² = {r * r}, got {channels}.')
  x = x.reshape(b, h, w, channels // (r * r), r, r)  # (..., c, i, j)
  x = x.transpose(0, 1, 4, 2, 5, 3)                  # (b, h, i, w, j, c)
  return x.reshape(b, h * r, w * r, channels // (r * r))


def _torch_uniform(fan_in: int):
  """U(±1/√fan_in): PyTorch's Conv2d default for weights and biases."""
  bound = 1.0 / math.sqrt(fan_in)

  def init(key: jax.Array, shape: tuple[int, ...], dtype: Any = jnp.float32) -> jax.Array:
    # Drawn flat: jax 0.10's partitionable threefry compiles each distinct 4-D draw for seconds on CPU.
    flat = jax.random.uniform(key, (math.prod(shape),), dtype, -bound, bound)
    return flat.reshape(shape)

  return init


def conv(x: jax.Array, features: int, name: str, kernel_size: int = 3,
         dtype: Any = jnp.float32) -> jax.Array:
  """PyTorch `Conv2d(in, features, k, stride 1, padding k // 2)` with PyTorch's default init, on NHWC x.

  Call inside a compact method: the layer (params `kernel` (k, k, in, features) and `bias`) is a child
  of the calling module under `name`.
  """
  init = _torch_uniform(x.shape[-1] * kernel_size ** 2)
  layer = nn.Conv(features, (kernel_size, kernel_size), padding='SAME', dtype=dtype, kernel_init=init,
                  bias_init=init, name=name)
  return layer(x)


def _conv_same(x: jax.Array, kernel: jax.Array) -> jax.Array:
  return jax.lax.conv_general_dilated(x, kernel, (1, 1), 'SAME', dimension_numbers=DIMENSION_NUMBERS)


@jax.custom_vjp
def conv_same_im2col_grad(x: jax.Array, kernel: jax.Array) -> jax.Array:
  """Stride-1 'SAME' conv (odd k×k kernel) whose kernel gradient is one im2col matrix product.

  XLA:CPU computes the kernel gradient of a wide conv (64 → 256 channels at 128², the ×4 upsampler)
  as a convolution with a 128×128 "kernel" at ~30 GFLOP/s, 1.2 s per step at batch 8; the windows
  times dy as a matrix product is the same sum in another order, at ~2.2× the speed. Values and the
  input gradient are XLA's own.
  """
  return _conv_same(x, kernel)


def _conv_same_fwd(x, kernel):
  return _conv_same(x, kernel), (x, kernel)


def _conv_same_bwd(residuals, dy):
  x, kernel = residuals
  k = kernel.shape[0]
  _, x_vjp = jax.vjp(lambda x: _conv_same(x, kernel), x)
  (dx,) = x_vjp(dy)
  p = k // 2
  h, w = x.shape[1:3]
  padded = jnp.pad(x, ((0, 0), (p, p), (p, p), (0, 0)))
  # (B, h, w, k·k·C) windows in HWIO (i, j, c) order.
  windows = jnp.concatenate([padded[:, i:i + h, j:j + w] for i in range(k) for j in range(k)], axis=-1)
  d_kernel = jnp.einsum('bhwk,bhwd->bkd', windows, dy).sum(0)
  return dx, d_kernel.reshape(kernel.shape)


conv_same_im2col_grad.defvjp(_conv_same_fwd, _conv_same_bwd)


class ConvParams(nn.Module):
  """The `kernel` (k, k, in, out) and `bias` of `conv`, same names, init and init order, unapplied."""
  in_features: int
  features: int
  kernel_size: int = 3

  @nn.compact
  def __call__(self) -> tuple[jax.Array, jax.Array]:
    init = _torch_uniform(self.in_features * self.kernel_size ** 2)
    kernel = self.param('kernel', init, (self.kernel_size, self.kernel_size, self.in_features,
                                         self.features), jnp.float32)
    return kernel, self.param('bias', init, (self.features,), jnp.float32)


def constant_map_conv3x3(code: jax.Array, kernel: jax.Array, height: int, width: int) -> jax.Array:
  """conv3×3 'SAME' (zero padding) of the constant map code[b] over an (height, width) image, exactly.

  Output pixel (y, x) sums code·kernel[i, j] over the taps (i, j) that land inside the image, so it
  depends only on which borders the pixel touches: row taps valid(y, i) times column taps valid(x, j).
  Costs O(B·h·w·out) instead of a 3×3 conv over code_len channels.
  """
  per_tap = jnp.einsum('bc,ijco->bijo', code, kernel)                # (B, 3, 3, out)

  def valid(n):  # (n, 3): tap i of output position t reads t + i - 1, inside [0, n).
    t = jnp.arange(n)[:, None] + jnp.arange(3)[None, :] - 1
    return ((t >= 0) & (t < n)).astype(code.dtype)

  columns = jnp.einsum('xj,bijo->bixo', valid(width), per_tap)      # (B, 3, w, out)
  return jnp.einsum('yi,bixo->byxo', valid(height), columns)         # (B, h, w, out)


class SFTLayer(nn.Module):
  """x ⊙ sigmoid(mul(h)) + add(h), h = concat(x, code_map); each branch conv → LReLU(0.2) → conv.

  Computed without the concat and with both branches' first convs as one: conv(concat(x, code_map), W)
  = conv(x, W_x) + conv(code_map, W_c), and the second term of a constant map is a border pattern
  (`constant_map_conv3x3`); mul_conv0 and add_conv0 read the same input, so they run as one conv with
  2·32 outputs. Parameters are IKC's: {mul,add}_conv0 (3, 3, nf + code_len, 32), {mul,add}_conv1.
  """
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, code: jax.Array) -> jax.Array:
    """x: (B, h, w, nf) features; code: (B, code_len), the map's constant value."""
    features, code_len = x.shape[-1], code.shape[-1]
    first = [ConvParams(features + code_len, SFT_HIDDEN, name=f'{name}_conv0')() for name in ('mul', 'add')]
    kernel = jnp.concatenate([k for k, _ in first], axis=-1).astype(self.dtype)
    bias = jnp.concatenate([b for _, b in first]).astype(self.dtype)
    y = _conv_same(x, kernel[:, :, :features])
    y = y + constant_map_conv3x3(code.astype(self.dtype), kernel[:, :, features:], *x.shape[1:3]) + bias
    y = nn.leaky_relu(y, 0.2)
    mul = conv(y[..., :SFT_HIDDEN], features, 'mul_conv1', dtype=self.dtype)
    add = conv(y[..., SFT_HIDDEN:], features, 'add_conv1', dtype=self.dtype)
    return x * nn.sigmoid(mul) + add


class SFTResidualBlock(nn.Module):
  """x + conv2(relu(sft2(conv1(relu(sft1(x)))))): IKC's SFT residual block."""
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, code: jax.Array) -> jax.Array:
    features = x.shape[-1]
    h = nn.relu(SFTLayer(self.dtype, name='sft1')(x, code))
    h = conv(h, features, 'conv1', dtype=self.dtype)
    h = nn.relu(SFTLayer(self.dtype, name='sft2')(h, code))
    return x + conv(h, features, 'conv2', dtype=self.dtype)


def upsample_factors(scale: int) -> tuple[int, ...]:
  """Pixel-shuffle stages: ×4 as two ×2 stages (IKC), ×2 and ×3 as one."""
  if scale not in SCALES:
    raise ValueError(f'SFTMD supports scales {SCALES}, got {scale!r}.')
  return (2, 2) if scale == 4 else (scale,)


def receptive_field_radius(scale: int, num_blocks: int) -> int:
  """LR pixels on each side that one SFTMD output pixel depends on (exact, from the layer layout above).

  Head: 3 convs 3×3; each block: two SFT layers (two 3×3 convs each) and two 3×3 convs; the final SFT
  layer and conv; one 3×3 conv per upsampling stage at its input resolution; the 9×9 output conv at
  HR resolution. Tiled inference with this overlap reproduces the untiled output.
  """
  radius = 3 + 6 * int(num_blocks) + 3
  resolution = 1
  for factor in upsample_factors(int(scale)):
    radius += 1 / resolution
    resolution *= factor
  return math.ceil(radius + 4 / resolution)


class SFTMD(nn.Module):
  """IKC's SFTMD restorer conditioned on a kernel code.

  Attributes:
    scale: upscaling factor, 2, 3 or 4.
    features: channel width nf (64 in IKC).
    num_blocks: number of SFT residual blocks (16 in IKC).
    code_len: length of the code (PCA components, plus 1 when a noise entry is appended).
    dtype: computation dtype (parameters stay float32); the output is float32 either way.
  """
  scale: int
  features: int = 64
  num_blocks: int = 16
  code_len: int = 10
  dtype: Any = jnp.float32

  def __post_init__(self):
    upsample_factors(self.scale)
    if self.features < 1 or self.num_blocks < 0 or self.code_len < 1:
      raise ValueError(f'SFTMD needs features >= 1, num_blocks >= 0 and code_len >= 1, got '
                       f'{self.features}, {self.num_blocks}, {self.code_len}.')
    super().__post_init__()

  @nn.compact
  def __call__(self, lr: jax.Array, code: jax.Array, clip: bool = True) -> jax.Array:
    """Super-resolves `lr` for the blur described by `code`.

    Args:
      lr: (B, h, w, 3) LR images in [0, 1], any h and w.
      code: (B, code_len) kernel codes from `pca.encode`.
      clip: clip the output to [0, 1] (inference, as IKC). Training takes the raw output (False): a loss
        on clipped values has no restoring force where the target sits on a bound (black sky, blown
        highlights), and the raw output there drifted until training collapsed (docs/conventions.md).

    Returns:
      (B, h·scale, w·scale, 3) float32, in [0, 1] when `clip`.
    """
    if lr.ndim != 4 or lr.shape[-1] != 3:
      raise ValueError(f'SFTMD expects LR images of shape (B, h, w, 3), got {lr.shape}.')
    if code.shape != (lr.shape[0], self.code_len):
      raise ValueError(f'code must have shape (B, code_len) = ({lr.shape[0]}, {self.code_len}), got '
                       f'{code.shape}; code_len counts the noise entry when there is one.')
    nf, dtype = self.features, self.dtype

    f = conv(lr.astype(dtype), nf, 'head_conv0', dtype=dtype)
    f = conv(nn.leaky_relu(f, 0.2), nf, 'head_conv1', dtype=dtype)
    f0 = conv(nn.leaky_relu(f, 0.2), nf, 'head_conv2', dtype=dtype)
    f = f0
    for i in range(self.num_blocks):
      f = SFTResidualBlock(dtype, name=f'block{i}')(f, code)
    f = SFTLayer(dtype, name='sft')(f + f0, code)
    f = conv(f, nf, 'conv', dtype=dtype)
    for i, r in enumerate(upsample_factors(self.scale)):
      kernel, bias = ConvParams(nf, nf * r * r, name=f'up{i}_conv')()
      f = conv_same_im2col_grad(f, kernel.astype(dtype)) + bias.astype(dtype)
      f = nn.leaky_relu(pixel_shuffle(f, r), 0.2)
    out = conv(f, 3, 'out_conv', kernel_size=9, dtype=dtype).astype(jnp.float32)
    return jnp.clip(out, 0.0, 1.0) if clip else out


def make_sftmd(scale: int, **kwargs: Any) -> SFTMD:
  """`SFTMD(scale, **kwargs)`; e.g. `make_sftmd(4, code_len=pca.code_length(basis, with_noise=True))`."""
  return SFTMD(scale=scale, **kwargs)
