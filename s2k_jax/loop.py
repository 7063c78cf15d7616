"""The training driver shared by every model of the project (estimator §3.3, restorers §3.4).

Every model trains with the same driver features: a data-parallel mesh (`sharding`), one orbax
`CheckpointManager` holding the train state, the grain iterator state and a JSON record of the config
(`checkpoints`, the layout inference reads too); a preemption guard; a non-finite-loss stop; metrics
to JSONL and TensorBoard; sample figures; a progress bar. They
live here once, and `run` is the one linear driver every model trains with. A `Task` brings all that
differs (its data, batch function, state, step and evaluation), so this module imports no data or
model module.
"""
import dataclasses
import functools
import json
import os
import signal
import threading
import time
from typing import Any, Callable, Mapping

from absl import logging
import jax
import ml_collections
import numpy as np
import optax
import orbax.checkpoint as ocp
import tqdm

from s2k_jax import checkpoints
from s2k_jax import commands
from s2k_jax import runtime
from s2k_jax import sharding
from s2k_jax import visualize


@dataclasses.dataclass(frozen=True)
class Task:
  """What the driver needs to train one model; the mesh, checkpoints, logging and the loop are shared.

  Host data are dicts of numpy arrays whose first axis is the (process-local) batch; the driver shards
  them over the mesh and `make_batch` turns them into the training batch on the device.
  """
  name: str                   # progress-bar label
  kind: str                   # recorded in the checkpoint metadata; loaders check it
  meta: Mapping[str, Any]     # JSON saved with every checkpoint (config, conventions)
  train_iterator: Callable[[], Any]      # () → checkpointable iterator of host batches (grain)
  # (iterator, step) → None: puts it at global batch `step`, for a checkpoint whose iterator state
  # another number of processes wrote (each step reads one batch; data.seek).
  seek: Callable[[Any, int], None]
  eval_data: Callable[[], Mapping[str, np.ndarray]]  # () → the fixed host validation batch
  make_batch: Callable[[Any, jax.Array], Any]   # (host batch on device, key) → batch (jitted)
  create_state: Callable[[jax.Array], Any]              # init key → train state
  train_step: Callable[[Any, Any, jax.Array], tuple[Any, Any]]  # (state, batch, key) → (state, metrics)
  eval_step: Callable[[Any, Any], Any]                  # (state, eval batch) → outputs (jitted by the driver)
  # (outputs, eval batch), both on the host → (scalars, uint8 HWC figure or None); the driver writes
  # the scalars as eval/<name> and the figure to <workdir>/samples/step_<step>.png and TensorBoard.
  summarize_eval: Callable[[Any, Any], tuple[Mapping[str, float], np.ndarray | None]]
  progress_keys: tuple[str, ...]                        # metrics shown on the progress bar
  # The closing summary the driver prints (host 0) after the paths of the run's outputs:
  # (the latest eval scalars) → lines that read them, e.g. against a baseline on the same eval batch;
  describe_eval: Callable[[Mapping[str, float]], list[str]] = lambda scalars: []
  # (workdir) → the commands to try next with the model trained there, written as typed in an activated
  # environment (`python evaluate.py …`, `s2k-sr …`); `closing_lines` prints them `commands.runnable`.
  next_steps: Callable[[str], list[str]] = lambda workdir: []
  # > 1: train_step takes a static `variant` keyword, cycled as step mod train_variants (USRNet: one
  # scale per step). Each variant compiles once; XLA:CPU ran a lax.switch over them 20x slower.
  train_variants: int = 1
  # (fresh state, bundle path) → state starting from the bundle's weights (`train.init_from`); None: the
  # task cannot be warm-started.
  warm_start: Callable[[Any, str], Any] | None = None


# ---------------------------------------------------------------------------------------------------
# Optimiser.


