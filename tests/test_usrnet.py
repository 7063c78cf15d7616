"""models/usrnet.py: the closed-form data step against independent solvers, the network's shapes,
symmetry and borders."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from s2k_jax import degradation
from s2k_jax.models import usrnet


def _circular_correlation(x: np.ndarray, k: np.ndarray) -> np.ndarray:
  """Σ_{u,v} k[u, v] x[i+u-p, j+v-p] with wrap-around, by direct summation. x (B, C, H, W), k (B, q, q)."""
  p = k.shape[-1] // 2
  padded = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)), mode='wrap')
  out = np.zeros_like(x)
  height, width = x.shape[-2:]
  for u in range(k.shape[-1]):
    for v in range(k.shape[-1]):
      out += k[:, None, u, v, None, None] * padded[:, :, u:u + height, v:v + width]
  return out


def _random_problem(seed, batch=2, channels=3, scale=2, h=6, w=5, ksize=5):
  rng = np.random.default_rng(seed)
  k = rng.random((batch, ksize, ksize))
  k /= k.sum(axis=(1, 2), keepdims=True)
  y = rng.random((batch, channels, h, w))
  z = rng.random((batch, channels, scale * h, scale * w))
  return k, y, z


def _operators(k, scale, shape):
  """S·B and its adjoint on (B, C, H, W) numpy arrays, from direct summation (no FFT)."""
  def forward(x):
    return _circular_correlation(x, k)[..., ::scale, ::scale]

  def adjoint(r):
    up = np.zeros(shape)
    up[..., ::scale, ::scale] = r
    # The adjoint of correlation with k is correlation with k rotated by 180°.
    return _circular_correlation(up, k[:, ::-1, ::-1])
  return forward, adjoint


def _conjugate_gradient(matvec, b, iterations=500):
  """Batched CG on (A + αI) x = b, one system per leading index (float64)."""
  x = np.zeros_like(b)
  r = b - matvec(x)
  p = r.copy()
  rs = np.sum(r * r, axis=(1, 2, 3), keepdims=True)
  for _ in range(iterations):
    if rs.max() < 1e-26:
      break
    ap = matvec(p)
    step = rs / np.sum(p * ap, axis=(1, 2, 3), keepdims=True)
    x += step * p
    r -= step * ap
    new = np.sum(r * r, axis=(1, 2, 3), keepdims=True)
    p = r + new / rs * p
    rs = new
  return x


def test_kernel_spectrum_is_circular_cross_correlation():
  rng = np.random.default_rng(0)
  x = rng.random((2, 3, 12, 10))
  k = rng.random((2, 5, 5))
  fb = np.asarray(usrnet.kernel_spectrum(jnp.asarray(k, jnp.float32), 12, 10))
  got = np.real(np.fft.ifft2(fb * np.fft.fft2(x)))
  np.testing.assert_allclose(got, _circular_correlation(x, k), atol=2e-6)


def test_circular_blur_matches_the_degradation_engine_away_from_borders():
  """The data step's forward model is degradation.blur_downsample (reflect borders) in the interior."""
  rng = np.random.default_rng(1)
  hr = rng.random((2, 24, 30, 3)).astype(np.float32)
  k = rng.random((2, 7, 7)).astype(np.float32)
  k /= k.sum(axis=(1, 2), keepdims=True)
  ours = usrnet.degrade_circular(jnp.transpose(jnp.asarray(hr), (0, 3, 1, 2)),
                                 usrnet.kernel_spectrum(jnp.asarray(k), 24, 30), 3)
  engine = degradation.blur_downsample(jnp.asarray(hr), jnp.asarray(k), 3)
  interior = np.s_[:, :, 1:-1, 1:-1]  # LR pixels whose 7×7 footprint stays inside the HR image
  np.testing.assert_allclose(np.asarray(ours)[interior], np.transpose(np.asarray(engine), (0, 3, 1, 2))[interior],
                             atol=2e-6)


