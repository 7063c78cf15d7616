r"""Input-pipeline benchmark: host images/s, the device batch function, and their share of a step.

  python benchmarks/data_bench.py                   # everything below, table + JSON on stdout
  python benchmarks/data_bench.py --skip_paper_step  # the paper-size train step is slow on CPU
  python benchmarks/data_bench.py --skip_steps       # data only (no model)

Measures, on whatever backend jax picks:
* host pipeline (grain) images/s for the CPU preset (bundled photos, 256² HR crops) and at paper size
  (1024² HR crops from DIV2K-sized 2040×1356 PNGs, as a folder and as the s2k_images tfds dataset),
  with 0 and 2 worker processes;
* the jitted device batch function (kernels, degradation, spectrum, kernel map) per batch;
* the training step, and the share of a real loop (next → shard → batch fn → step, each waited for)
  spent in data loading (next + shard) and in the batch function.

The DIV2K stand-ins are bundled photos resized to 2040×1356 with noise (σ = 3 levels) so the PNGs
compress about as badly as DIV2K's (~4–6 MB each); decoding cost scales with that.
"""
import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # pylint: disable=g-import-not-at-top
from jax.sharding import Mesh
import numpy as np
from PIL import Image
import skimage.data

from configs import gaussian
from s2k_jax import data
from s2k_jax import estimator
from s2k_jax import loop
from s2k_jax import sharding

DIV2K_SIZE = (2040, 1356)  # (width, height) of most DIV2K HR images.


def make_div2k_like_folder(directory: str, count: int) -> float:
  """Writes `count` 2040×1356 noisy PNGs; returns their mean size in MB."""
  rng = np.random.default_rng(0)
  photos = [skimage.data.astronaut(), skimage.data.rocket(), skimage.data.hubble_deep_field(),
            skimage.data.immunohistochemistry(), skimage.data.retina(), skimage.data.coffee(),
            skimage.data.chelsea(), skimage.data.stereo_motorcycle()[0]]
  os.makedirs(directory, exist_ok=True)
  sizes = []
  for i in range(count):
    big = np.asarray(Image.fromarray(photos[i % len(photos)]).resize(DIV2K_SIZE, Image.BICUBIC), np.float32)
    noisy = np.clip(big + rng.normal(0, 3, big.shape), 0, 255).astype(np.uint8)
    path = os.path.join(directory, f'{i:04d}.png')
    Image.fromarray(noisy).save(path)
    sizes.append(os.path.getsize(path))
  return float(np.mean(sizes) / 1e6)


def host_rate(config, batches: int, warmup: int) -> dict:
  """Start-up seconds and steady-state images/s of the grain iterator.

  The first `warmup` batches are not timed: workers and read threads fill their buffers (up to
  num_workers × (prefetch + max(prefetch, read_threads)) batches) during start-up, and draining them
  would overstate the rate.
  """
  start = time.perf_counter()
  it = data.create_train_iterator(config)
  next(it)
  startup = time.perf_counter() - start
  for _ in range(warmup):
    next(it)
  start = time.perf_counter()
  for _ in range(batches):
    next(it)
  elapsed = time.perf_counter() - start
  if hasattr(it, 'close'):
    it.close()
  images = batches * config.train.batch_size
  return dict(startup_s=round(startup, 2), images_per_s=round(images / elapsed, 1),
              ms_per_batch=round(1000 * elapsed / batches, 1))


def timed(fn, *args, repeats: int = 3) -> float:
  """Median seconds of fn(*args) after one warm-up (compile) call, waiting for the results."""
  jax.block_until_ready(fn(*args))
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    jax.block_until_ready(fn(*args))
    times.append(time.perf_counter() - start)
  return statistics.median(times)


def batch_fn_time(config, repeats: int) -> dict:
  batch = config.train.batch_size
  crop = config.data.hr_crop
  hr = np.random.default_rng(0).integers(0, 256, (batch, crop, crop, 3), np.uint8)
  seconds = timed(jax.jit(estimator.make_batch_fn(config)), hr, jax.random.key(0), repeats=repeats)
  return dict(ms_per_batch=round(1000 * seconds, 1), images_per_s=round(batch / seconds, 1))