def create_optimizer(config: ml_collections.ConfigDict) -> optax.GradientTransformation:
  """Adam(lr, β1, β2, ε) from `config.train` with its schedule: the estimator's paper §4 settings
  (constant rate) and the restorer's IKC settings (cosine) are both this."""
  t = config.train
  if t.schedule == 'constant':
    lr = t.learning_rate
  elif t.schedule == 'cosine':
    lr = optax.cosine_decay_schedule(t.learning_rate, t.num_steps)
  elif t.schedule == 'linear_decay':  # pix2pix: constant for the first half, then linearly to 0.
    half = t.num_steps // 2
    lr = optax.join_schedules([optax.constant_schedule(t.learning_rate),
                               optax.linear_schedule(t.learning_rate, 0.0, t.num_steps - half)], [half])
  else:
    raise ValueError(f"train.schedule must be 'constant', 'cosine' or 'linear_decay', got {t.schedule!r}")
  return optax.adam(lr, b1=t.b1, b2=t.b2, eps=t.eps)


# ---------------------------------------------------------------------------------------------------
# Compiling the training step.

# XLA:CPU (jaxlib 0.10) hands single convolutions to YNNPACK by default (its library fusions: single
# dots, single convolutions, reductions). For the kernel gradients and small-image layers of a training
# step those ran 4–6× slower than XLA's own convolutions on x86 and made whole steps 1.3–1.6× slower
# (docs/benchmarks.md, "XLA:CPU convolutions"), so the training step keeps the other two.
YNN_FUSION_FLAG = 'xla_cpu_experimental_ynn_fusion_type'
TRAIN_STEP_YNN_FUSIONS = 'LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT,LIBRARY_FUSION_TYPE_REDUCE'


def train_compiler_options(platform: str) -> dict[str, str] | None:
  """XLA options for compiling a training step on `platform` (a jax device's `.platform`).

  None where there is nothing to set: not a CPU, or the user chose the YNNPACK fusions in XLA_FLAGS
  (those win over this default)."""
  if platform != 'cpu' or YNN_FUSION_FLAG in os.environ.get('XLA_FLAGS', ''):
    return None
  return {YNN_FUSION_FLAG: TRAIN_STEP_YNN_FUSIONS}


# ---------------------------------------------------------------------------------------------------
# Preemption and non-finite losses.


class PreemptionGuard:
  """Turns SIGTERM (TPU/GPU preemption, `kill`) into a flag the loop polls, so it can save and exit.

  With several processes the decision must be the same on all, at the same step (a checkpoint is a
  collective save): JAX's preemption notifier, which jax.distributed.initialize installs for SIGTERM,
  tells every process, and `reached_preemption` agrees on the step. Python's own handler would hide the
  signal from it, so it is installed for one process only."""

  def __init__(self, signals=(signal.SIGTERM,)):
    self.requested = False
    self._previous = {}
    if threading.current_thread() is threading.main_thread() and jax.process_count() == 1:
      for sig in signals:
        self._previous[sig] = signal.signal(sig, self._handle)

  def _handle(self, signum, frame):
    del frame
    logging.warning('Received signal %d: saving a checkpoint and stopping.', signum)
    self.requested = True

  def should_stop(self, step: int, mngr: ocp.CheckpointManager) -> bool:
    return self.requested or (jax.process_count() > 1 and mngr.reached_preemption(step))

  def close(self):
    for sig, handler in self._previous.items():
      signal.signal(sig, handler)


def check_finite(metrics: Mapping[str, Any], step: int, mngr: ocp.CheckpointManager) -> None:
  """Raises runtime.NonFiniteLossError naming the step and the last good checkpoint if a loss is not finite."""
  bad = {k: float(v) for k, v in metrics.items() if not np.isfinite(np.asarray(v)).all()}
  if bad:
    last = mngr.latest_step()
    where = (f'the last good checkpoint is step {last} in {mngr.directory}; restarting resumes from it'
             if last is not None else 'no checkpoint was saved yet')
    raise runtime.NonFiniteLossError(
        f'non-finite loss at step {step}: {bad}; {where}. Lower train.learning_rate or check the data.')


# ---------------------------------------------------------------------------------------------------
# Metrics.