@pytest.mark.parametrize('scale', [2, 3, 4])
@pytest.mark.parametrize('alpha', [0.02, 0.5])
def test_data_step_equals_conjugate_gradient(scale, alpha):
  """The closed form solves min ‖y − SBx‖² + α‖x − z‖² exactly: equal to CG on the normal equations."""
  with jax.enable_x64(True):
    k, y, z = _random_problem(scale, scale=scale)
    shape = z.shape
    forward, adjoint = _operators(k, scale, shape)
    alphas = np.array([alpha, 3 * alpha])
    a = alphas[:, None, None, None]
    expected = _conjugate_gradient(lambda v: adjoint(forward(v)) + a * v, adjoint(y) + a * z)
    fb = usrnet.kernel_spectrum(jnp.asarray(k), *shape[-2:])
    fbfy = jnp.conj(fb) * jnp.fft.fft2(usrnet.zero_upsample(jnp.asarray(y), scale))
    got = np.asarray(usrnet.data_step(jnp.asarray(z), fb, fbfy, jnp.asarray(alphas), scale))
  np.testing.assert_allclose(got, expected, atol=1e-9)


@pytest.mark.parametrize('scale', [2, 3, 4])
def test_data_step_reproduces_noiseless_lr_as_alpha_vanishes(scale):
  with jax.enable_x64(True):
    k, y, z = _random_problem(10 + scale, scale=scale)
    forward, _ = _operators(k, scale, z.shape)
    fb = usrnet.kernel_spectrum(jnp.asarray(k), *z.shape[-2:])
    fbfy = jnp.conj(fb) * jnp.fft.fft2(usrnet.zero_upsample(jnp.asarray(y), scale))
    errors = [np.abs(forward(np.asarray(usrnet.data_step(jnp.asarray(z), fb, fbfy, jnp.full((2,), a), scale)))
                     - y).max() for a in (1e-2, 1e-10)]
  assert errors[1] < 1e-5 < errors[0]  # Not by accident: a large α does not reproduce y.


# The 8 symmetries of the square that fix the origin of a circular canvas (i → −i mod N keeps the
# subsampling grid {0, s, 2s, …} in place; i → N−1−i would not).
def _flip(x):
  return jnp.roll(jnp.flip(x, axis=-1), 1, axis=-1)


def _symmetries():
  ident = lambda x: x
  transpose = lambda x: jnp.swapaxes(x, -1, -2)
  flip_rows = lambda x: jnp.swapaxes(_flip(jnp.swapaxes(x, -1, -2)), -1, -2)
  ops = [ident, _flip, flip_rows, lambda x: _flip(flip_rows(x))]
  return ops + [lambda x, op=op: transpose(op(x)) for op in ops]


def _kernel_symmetries():
  """The same symmetries on odd k×k kernels centred at their middle (plain flips and transposes)."""
  ident = lambda k: k
  flip_cols = lambda k: jnp.flip(k, axis=-1)
  flip_rows = lambda k: jnp.flip(k, axis=-2)
  transpose = lambda k: jnp.swapaxes(k, -1, -2)
  ops = [ident, flip_cols, flip_rows, lambda k: flip_cols(flip_rows(k))]
  return ops + [lambda k, op=op: transpose(op(k)) for op in ops]


def test_data_step_is_equivariant_to_the_square_symmetries():
  k, y, z = _random_problem(3, scale=2, h=6, w=6, ksize=5)
  k, y, z = (jnp.asarray(a, jnp.float32) for a in (k, y, z))

  def solve(k, y, z):
    fb = usrnet.kernel_spectrum(k, *z.shape[-2:])
    fbfy = jnp.conj(fb) * jnp.fft.fft2(usrnet.zero_upsample(y, 2))
    return usrnet.data_step(z, fb, fbfy, jnp.array([0.05, 0.2]), 2)

  base = solve(k, y, z)
  for sym, ksym in zip(_symmetries(), _kernel_symmetries()):
    np.testing.assert_allclose(np.asarray(solve(ksym(k), sym(y), sym(z))), np.asarray(sym(base)), atol=2e-5)


def _model(**kwargs):
  model = usrnet.USRNet(**{**dict(iterations=2, features=(4, 8), num_blocks=1, border=4, hyper_features=8),
                           **kwargs})
  params = model.init(jax.random.key(0), jnp.zeros((1, 8, 8, 3)), jnp.full((1, 3, 3), 1 / 9),
                      jnp.zeros((1,)), 2)['params']
  return model, params