def loop_share(config, steps: int) -> dict:
  """Runs the real loop and splits its wall time into data loading, batch function and step."""
  mesh = Mesh(np.asarray(jax.devices()), ('data',))
  state = jax.jit(lambda k: estimator.create_train_state(config, k))(jax.random.key(0))
  step_fn = jax.jit(lambda s, b, k: estimator.train_step(s, b, k, config=config),
                    compiler_options=loop.train_compiler_options(jax.devices()[0].platform))  # as train.py
  batch_fn = jax.jit(estimator.make_batch_fn(config))
  it = data.create_train_iterator(config)
  totals = dict(load=0.0, batch_fn=0.0, step=0.0)
  for step in range(steps + 2):  # The first two steps compile and fill buffers; not counted.
    t0 = time.perf_counter()
    hr = sharding.shard_batch(next(it), mesh)['hr']
    t1 = time.perf_counter()
    batch = jax.block_until_ready(batch_fn(hr, jax.random.key(step)))
    t2 = time.perf_counter()
    state, metrics = step_fn(state, batch, jax.random.key(step))
    jax.block_until_ready(metrics)
    t3 = time.perf_counter()
    if step >= 2:
      totals['load'] += t1 - t0
      totals['batch_fn'] += t2 - t1
      totals['step'] += t3 - t2
  if hasattr(it, 'close'):
    it.close()
  wall = sum(totals.values())
  return dict(ms_per_step=round(1000 * totals['step'] / steps, 1),
              load_ms=round(1000 * totals['load'] / steps, 1),
              batch_fn_ms=round(1000 * totals['batch_fn'] / steps, 1),
              load_share=round(totals['load'] / wall, 4), batch_fn_share=round(totals['batch_fn'] / wall, 4))


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--batches', type=int, default=12, help='host batches timed per case')
  parser.add_argument('--warmup', type=int, default=12, help='host batches consumed before timing')
  parser.add_argument('--steps', type=int, default=8, help='loop steps timed per case')
  parser.add_argument('--images', type=int, default=16, help='DIV2K-sized PNGs to generate')
  parser.add_argument('--skip_paper_step', action='store_true', help='skip the paper-size train step')
  parser.add_argument('--skip_steps', action='store_true', help='skip every train-step measurement')
  args = parser.parse_args()
  results = dict(machine=dict(platform=platform.platform(), cpus=os.cpu_count(),
                              devices=[str(d) for d in jax.devices()], jax=jax.__version__))

  cpu = gaussian.get_config('cpu')
  for workers in (0, 2):
    cpu.data.num_workers = workers
    results[f'host/cpu_preset/bundled/workers={workers}'] = host_rate(cpu, args.batches, args.warmup)
  cpu.data.num_workers = 0
  results['device_batch_fn/cpu_preset'] = batch_fn_time(cpu, repeats=5)
  for workers in () if args.skip_steps else (0, 2):
    cpu.data.num_workers = workers
    results[f'loop/cpu_preset/workers={workers}'] = loop_share(cpu, args.steps)

  paper = gaussian.get_config()  # hr_crop 1024 (×4, 256² spectra), batch 16, U-Net-8-64.
  with tempfile.TemporaryDirectory() as tmp:
    folder = os.path.join(tmp, 'div2k_like')
    results['div2k_like_png_mb'] = round(make_div2k_like_folder(folder, args.images), 2)
    paper.data.source, paper.data.train_dir = 'folder', folder
    for workers in (0, 2):
      paper.data.num_workers = workers
      results[f'host/paper/folder_png/workers={workers}'] = host_rate(paper, args.batches, args.warmup)
    from s2k_jax import tfds_builder  # pylint: disable=g-import-not-at-top
    start = time.perf_counter()
    tfds_builder.build(folder, os.path.join(tmp, 'tfds'))
    results['tfds_build_s_per_image'] = round((time.perf_counter() - start) / args.images, 3)
    # One source's fields at a time (data.check_fields): the folder's go back to their defaults.
    paper.data.update(data.FOLDER_DEFAULTS)
    paper.data.source, paper.data.tfds_data_dir = 'tfds', os.path.join(tmp, 'tfds')
    for workers in (0, 2):
      paper.data.num_workers = workers
      results[f'host/paper/tfds_raw/workers={workers}'] = host_rate(paper, args.batches, args.warmup)
  paper.data.update(data.TFDS_DEFAULTS)
  paper.data.source, paper.data.num_workers = 'bundled', 0
  results['device_batch_fn/paper'] = batch_fn_time(paper, repeats=2)
  if not (args.skip_paper_step or args.skip_steps):
    state = jax.jit(lambda k: estimator.create_train_state(paper, k))(jax.random.key(0))
    batch = jax.jit(estimator.make_batch_fn(paper))(
        np.zeros((16, 1024, 1024, 3), np.uint8), jax.random.key(0))
    step_fn = jax.jit(lambda s, b, k: estimator.train_step(s, b, k, config=paper)[1])
    seconds = timed(step_fn, state, batch, jax.random.key(0), repeats=1)
    results['train_step/paper_ms'] = round(1000 * seconds, 1)

  width = max(len(k) for k in results)
  for key, value in results.items():
    print(f'{key:<{width}}  {value}')
  print(json.dumps(results))


if __name__ == '__main__':
  main()
