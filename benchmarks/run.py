r"""Speed benchmarks of s2k_jax, with the flags of the PyTorch reference (`torch_reference.py`, docs/benchmarks.md).

    python benchmarks/run.py                                   # every workload, default sizes
    python benchmarks/run.py --workload degrade --batch 16     # LR synthesis (paper Eq. 1)
    PYTHON=.venv/bin/python bench_vs_torch.sh degrade --batch 16   # torch/jax ratios (docs/benchmarks.md)

Prints one JSON object per workload: the median milliseconds of one jitted call after warm-up
(`block_until_ready` included), the sizes used, the jax version and the device.

A workload is a function `bench_<name>(args) -> dict` registered in WORKLOADS; it builds its inputs
on the device, times one call with `median_ms` and returns at least `workload`, `batch` and `ms`.
"""
import argparse
import functools
import json
import pathlib
import resource
import sys
import tempfile
import time
from typing import Any, Callable

import numpy as np

# Run as a script from any directory without installing the package.
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

from configs import common  # noqa: E402
from configs import gaussian  # noqa: E402
from configs import sftmd as sftmd_config  # noqa: E402
from configs import usrnet as usrnet_config  # noqa: E402
from s2k_jax import degradation  # noqa: E402
from s2k_jax import estimator  # noqa: E402
from s2k_jax import evaluation  # noqa: E402
from s2k_jax import kernels  # noqa: E402
from s2k_jax import loop  # noqa: E402
from s2k_jax import pipeline  # noqa: E402
from s2k_jax.restorers import sftmd as sftmd_restorer  # noqa: E402
from s2k_jax.restorers import usrnet as usrnet_restorer  # noqa: E402
from s2k_jax import testsets  # noqa: E402


def median_ms(fn: Callable[[], Any], warmup: int, runs: int) -> float:
  """Median wall time of fn() in ms, waiting for the device; the warm-up calls also compile."""
  for _ in range(max(warmup, 1)):
    jax.block_until_ready(fn())
  times = []
  for _ in range(runs):
    start = time.perf_counter()
    jax.block_until_ready(fn())
    times.append(time.perf_counter() - start)
  return 1e3 * float(np.median(times))


def step_ms(train_step: Callable, state: Any, batch: Any, args: argparse.Namespace) -> float:
  """Median ms of a training step `(state, batch, key) -> (state, metrics)`, jitted with donation."""
  step = jax.jit(train_step, donate_argnums=0,
                 compiler_options=loop.train_compiler_options(jax.devices()[0].platform))  # as train.py compiles it
  key = jax.random.key(1)

  def run():
    nonlocal state
    state, metrics = step(state, batch, key)
    return metrics

  return median_ms(run, args.warmup, args.runs)


def bench_degrade(args: argparse.Namespace) -> dict[str, Any]:
  """`degradation.degrade_with_kernels`: per-image k×k kernels, reflect blur, direct ×s, noise.

  The PyTorch reference does the same (reflect pad, grouped conv, [::s, ::s], + 0.01·randn).
  """
  rng = np.random.default_rng(0)
  hr = jnp.asarray(rng.random((args.batch, args.hr_size, args.hr_size, 3), np.float32))
  kernels = rng.random((args.batch, args.ksize, args.ksize), np.float32)
  kernels = jnp.asarray(kernels / kernels.sum(axis=(1, 2), keepdims=True))
  config = common.get_degradation_config('motion')
  config.kernel_size, config.scale, config.noise_max = args.ksize, args.scale, args.noise_max
  key = jax.random.key(0)
  lr = degradation.degrade_with_kernels(hr, kernels, key, config)['lr']
  ms = median_ms(lambda: degradation.degrade_with_kernels(hr, kernels, key, config),
                 args.warmup, args.runs)
  return dict(workload='degrade', batch=args.batch, hr_size=args.hr_size, ksize=args.ksize,
              scale=args.scale, downsample=config.downsample, noise_max=args.noise_max,
              lr_shape=list(lr.shape), ms=ms)