@pytest.mark.parametrize('scale', [2, 3, 4])
def test_network_output_shapes_for_any_kernel_size(scale):
  model, params = _model()
  lr = jnp.asarray(np.random.default_rng(0).random((2, 13, 17, 3)), jnp.float32)
  for ksize in (3, 15, 31):
    k = jnp.full((2, ksize, ksize), 1.0 / ksize ** 2)
    sr = jax.jit(model.apply, static_argnums=4)({'params': params}, lr, k, jnp.array([0.0, 0.03]), scale)
    assert sr.shape == (2, 13 * scale, 17 * scale, 3)
    assert float(sr.min()) >= 0 and float(sr.max()) <= 1


def test_untrained_network_is_transpose_equivariant():
  """Zero-initialised prior tail: the network is data steps, reflect padding and crops, which commute
  with a transpose of image and kernel (a flip would move the subsampling grid by s − 1 pixels)."""
  model, params = _model()
  rng = np.random.default_rng(2)
  lr = jnp.asarray(rng.random((1, 12, 16, 3)), jnp.float32)
  k = jnp.asarray(rng.random((1, 7, 7)), jnp.float32)
  k = k / k.sum()
  sigma = jnp.array([0.01])
  sr = model.apply({'params': params}, lr, k, sigma, 3)
  sr_t = model.apply({'params': params}, jnp.swapaxes(lr, 1, 2), jnp.swapaxes(k, 1, 2), sigma, 3)
  np.testing.assert_allclose(np.asarray(sr_t), np.asarray(jnp.swapaxes(sr, 1, 2)), atol=2e-5)


def test_reflect_border_keeps_photo_edges_free_of_ringing():
  """On a smooth image blurred with reflect borders (as real photos are, not circularly), the untrained
  network (data steps only, from the aligned bicubic start) with a border: within 0.05 levels inside and
  14.9 at the outermost 4 pixels (LR-grid vs HR-grid reflection), 4.3 one step further in; without a
  border the circular seam rings into the edges (64 levels, 36 four pixels in)."""
  yy, xx = np.mgrid[0:96, 0:96] / 96.0
  hr = np.stack([0.2 + 0.6 * xx, 0.3 + 0.5 * yy * xx, 0.8 - 0.6 * yy], axis=-1)[None].astype(np.float32)
  k = np.asarray(jax.vmap(lambda s: jnp.exp(-(jnp.arange(-7, 8) ** 2) / (2 * s * s)))(jnp.array([2.0])))
  k = (k[:, :, None] * k[:, None, :])
  k = jnp.asarray(k / k.sum(), jnp.float32)
  lr = degradation.blur_downsample(jnp.asarray(hr), k, 4)

  def edge_and_inside_error(border):
    model, params = _model(border=border, iterations=1)
    sr = np.asarray(jax.jit(model.apply, static_argnums=4)({'params': params}, lr, k, jnp.zeros((1,)), 4))
    err = np.abs(sr - hr)[0].max(axis=-1)
    edge = np.concatenate([err[:4].ravel(), err[-4:].ravel(), err[:, :4].ravel(), err[:, -4:].ravel()])
    return edge.max(), err[16:-16, 16:-16].max()

  edge, inside = edge_and_inside_error(border=8)
  assert inside < 0.5 / 255 and edge < 20 / 255
  no_border_edge, _ = edge_and_inside_error(border=0)
  assert no_border_edge > 3 * edge


def test_space_to_depth_round_trip():
  x = jnp.arange(2 * 4 * 6 * 3, dtype=jnp.float32).reshape(2, 4, 6, 3)
  np.testing.assert_array_equal(usrnet.depth_to_space(usrnet.space_to_depth(x)), x)
  assert usrnet.space_to_depth(x)[0, 0, 0].tolist() == [0, 1, 2, 3, 4, 5, 18, 19, 20, 21, 22, 23]


def test_kernel_larger_than_canvas_is_refused():
  with pytest.raises(ValueError, match='does not fit'):
    usrnet.kernel_spectrum(jnp.ones((1, 33, 33)), 32, 40)