class MetricWriter:
  """Scalars to `<workdir>/metrics.jsonl` and TensorBoard (`<workdir>/tensorboard`), host 0 only."""

  def __init__(self, workdir: str):
    self.enabled = jax.process_index() == 0
    self._tb = None
    if self.enabled:
      os.makedirs(workdir, exist_ok=True)
      self._jsonl = open(os.path.join(workdir, 'metrics.jsonl'), 'a', encoding='utf-8')
      from tensorboardX import SummaryWriter  # pylint: disable=g-import-not-at-top
      self._tb = SummaryWriter(os.path.join(workdir, 'tensorboard'))

  def write(self, step: int, scalars: Mapping[str, Any]) -> None:
    if not self.enabled:
      return
    values = {k: float(v) for k, v in scalars.items()}
    self._jsonl.write(json.dumps(dict(step=int(step), **values)) + '\n')
    self._jsonl.flush()
    for k, v in values.items():
      self._tb.add_scalar(k, v, int(step))

  def write_image(self, step: int, name: str, image: np.ndarray) -> None:
    if self.enabled:
      self._tb.add_image(name, image, int(step), dataformats='HWC')

  def close(self) -> None:
    if self.enabled:
      self._jsonl.close()
      self._tb.close()


def write_eval(writer: MetricWriter, workdir: str, step: int, scalars: Mapping[str, float],
               figure: np.ndarray | None) -> None:
  """Validation scalars as eval/<name>; the figure as <workdir>/samples/step_<step>.png and in TensorBoard."""
  writer.write(step, {f'eval/{k}': v for k, v in scalars.items()})
  if figure is not None and jax.process_index() == 0:
    visualize.save_png(os.path.join(workdir, 'samples', f'step_{step:07d}.png'), figure)
    writer.write_image(step, 'eval/samples', figure)


# ---------------------------------------------------------------------------------------------------
# The closing summary.


def last_eval(workdir: str) -> tuple[int, dict[str, float]] | None:
  """The latest (step, eval scalars without the 'eval/' prefix) in <workdir>/metrics.jsonl, or None."""
  path = os.path.join(workdir, 'metrics.jsonl')
  if not os.path.isfile(path):
    return None
  found = None
  with open(path, encoding='utf-8') as f:
    for line in f:
      try:
        record = json.loads(line)
      except json.JSONDecodeError:  # A line cut short by a crash.
        continue
      scalars = {k[len('eval/'):]: v for k, v in record.items() if k.startswith('eval/')}
      if scalars:
        found = (int(record['step']), scalars)
  return found


@dataclasses.dataclass(frozen=True)
class Throughput:
  """How fast a run trained: `steps` timed steps (the first, which compiles, left out) in `seconds`."""
  steps: int
  seconds: float
  batch_size: int

  def __str__(self) -> str:
    if self.steps < 1 or self.seconds <= 0:
      return 'too few steps to time'
    rate = self.steps / self.seconds
    return (f'{rate:.3g} steps/s, {rate * self.batch_size:.3g} images/s over {self.steps} steps '
            f'({self.seconds / 60:.1f} min; the first step, which compiles, not counted)')


