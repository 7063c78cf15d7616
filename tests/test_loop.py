"""Tests for the shared training driver (s2k_jax/loop.py) run with a minimal task."""
import dataclasses
import re
import importlib.util
import sys

import jax
import jax.numpy as jnp

from configs import gaussian
from s2k_jax import data
from s2k_jax import loop


def counting_task(config):
  """A task whose state counts its steps and sums the mean of every HR batch it was given."""

  def create_state(key):
    del key
    return {'step': jnp.zeros((), jnp.int32), 'seen': jnp.zeros((), jnp.float32)}

  def train_step(state, batch, key):
    del key
    mean = jnp.mean(batch['hr'])
    return {'step': state['step'] + 1, 'seen': state['seen'] + mean}, {'mean': mean}

  return loop.Task(name='count', kind='count', meta={'kind': 'count'},
                   **data.task_inputs(config),
                   make_batch=lambda host, key: {'hr': host['hr'].astype(jnp.float32) / 255.0},
                   create_state=create_state, train_step=train_step, eval_step=lambda state, batch: {},
                   summarize_eval=lambda out, batch: ({}, None), progress_keys=('mean',))


def checkpoint_steps(workdir):
  return sorted(int(p.name) for p in (workdir / 'checkpoints').iterdir() if p.name.isdigit())


def test_only_the_latest_keep_checkpoints_steps_remain(tmp_path):
  """train.keep_checkpoints is the number of checkpoint steps left on disk: the latest ones.

  Reference: the steps saved, worked out by hand from checkpoint_every = 2 and the final step (2, 4,
  6, 7), of which keep_checkpoints = 2 (not the preset's 3) leaves 6 and 7; a resumed run to step 9
  saves 8 and 9 and again leaves the latest two.
  """
  config = gaussian.get_config('smoke')
  t = config.train
  t.num_steps, t.checkpoint_every, t.eval_every, t.keep_checkpoints = 7, 2, 100, 2
  task = counting_task(config)
  state = loop.run(task, config, str(tmp_path))
  assert int(state['step']) == 7
  assert checkpoint_steps(tmp_path) == [6, 7]
  t.num_steps = 9
  state = loop.run(task, config, str(tmp_path))
  assert int(state['step']) == 9  # Resumed from step 7, not started afresh.
  assert checkpoint_steps(tmp_path) == [8, 9]


def test_a_run_ends_by_saying_where_things_are_and_what_next(tmp_path, capsys):
  """The closing lines (reference: the files the run wrote): paths that exist, the task's evaluation
  summary and next commands; a re-run with nothing to train says so."""
  config = gaussian.get_config('smoke')
  config.train.num_steps, config.train.checkpoint_every, config.train.eval_every = 3, 2, 2
  task = dataclasses.replace(counting_task(config),
                             summarize_eval=lambda out, batch: ({'mean': 0.5}, None),
                             describe_eval=lambda scalars: [f'mean {scalars["mean"]:.2f}'],
                             next_steps=lambda workdir: [f'evaluate {workdir}'])
  loop.run(task, config, str(tmp_path))
  out = capsys.readouterr().out
  assert 'Trained to step 3 of 3. Throughput: ' in out
  assert re.search(r'Throughput: [0-9.e+]+ steps/s, [0-9.e+]+ images/s over 2 steps', out), out
  assert f'checkpoints  {tmp_path / "checkpoints"} (steps 2, 3)' in out
  assert f'metrics      {tmp_path / "metrics.jsonl"}' in out and (tmp_path / 'metrics.jsonl').is_file()
  assert 'Held-out evaluation at step 3:\n  mean 0.50' in out
  assert out.rstrip().endswith(f'Next:\n  evaluate {tmp_path}')
  loop.run(task, config, str(tmp_path))
  assert 'Nothing to train' in capsys.readouterr().out


def test_throughput_is_steps_over_seconds_and_images_follow_the_batch():
  assert str(loop.Throughput(300, 60.0, 8)) == ('5 steps/s, 40 images/s over 300 steps (1.0 min; the first '
                                                'step, which compiles, not counted)')
  assert str(loop.Throughput(0, 0.0, 8)) == 'too few steps to time'