def bench_jpeg(args: argparse.Namespace) -> dict[str, Any]:
  """`degradation.jpeg`: baseline JPEG of a batch of LR images, one traced quality per image.

  Reference in the same run: Pillow (libjpeg) encoding and decoding the same images one by one, as a
  host pipeline would (`pillow_ms`; higher pillow_ms / ms is better for s2k-jax).
  """
  import io  # pylint: disable=g-import-not-at-top
  from PIL import Image  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(0)
  side = args.lr_size
  images = rng.random((args.batch, side, side, 3), np.float32)
  quality = jnp.asarray(rng.integers(50, 96, args.batch), jnp.int32)
  lr = jnp.asarray(images)
  fn = jax.jit(degradation.jpeg)
  ms = median_ms(lambda: fn(lr, quality), args.warmup, args.runs)
  pixels = [Image.fromarray((x * 255 + 0.5).astype(np.uint8)) for x in images]

  def pillow():
    for image, q in zip(pixels, np.asarray(quality)):
      buffer = io.BytesIO()
      image.save(buffer, format='JPEG', quality=int(q))
      np.asarray(Image.open(io.BytesIO(buffer.getvalue())))

  return dict(workload='jpeg', batch=args.batch, lr_size=side, ms=ms,
              pillow_ms=median_ms(pillow, args.warmup, args.runs))  # Warm-up loads the codec.


def bench_batch_fn(args: argparse.Namespace) -> dict[str, Any]:
  """The estimator's device batch function (kernels, blur, ↓s, noise, 8-bit, JPEG, Welch spectrum, kernel
  map) of the `:photo` preset — the shipped estimators' recipe — against its training step (target:
  under 10% of the step)."""
  config = gaussian.get_config('photo')
  config.degradation.scale = args.scale
  batch_size, crop = config.train.batch_size, config.data.hr_crop
  hr = jnp.asarray(np.random.default_rng(0).integers(0, 256, (batch_size, crop, crop, 3), np.uint8))
  make_batch = jax.jit(estimator.make_batch_fn(config))
  key = jax.random.key(0)
  batch_ms = median_ms(lambda: make_batch(hr, key), args.warmup, args.runs)
  state = estimator.create_train_state(config, jax.random.key(0))
  ms = step_ms(functools.partial(estimator.train_step, config=config), state, make_batch(hr, key), args)
  return dict(workload='batch_fn', preset='photo', batch=batch_size, hr_crop=crop, scale=args.scale,
              batch_fn_ms=batch_ms, step_ms=ms, share_of_step=batch_ms / ms, ms=batch_ms)