def closing_lines(task: Task, workdir: str, step: int, num_steps: int, *, start: int = 0,
                  stopped: bool = False, throughput: Throughput | None = None) -> list[str]:
  """What a run leaves and what to do next: where its outputs are, how fast it trained, the latest
  evaluation (read by the task), and how to resume (after a stop) or the task's next commands."""
  if stopped:
    head = (f'Stopped early at step {step} of {num_steps}, after saving a checkpoint. Run the same '
            f'command again (same --workdir) to resume from step {step}.')
  elif start >= num_steps:
    head = (f'Nothing to train: {workdir} is already at step {start} of train.num_steps={num_steps} '
            '(raise --config.train.num_steps to train longer).')
  else:
    head = f'Trained to step {step} of {num_steps}' + (f' (resumed at step {start})' if start else '') + '.'
  if throughput is not None and step > start:
    head += f' Throughput: {throughput}.'
  checkpoint_dir = os.path.join(workdir, checkpoints.SUBDIR)
  saved = (sorted(int(n) for n in os.listdir(checkpoint_dir) if n.isdigit()) if os.path.isdir(checkpoint_dir)
           else [])
  samples = os.path.join(workdir, 'samples')
  figures = sorted(n for n in os.listdir(samples) if n.endswith('.png')) if os.path.isdir(samples) else []
  lines = [head, f'  checkpoints  {checkpoint_dir}' + (f' (steps {", ".join(map(str, saved))})' if saved else ''),
           f'  metrics      {os.path.join(workdir, "metrics.jsonl")}',
           f'  TensorBoard  {os.path.join(workdir, "tensorboard")}  '
           f'({commands.tensorboard_hint(os.path.join(workdir, "tensorboard"))})']
  if figures:
    lines.append(f'  samples      {os.path.join(samples, figures[-1])}'
                 + (f' (latest of {len(figures)})' if len(figures) > 1 else ''))
  evaluated = last_eval(workdir)
  if evaluated is not None:
    described = task.describe_eval(evaluated[1])
    if described:
      lines.append(f'Held-out evaluation at step {evaluated[0]}:')
      lines += [f'  {line}' for line in described]
  if not stopped:
    next_commands = task.next_steps(workdir)
    if next_commands:
      lines.append('Next:')
      lines += [f'  {commands.runnable(c)}' for c in next_commands]
  return lines


# ---------------------------------------------------------------------------------------------------
# The driver.