def test_a_stopped_run_says_how_to_resume(tmp_path):
  task = counting_task(gaussian.get_config('smoke'))
  lines = loop.closing_lines(task, str(tmp_path), 3, 10, start=2, stopped=True)
  assert lines[0] == ('Stopped early at step 3 of 10, after saving a checkpoint. Run the same command '
                      'again (same --workdir) to resume from step 3.')
  assert not any(line.startswith('Next:') for line in lines)


def test_the_closing_commands_run_as_printed(tmp_path, monkeypatch):
  """`make demo` runs .venv/bin/python without activating .venv: the next commands name that interpreter
  and the console scripts beside it (relative to the working directory when inside it), and TensorBoard
  (not a dependency; tensorboardX writes the logs) is offered only with how to install it."""
  bin_dir = tmp_path / '.venv' / 'bin'
  bin_dir.mkdir(parents=True)
  (bin_dir / 's2k-sr').touch()
  monkeypatch.chdir(tmp_path)
  monkeypatch.setattr(sys, 'executable', str(bin_dir / 'python'))
  find_spec = importlib.util.find_spec

  def tensorboard_installed(installed):
    spec = object() if installed else None
    monkeypatch.setattr(importlib.util, 'find_spec',
                        lambda name, *a: spec if name == 'tensorboard' else find_spec(name, *a))

  tensorboard_installed(False)
  task = dataclasses.replace(counting_task(gaussian.get_config('smoke')), next_steps=lambda workdir: [
      f'python evaluate.py --estimator {workdir}',
      's2k-sr photo.png --out sr   # train a restorer first: python train.py --workdir R'])
  lines = loop.closing_lines(task, 'runs/w', 3, 3)
  assert lines[-3:] == ['Next:', '  .venv/bin/python evaluate.py --estimator runs/w',
                        '  .venv/bin/s2k-sr photo.png --out sr   # train a restorer first: '
                        '.venv/bin/python train.py --workdir R']
  assert lines[3] == ('  TensorBoard  runs/w/tensorboard  (TensorBoard is not installed: .venv/bin/python -m '
                      'pip install tensorboard, then .venv/bin/python -m tensorboard.main --logdir '
                      'runs/w/tensorboard)')
  (bin_dir / 'tensorboard').touch()
  tensorboard_installed(True)
  assert loop.closing_lines(task, 'runs/w', 3, 3)[3] == (
      '  TensorBoard  runs/w/tensorboard  (.venv/bin/tensorboard --logdir runs/w/tensorboard)')


def test_train_compiler_options_keep_convolutions_from_ynnpack_on_cpu_only(monkeypatch):
  """On CPU the training step is compiled without YNNPACK's single-convolution fusions (dots and
  reductions stay); other platforms get no options; a user's own XLA_FLAGS choice wins."""
  monkeypatch.setenv('XLA_FLAGS', '--xla_force_host_platform_device_count=8')
  options = loop.train_compiler_options('cpu')
  assert options == {'xla_cpu_experimental_ynn_fusion_type':
                     'LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT,LIBRARY_FUSION_TYPE_REDUCE'}
  assert loop.train_compiler_options('gpu') is None and loop.train_compiler_options('tpu') is None
  # The paper PatchGAN's 4×4 256→512 layer and its kernel gradient: YNNPACK by default, XLA's own with these.
  x, w = jnp.ones((8, 34, 34, 256)), jnp.ones((4, 4, 256, 512))
  conv = lambda w: jax.lax.conv_general_dilated(x, w, (1, 1), 'VALID', dimension_numbers=('NHWC', 'HWIO', 'NHWC'))
  grad = jax.grad(lambda w: conv(w).sum())
  assert '__ynn_fusion' in jax.jit(grad).lower(w).compile().as_text()
  program = jax.jit(grad, compiler_options=options).lower(w).compile().as_text()
  assert 'convolution' in program and '__ynn_fusion' not in program
  monkeypatch.setenv('XLA_FLAGS', '--xla_cpu_experimental_ynn_fusion_type=+individual_convolution')
  assert loop.train_compiler_options('cpu') is None