def peak_memory_mb() -> dict[str, float]:
  """Peak resident memory of this process and, where the backend reports it, of the device."""
  peaks = {'peak_rss_mb': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
  stats = jax.devices()[0].memory_stats() or {}
  if 'peak_bytes_in_use' in stats:
    peaks['device_peak_mb'] = stats['peak_bytes_in_use'] / 2**20
  return peaks


def bench_s2k_step(args: argparse.Namespace) -> dict[str, Any]:
  """`estimator.train_step` of the paper model (unet-8-64 + PatchGAN, Eq. 11-12, Adam), jitted, donated.

  The PyTorch reference does the same step: one G forward, D on fake and real, D update, G update
  through the new D, with BatchNorm in training mode and dropout in the U-Net.
  """
  config = gaussian.get_config()
  config.spectrum.size = args.size
  config.model.dtype = args.dtype
  state = estimator.create_train_state(config, jax.random.key(0))
  rng = np.random.default_rng(0)
  shape = (args.batch, args.size, args.size, 1)
  batch = {'inputs': jnp.asarray(rng.uniform(-1, 1, shape).astype(np.float32)),
           'kernel_map': jnp.asarray(rng.uniform(-1, 1, shape).astype(np.float32))}
  params = sum(x.size for x in jax.tree.leaves(state['gen'].params))
  ms = step_ms(functools.partial(estimator.train_step, config=config), state, batch, args)
  return dict(workload='s2k_step', batch=args.batch, size=args.size, generator=config.model.generator,
              generator_params=params, dtype=args.dtype, ms=ms, **peak_memory_mb())


def bench_sftmd_step(args: argparse.Namespace) -> dict[str, Any]:
  """`sftmd_restorer.train_step` of the paper SFTMD (64 ch, 16 blocks, code 10) at ×s: L1 + Adam, jitted, donated.

  The PyTorch reference does the same step on random LR/HR and codes.
  """
  config = sftmd_config.get_config(f'gaussian_x{args.scale}')
  config.restorer.dtype = args.dtype
  basis = {'components': np.linalg.qr(np.random.default_rng(0).normal(size=(225, 10)))[0].astype(np.float32),
           'mean': np.full((225,), 1 / 225, np.float32), 'variance': np.ones((10,), np.float32)}
  state = sftmd_restorer.create_train_state(config, basis, jax.random.key(0))
  rng = np.random.default_rng(0)
  hr_side = args.lr_size * args.scale
  k = rng.random((args.batch, 15, 15), np.float32)
  batch = {'lr': jnp.asarray(rng.random((args.batch, args.lr_size, args.lr_size, 3), np.float32)),
           'hr': jnp.asarray(rng.random((args.batch, hr_side, hr_side, 3), np.float32)),
           'kernel': jnp.asarray(k / k.sum(axis=(1, 2), keepdims=True)),
           'noise_sigma': jnp.zeros((args.batch,), jnp.float32)}
  params = sum(x.size for x in jax.tree.leaves(state.params))
  ms = step_ms(functools.partial(sftmd_restorer.train_step, config=config), state, batch, args)
  return dict(workload='sftmd_step', batch=args.batch, lr_size=args.lr_size, scale=args.scale,
              params=params, dtype=args.dtype, ms=ms, **peak_memory_mb())


def _models(preset: str | None, scale: int):
  """An (untrained) estimator and restorer of the given preset; speed does not depend on the weights."""
  est_config = gaussian.get_config(preset)
  est_config.degradation.scale = scale
  est = estimator.Estimator(config=est_config, state=estimator.create_train_state(est_config, jax.random.key(0)),
                            step=0, directory='')
  rest_config = sftmd_config.get_config(f'gaussian_x{scale}' + (f',{preset}' if preset else ''))
  basis = sftmd_restorer.fit_basis(rest_config)
  rest = sftmd_restorer.from_state(rest_config, sftmd_restorer.create_train_state(rest_config, basis, jax.random.key(1)))
  return est, rest


def bench_blind_sr(args: argparse.Namespace) -> dict[str, Any]:
  """End-to-end blind SR of LR images (`pipeline.super_resolve_batch`): spectrum → S2K U-Net →
  kernel → PCA code → SFTMD, with the paper-size models (unet-8-64, 16-block SFTMD), no tiling."""
  est, rest = _models(None, args.scale)
  lr = np.random.default_rng(0).random((args.batch, args.lr_size, args.lr_size, 3)).astype(np.float32)
  ms = median_ms(lambda: pipeline.super_resolve_batch(lr, est, rest, tile=0)['sr'], args.warmup, args.runs)
  return dict(workload='blind_sr', batch=args.batch, lr_size=args.lr_size, scale=args.scale, ms=ms,
              ms_per_image=ms / args.batch, **peak_memory_mb())


def bench_evaluate(args: argparse.Namespace) -> dict[str, Any]:
  """`evaluation.evaluate` throughput with the :cpu preset models: bicubic, SFTMD with mean / S2K / true
  kernel, kernel and image metrics, per-image CSV, on a generated test set of LR side --lr-size."""
  est, rest = _models('cpu', args.scale)
  n = args.batch
  hr_side = args.lr_size * args.scale
  rng = np.random.default_rng(0)
  hr = tuple(rng.integers(0, 256, (hr_side, hr_side, 3), dtype=np.uint8) for _ in range(n))
  lr = tuple(x[::args.scale, ::args.scale] for x in hr)
  k = np.asarray(kernels.sample_kernels(jax.random.key(0), n, est.config.degradation))
  testset = testsets.TestSet(directory='(synthetic)', manifest={'scale': args.scale, 'family': 'gaussian'},
                             names=tuple(f'{i}' for i in range(n)), hr=hr, lr=lr, kernels=k,
                             noise_sigma=np.zeros(n, np.float32))
  with tempfile.TemporaryDirectory() as out:
    ms = median_ms(lambda: evaluation.evaluate(testset, out, est, rest, batch_size=n)['sr'],
                   args.warmup, args.runs)
  return dict(workload='evaluate', batch=n, images=n, lr_size=args.lr_size, scale=args.scale, ms=ms,
              images_per_s=1e3 * n / ms, **peak_memory_mb())


def _usrnet_inputs(args: argparse.Namespace):
  config = usrnet_config.get_config('mixed' + (f',{args.usrnet_preset}' if args.usrnet_preset else ''))
  config.restorer.dtype = args.dtype
  state = usrnet_restorer.create_train_state(config, jax.random.key(0))
  rng = np.random.default_rng(0)
  k = rng.random((args.batch, args.ksize, args.ksize), np.float32)
  lr = jnp.asarray(rng.random((args.batch, args.lr_size, args.lr_size, 3), np.float32))
  return config, state, lr, jnp.asarray(k / k.sum(axis=(1, 2), keepdims=True)), jnp.full((args.batch,), 0.01)


def _gflops(fn, *inputs) -> float:
  """XLA's own FLOP count of the compiled function (its cost analysis), in GFLOP."""
  cost = jax.jit(fn).lower(*inputs).compile().cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  return float(cost.get('flops', float('nan'))) / 1e9


def bench_usrnet_forward(args: argparse.Namespace) -> dict[str, Any]:
  """USRNet inference at ×s (models/usrnet.py; --usrnet-preset cpu = the shipped size, '' = USRNet's
  8 rounds of a 64–512 ResUNet): ms and GFLOP/s by XLA's FLOP count (2-core CPU peak ≈ 190)."""
  config, state, lr, k, sigma = _usrnet_inputs(args)
  fn = lambda params, lr, k, sigma: state.apply_fn({'params': params}, lr, k, sigma, args.scale)
  gflop = _gflops(fn, state.params, lr, k, sigma)
  ms = median_ms(lambda: jax.jit(fn)(state.params, lr, k, sigma), args.warmup, args.runs)
  return dict(workload='usrnet_forward', preset=args.usrnet_preset or 'paper', batch=args.batch,
              lr_size=args.lr_size, scale=args.scale, dtype=args.dtype, ms=ms, gflop=gflop, gflop_per_s=gflop / (ms / 1e3),
              **peak_memory_mb())


def bench_usrnet_step(args: argparse.Namespace) -> dict[str, Any]:
  """`usrnet_restorer.train_step` at ×s (L1 + Adam, jitted, donated), with its GFLOP/s."""
  config, state, lr, k, sigma = _usrnet_inputs(args)
  hr = jnp.asarray(np.random.default_rng(1).random((args.batch, args.lr_size * args.scale,
                                                    args.lr_size * args.scale, 3), np.float32))
  batch = {'hr': hr, f'lr_x{args.scale}': lr, 'kernel': k, 'noise_sigma': sigma}
  variant = usrnet_restorer.scales(config).index(args.scale)
  step = functools.partial(usrnet_restorer.train_step, config=config, variant=variant)
  gflop = _gflops(step, state, batch, jax.random.key(1))
  ms = step_ms(step, state, batch, args)
  return dict(workload='usrnet_step', preset=args.usrnet_preset or 'paper', batch=args.batch,
              lr_size=args.lr_size, scale=args.scale, dtype=args.dtype, ms=ms, gflop=gflop, gflop_per_s=gflop / (ms / 1e3),
              **peak_memory_mb())


WORKLOADS: dict[str, Callable[[argparse.Namespace], dict[str, Any]]] = {
    'degrade': bench_degrade, 's2k_step': bench_s2k_step, 'sftmd_step': bench_sftmd_step,
    'blind_sr': bench_blind_sr, 'evaluate': bench_evaluate, 'usrnet_forward': bench_usrnet_forward,
    'usrnet_step': bench_usrnet_step, 'jpeg': bench_jpeg, 'batch_fn': bench_batch_fn}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument('--workload', choices=sorted(WORKLOADS), action='append')
  p.add_argument('--batch', type=int, default=8)
  p.add_argument('--size', type=int, default=256, help='spectrum / kernel-map side for s2k_step')
  p.add_argument('--lr-size', type=int, default=64, help='LR side for sftmd_step')
  p.add_argument('--hr-size', type=int, default=256, help='HR side for degrade')
  p.add_argument('--ksize', type=int, default=23)
  p.add_argument('--dtype', default='float32', choices=('float32', 'bfloat16'),
                 help="networks' computation dtype (model.dtype / restorer.dtype) for s2k_step, sftmd_step, usrnet_*")
  p.add_argument('--scale', type=int, default=4)
  p.add_argument('--warmup', type=int, default=1)
  p.add_argument('--runs', type=int, default=3)
  p.add_argument('--usrnet-preset', default='cpu', choices=('cpu', ''),
                 help="USRNet workloads: 'cpu' (the shipped size) or '' (USRNet's paper size)")
  p.add_argument('--noise-max', type=float, default=0.02,
                 help='degrade: σ ~ U[0, noise_max] (not a torch_reference flag; it adds σ = 0.01)')
  return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
  args = parse_args(argv)
  device = jax.devices()[0]
  for name in args.workload or sorted(WORKLOADS):
    result = WORKLOADS[name](args)
    print(json.dumps(dict(result, jax=jax.__version__, backend=jax.default_backend(),
                          device=device.device_kind, device_count=jax.device_count())), flush=True)


if __name__ == '__main__':
  main()