def test_paper_size_network_has_usrnets_parameter_count():
  """8 rounds, ResUNet 64-128-256-512 with 2 blocks per level, hyper-net of width 64: 17,016,016
  parameters, the 17.02 M the USRNet paper reports (its Table 1; KAIR's network_usrnet.py)."""
  model = usrnet.USRNet()
  shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, 8, 8, 3)), jnp.full((1, 3, 3), 1 / 9),
                                             jnp.zeros((1,)), 2))
  assert sum(x.size for x in jax.tree.leaves(shapes)) == 17_016_016


# --- pixel grid: degrade → restore with the true kernel puts things back where they were -------------

_GRID_NET = usrnet.USRNet(iterations=4, features=(8, 16), num_blocks=1, border=8, hyper_features=8)


def _restore_untrained(hr, kernel, scale, method):
  """(HR ⊗ k)↓ by `method`, then the untrained USRNet (an identity prior: its data steps carry the
  geometry) told the kernel and the downsampler."""
  hr = jnp.asarray(hr[None, :, :, None].repeat(3, axis=-1), jnp.float32)
  return np.asarray(_degrade_and_restore(hr, kernel, scale, method))[0].mean(axis=-1)


@functools.partial(jax.jit, static_argnums=(2, 3))
def _degrade_and_restore(hr, kernel, scale, method):
  lr = degradation.blur_then_downsample(hr, kernel, scale, method)
  params = _GRID_NET.init(jax.random.key(0), lr, kernel, jnp.zeros(1), scale)['params']
  return _GRID_NET.apply({'params': params}, lr, kernel, jnp.zeros(1), scale, downsample=method)


def _gaussian(size, sigma):
  x = np.arange(size) - size // 2
  g = np.exp(-x**2 / (2 * sigma**2))
  return (np.outer(g, g) / np.outer(g, g).sum())[None].astype(np.float32)


@pytest.mark.parametrize('method', degradation.DOWNSAMPLE_METHODS)
@pytest.mark.parametrize('scale', degradation.SCALES)
def test_a_dot_a_ramp_and_a_constant_come_back_in_place(scale, method):
  """Centroid of a bright dot within 0.05 HR px of where it was, on every grid; a ramp comes back
  without an offset; a constant stays constant. Restoring as if decimated directly (the old
  convention) moves a resized image's dot by (s − 1)/2."""
  size, kernel = 96, _gaussian(15, 1.2)
  y, x = np.mgrid[:size, :size]
  for centre in ((46.0, 51.0), (47.5, 44.25)):
    dot = 0.2 + 0.8 * np.exp(-((y - centre[0])**2 + (x - centre[1])**2) / (2 * 2.0**2))
    sr = _restore_untrained(dot, kernel, scale, method)
    # A window wide enough for the dot's tails and ringing: a narrow one cuts them unevenly for a dot off
    # the pixel grid and moves the centroid by up to 0.1 px whatever the downsampler.
    weight = (sr - 0.2) * ((np.abs(y - centre[0]) < 30) & (np.abs(x - centre[1]) < 30))
    found = np.array([(weight * y).sum(), (weight * x).sum()]) / weight.sum()
    np.testing.assert_allclose(found, centre, atol=0.05)
  ramp = np.broadcast_to(0.2 + 0.6 * np.arange(size) / size, (size, size)).T
  sr = _restore_untrained(np.ascontiguousarray(ramp), kernel, scale, method)
  inner = slice(16, -16)
  offset_px = np.mean(sr[inner, inner] - ramp[inner, inner]) / (0.6 / size)
  assert abs(offset_px) < 0.05, offset_px
  np.testing.assert_allclose(_restore_untrained(np.full((size, size), 0.37), kernel, scale, method), 0.37,
                             atol=1e-4)