def run(task: Task, config: ml_collections.ConfigDict, workdir: str) -> Any:
  """The training driver: trains `task` in `workdir`, resuming from its latest checkpoint if any."""
  runtime.maybe_initialize_distributed(config.train)
  mesh = sharding.make_mesh()
  sharding.check_batch_divisible(config.train.batch_size, mesh)
  if jax.process_index() == 0:
    print(f'{jax.device_count()} {jax.devices()[0].platform} device(s), mesh {dict(mesh.shape)}; '
          f'workdir {os.path.abspath(workdir)}', flush=True)
  os.makedirs(workdir, exist_ok=True)

  # Data: the task's host pipeline (grain); its on-device batch function follows the state, so that a
  # bad checkpoint or train.init_from fails before anything is compiled.
  train_iter = task.train_iterator()

  # State: replicated over the mesh; restored (with the iterator) from the latest checkpoint.
  rng = jax.random.key(config.seed)
  init_key, train_key, data_key = jax.random.split(rng, 3)
  state_sharding = sharding.replicated(mesh)
  create_state = jax.jit(task.create_state, out_shardings=state_sharding)
  mngr = checkpoints.checkpoint_manager(workdir, config.train.keep_checkpoints)
  start = mngr.latest_step() or 0
  init_from = config.train.init_from
  if init_from and task.warm_start is None:
    raise ValueError(f'train.init_from={init_from!r}: the {task.name} task cannot start from a bundle; '
                     'leave train.init_from empty.')
  if start:
    if jax.process_index() == 0:
      print(f'Resuming from step {start} in {mngr.directory}'
            + (f' (it started from {init_from})' if init_from else ''), flush=True)
    # The iterator state of this process, or (written by another number of processes) the step alone.
    saved_here = checkpoints.has_data_state(mngr, start)
    # The state's shapes alone: initialising it would compile and run an init the restore overwrites.
    abstract = sharding.abstract_like(jax.eval_shape(create_state, init_key), state_sharding)
    state = checkpoints.restore_checkpoint(mngr, start, abstract, train_iter if saved_here else None)
    if not saved_here:
      task.seek(train_iter, start)
      if jax.process_index() == 0:
        print(f'The checkpoint\'s data position was saved by another number of processes: every process '
              f'resumes the data stream at batch {start} (the step).', flush=True)
  else:
    state = create_state(init_key)
    if init_from:
      if jax.process_index() == 0:
        print(f'Starting from the weights of {init_from} (train.init_from)', flush=True)
      state = jax.device_put(task.warm_start(state, init_from), state_sharding)

  # The on-device batch function (e.g. the degradation) and the fixed held-out batch.
  batch_sharding = sharding.data_sharded(mesh)
  make_batch = jax.jit(task.make_batch, out_shardings=batch_sharding)
  eval_inputs = sharding.shard_replicated_batch(task.eval_data(), mesh)  # the same data on every process
  eval_batch = make_batch(eval_inputs, jax.random.key(config.seed + 1))
  # Every process reads the whole eval batch and outputs: gathered on every device first.
  eval_host = jax.device_get(sharding.gather(eval_batch, mesh))

  variants = [functools.partial(task.train_step, variant=v) for v in range(task.train_variants)] \
      if task.train_variants > 1 else [task.train_step]
  step_fns = [jax.jit(fn, donate_argnums=0, in_shardings=(state_sharding, batch_sharding, state_sharding),
                      out_shardings=(state_sharding, state_sharding),
                      compiler_options=train_compiler_options(mesh.devices.flat[0].platform)) for fn in variants]
  eval_fn = jax.jit(task.eval_step)
  writer = MetricWriter(workdir)
  guard = PreemptionGuard()
  pending = None  # Metrics of the previous step, checked one step late to keep dispatch asynchronous.
  bar = tqdm.tqdm(total=config.train.num_steps, initial=start, desc=task.name, unit='step',
                  disable=jax.process_index() != 0, dynamic_ncols=True)
  step, stop = start, False
  timer_start = None  # (step, time) once the first step, which compiles, has finished
  try:
    for step in range(start + 1, config.train.num_steps + 1):
      batch = make_batch(sharding.shard_batch(next(train_iter), mesh), jax.random.fold_in(data_key, step))
      state, metrics = step_fns[step % len(step_fns)](state, batch, train_key)
      if pending is not None:
        check_finite(jax.device_get(pending[1]), pending[0], mngr)
      pending = (step, metrics)
      bar.update(1)
      if timer_start is None:
        jax.block_until_ready(metrics)
        timer_start = (step, time.perf_counter())

      if step % config.train.log_every == 0 or step == config.train.num_steps:
        values = jax.device_get(metrics)
        check_finite(values, step, mngr)
        writer.write(step, {f'train/{k}': v for k, v in values.items()})
        bar.set_postfix({k: f'{float(values[k]):.4g}' for k in task.progress_keys})

      if step % config.train.eval_every == 0 or step == config.train.num_steps:
        scalars, figure = task.summarize_eval(jax.device_get(sharding.gather(eval_fn(state, eval_batch), mesh)),
                                              eval_host)
        write_eval(writer, workdir, step, scalars, figure)

      stop = guard.should_stop(step, mngr)
      if step % config.train.checkpoint_every == 0 or step == config.train.num_steps or stop:
        check_finite(jax.device_get(metrics), step, mngr)  # Never checkpoint a broken state.
        checkpoints.save_checkpoint(mngr, step, state, train_iter, task.meta)
      if stop:
        logging.warning('Stopped at step %d after saving a checkpoint.', step)
        break
    # Timed here, on the way out of a run that did not fail: in `finally` a failed step's donated state
    # could raise again and hide the error.
    jax.block_until_ready(state)
    throughput = Throughput(step - timer_start[0], time.perf_counter() - timer_start[1],
                            int(config.train.batch_size)) if timer_start else None
  finally:
    bar.close()
    mngr.wait_until_finished()
    mngr.close()
    writer.close()
    guard.close()
    if hasattr(train_iter, 'close'):
      train_iter.close()  # Stops grain worker processes.
  if jax.process_index() == 0:
    print('\n'.join(closing_lines(task, workdir, step, config.train.num_steps, start=start,
                                   stopped=stop and step < config.train.num_steps, throughput=throughput)),
          flush=True)
  return state