def test_the_direct_convention_on_resized_lr_is_off_by_half_the_scale_minus_one():
  size, kernel, scale = 96, _gaussian(15, 1.2), 4
  y, x = np.mgrid[:size, :size]
  dot = 0.2 + 0.8 * np.exp(-((y - 46.0)**2 + (x - 51.0)**2) / (2 * 2.0**2))
  hr = jnp.asarray(dot[None, :, :, None].repeat(3, axis=-1), jnp.float32)
  lr = degradation.blur_then_downsample(hr, kernel, scale, 'bicubic')
  params = _GRID_NET.init(jax.random.key(0), lr, kernel, jnp.zeros(1), scale)['params']
  sr = np.asarray(_GRID_NET.apply({'params': params}, lr, kernel, jnp.zeros(1), scale, downsample='direct'))[0].mean(-1)
  weight = (sr - 0.2) * ((np.abs(y - 46) < 14) & (np.abs(x - 51) < 14))
  found = np.array([(weight * y).sum(), (weight * x).sum()]) / weight.sum()
  np.testing.assert_allclose(found, (46 - 1.5, 51 - 1.5), atol=0.1)


def test_grid_phase_moves_a_kernel_by_whole_pixels_exactly():
  k = np.random.default_rng(0).random((1, 5, 5)).astype(np.float32)
  k /= k.sum()
  moved = np.roll(np.pad(k, ((0, 0), (1, 1), (1, 1))), (1, 1), axis=(1, 2))  # k one pixel down-right
  np.testing.assert_allclose(np.asarray(usrnet.kernel_spectrum(jnp.asarray(k), 12, 10, 1.0)),
                             np.asarray(usrnet.kernel_spectrum(jnp.asarray(moved), 12, 10)), atol=1e-6)


def test_a_widened_prior_computes_the_same_and_its_new_weights_learn():
  """widen_prior: a (4, 6, 8) prior with random weights (its zero tail would hide the rest) grown to
  (6, 10, 12) gives the same SR (float32 sums of more, zero, terms: within 2e-6 of its largest value); the
  zero weights from new channels into old ones get gradients, so fine-tuning can use them."""
  model, params = _model(features=(4, 6, 8), iterations=2)
  leaves, tree = jax.tree.flatten(params['prior'])
  keys = jax.random.split(jax.random.key(1), len(leaves))
  params = {**params, 'prior': jax.tree.unflatten(
      tree, [jax.random.normal(k, x.shape) / np.sqrt(np.prod(x.shape[:-1])) for k, x in zip(keys, leaves)])}
  wide = usrnet.widen_prior(params, (6, 10, 12), jax.random.key(2))
  wide_model = usrnet.USRNet(iterations=2, features=(6, 10, 12), num_blocks=1, border=4, hyper_features=8)
  assert jax.tree.map(jnp.shape, wide) == jax.tree.map(jnp.shape, _model(features=(6, 10, 12))[1])
  rng = np.random.default_rng(3)
  lr = jnp.asarray(rng.random((2, 12, 10, 3)), jnp.float32)
  k = jnp.asarray(rng.random((2, 5, 5)), jnp.float32)
  k = k / k.sum(axis=(1, 2), keepdims=True)
  sigma = jnp.array([0.0, 0.02])

  def sr(m):  # One jitted program per width (op by op, each op of each width compiles alone).
    return jax.jit(lambda p: m.apply({'params': p}, lr, k, sigma, 2, clip=False))

  before, after = sr(model)(params), sr(wide_model)(wide)
  bicubic = degradation.bicubic_upsample(lr, 2, 'direct')
  assert float(jnp.abs(before - bicubic).max()) > 0.05  # the prior does something
  scale = float(jnp.abs(before).max())  # a random prior's output: far outside [0, 1], rounding grows with it
  np.testing.assert_allclose(np.asarray(after), np.asarray(before), rtol=0, atol=2e-6 * scale)
  wide_sr = sr(wide_model)
  grads = jax.jit(jax.grad(lambda p: jnp.sum(wide_sr(p) ** 2)))(wide)['prior']
  assert float(jnp.abs(grads['tail']['kernel'][:, :, 4:, :]).max()) > 0  # new channels → the output
  assert float(jnp.abs(grads['down1']['kernel'][6:10, :8]).max()) > 0      # a new input → an old output
  with pytest.raises(ValueError, match=r'widths \(4, 6, 8\) can only grow.*\(4, 5, 8\)'):
    usrnet.widen_prior(params, (4, 5, 8), jax.random.key(0))
  with pytest.raises(ValueError, match='can only grow'):
    usrnet.widen_prior(params, (8, 8), jax.random.key(0))
