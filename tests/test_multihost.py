"""Two processes on this machine train as one (scripts/launch_local.sh, runtime.maybe_initialize_distributed,
data.train_dataset's one stream, the driver's process-0 writes), and checkpoints move between process
counts (loop.run, checkpoints.has_data_state, data.seek). docs/multihost.md."""
import json
import os
import pathlib
import re
import signal
import socket
import subprocess
import sys
import time

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
# The tests' XLA flags without the device count, which each run below sets.
XLA_FLAGS = ' '.join(f for f in os.environ.get('XLA_FLAGS', '').split()
                     if not f.startswith('--xla_force_host_platform_device_count'))
# Adam ε = 1e-4 as in tests/test_train.py's 1-vs-8-device test: with 1e-8 a coordinate with a ~1e-7
# gradient turns a reduction-order difference (gloo's sum over processes) into a 1e-5 parameter one.
ARGS = ['--config', 'configs/gaussian.py:smoke', '--config.train.eps=1e-4', '--config.train.log_every=1',
        '--config.train.eval_every=2', '--config.train.checkpoint_every=2']


DEVICES = 2  # CPU devices in all, over one process or several


def train(workdir: pathlib.Path, processes: int, steps: int, logs: pathlib.Path) -> str:
  """`steps` of train.py on DEVICES CPU devices in all: one process, or `processes` × DEVICES/processes."""
  args = ARGS + [f'--workdir={workdir}', f'--config.train.num_steps={steps}']
  env = dict(os.environ, JAX_PLATFORMS='cpu', PYTHON=sys.executable, LOGDIR=str(logs))
  if processes == 1:
    command = [sys.executable, 'train.py'] + args
    env['XLA_FLAGS'] = f'--xla_force_host_platform_device_count={DEVICES} {XLA_FLAGS}'
  else:
    command = ['bash', 'scripts/launch_local.sh', str(processes)] + args
    env.update(DEVICES=str(DEVICES // processes), XLA_FLAGS=XLA_FLAGS)
  run = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=500, check=False)
  assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
  return run.stdout


def state_at(workdir: pathlib.Path, step: int):
  """A checkpoint's train state as numpy, whatever the devices that wrote it."""
  path = workdir / 'checkpoints' / str(step) / 'state'
  checkpointer = ocp.StandardCheckpointer()
  meta = checkpointer.metadata(path)
  meta = getattr(meta, 'item_metadata', meta)
  device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
  abstract = jax.tree.map(lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=device), meta)
  return jax.tree.map(np.asarray, checkpointer.restore(path, abstract))


def metrics_of(workdir: pathlib.Path) -> list[dict]:
  return [json.loads(line) for line in (workdir / 'metrics.jsonl').read_text().splitlines()]


def checkpoint_steps(workdir: pathlib.Path) -> list[int]:
  return sorted(int(p.name) for p in (workdir / 'checkpoints').iterdir() if p.name.isdigit())


@pytest.mark.slow
def test_two_processes_train_as_one_and_checkpoints_move_between_process_counts(tmp_path):
  """Run A: steps 1–4 in 1 process × 2 devices. Run B: steps 1–2 in 2 processes × 1 device, resumed for
  steps 3–4 in 1 process × 2. Step 2 of 2 processes must equal step 2 of 1 (same batches, same maths over
  gloo), and the resume must continue the data stream where it stopped although another process count
  saved it (checkpoints.has_data_state, data.seek: the same path whichever count saved it), so A and B end
  equal (≤ 1e-5). metrics.jsonl is written by process 0 alone: one line per logged step and eval.
  Run A is also train.py's end-to-end test: metrics, evaluation, checkpoints and sample figures."""
  a, b = tmp_path / 'a', tmp_path / 'b'
  train(a, 1, 4, tmp_path / 'logs_a')
  assert any('eval/kernel_mae' in line for line in metrics_of(a))
  assert checkpoint_steps(a) == [2, 4]
  assert sorted(p.name for p in (a / 'samples').iterdir()) == ['step_0000002.png', 'step_0000004.png']
  train(b, 2, 2, tmp_path / 'logs_b1')
  resumed = train(b, 1, 4, tmp_path / 'logs_b2')
  assert 'saved by another number of processes: every process resumes the data stream at batch 2' in resumed
  for step in (2, 4):
    leaves_a, leaves_b = jax.tree.leaves(state_at(a, step)), jax.tree.leaves(state_at(b, step))
    assert len(leaves_a) == len(leaves_b) > 50
    worst = max(float(np.max(np.abs(x.astype(np.float64) - y), initial=0.0)) for x, y in zip(leaves_a, leaves_b))
    assert worst <= 1e-5, (step, worst)
  for run in (a, b):
    lines = metrics_of(run)
    train_steps = [line['step'] for line in lines if any(k.startswith('train/') for k in line)]
    eval_steps = [line['step'] for line in lines if any(k.startswith('eval/') for k in line)]
    assert train_steps == [1, 2, 3, 4] and eval_steps == [2, 4], lines
  for line_a, line_b in zip(metrics_of(a), metrics_of(b)):
    assert line_a.keys() == line_b.keys()
    for key, value in line_a.items():
      np.testing.assert_allclose(value, line_b[key], rtol=1e-4, atol=1e-5, err_msg=key)


@pytest.mark.slow
def test_sigterm_to_one_process_stops_all_at_one_saved_step(tmp_path):
  """Preemption of one host: every process saves at the same step and exits 0 (no hang: the save is a
  collective, so a process that stopped alone would wait for the others forever)."""
  workdir, logs = tmp_path / 'w', tmp_path / 'logs'
  args = ARGS + [f'--workdir={workdir}', '--config.train.num_steps=100000', '--config.train.eval_every=100000',
                 '--config.train.checkpoint_every=100000']
  env = dict(os.environ, JAX_PLATFORMS='cpu', PYTHON=sys.executable, LOGDIR=str(logs), DEVICES='1',
             XLA_FLAGS=XLA_FLAGS)
  launcher = subprocess.Popen(['bash', 'scripts/launch_local.sh', '2'] + args, cwd=ROOT, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
  try:
    deadline = time.monotonic() + 300
    while not (workdir / 'metrics.jsonl').exists() or len(metrics_of(workdir)) < 3:
      assert launcher.poll() is None and time.monotonic() < deadline, 'the run did not start'
      time.sleep(0.5)
    second = subprocess.run(['pgrep', '-n', '-f', f'{workdir}.*process_id=1'], capture_output=True, text=True,
                            check=True).stdout.split()[0]
    os.kill(int(second), signal.SIGTERM)
    out, _ = launcher.communicate(timeout=120)
  finally:
    if launcher.poll() is None:
      launcher.kill()
  assert launcher.returncode == 0, out[-3000:]
  stopped = re.search(r'Stopped early at step (\d+) of 100000', out)
  assert stopped, out[-3000:]
  step = int(stopped.group(1))
  assert checkpoint_steps(workdir) == [step]
  assert f'Stopped at step {step} after saving a checkpoint' in (logs / 'process_1.log').read_text()


@pytest.mark.slow
def test_evaluate_on_two_processes_gives_the_numbers_of_one(tmp_path, smoke_estimator_workdir,
                                                           smoke_usrnet_workdir):
  """evaluate.py over 2 processes × 2 devices = over 1 process × 4 (the :smoke estimator and USRNet on
  4 small held-out LR images): the same results.json and per-image rows, written once. The one-process
  run is also evaluate.py's end-to-end test (tests/test_evaluation.py tests the library in-process)."""
  models = ['--estimator', str(smoke_estimator_workdir), '--restorer', str(smoke_usrnet_workdir)]
  env = dict(os.environ, JAX_PLATFORMS='cpu', PYTHON=sys.executable, LOGDIR=str(tmp_path / 'logs'),
             PROGRAM='evaluate.py', DEVICES='2', XLA_FLAGS=XLA_FLAGS)
  one = subprocess.run([sys.executable, 'evaluate.py', *models, f'--out={tmp_path / "one"}', '--limit=2',
                        '--hr_crop=128', '--copies=2'], cwd=ROOT, capture_output=True, text=True, timeout=500,
                       env=dict(env, XLA_FLAGS=f'--xla_force_host_platform_device_count=4 {XLA_FLAGS}'), check=False)
  assert one.returncode == 0, one.stderr[-3000:]  # evaluate.py end to end, on one process:
  assert '| USRNet + S2K kernel |' in one.stdout
  summary = json.loads((tmp_path / 'one' / 'results.json').read_text())
  assert summary['images'] == 4 and summary['family'] == 'gaussian' and summary['scale'] == 4
  two = subprocess.run(['bash', 'scripts/launch_local.sh', '2', *models, f'--out={tmp_path / "two"}',
                        f'--testset={tmp_path / "one" / "testset"}'], cwd=ROOT, env=env, capture_output=True,
                       text=True, timeout=500, check=False)
  assert two.returncode == 0, two.stdout[-3000:] + two.stderr[-3000:]
  results = [json.loads((tmp_path / run / 'results.json').read_text()) for run in ('one', 'two')]
  flat = [jax.tree_util.tree_flatten_with_path(r)[0] for r in results]
  assert [path for path, _ in flat[0]] == [path for path, _ in flat[1]] and len(flat[0]) > 20
  for (path, a), (_, b) in zip(*flat):
    if isinstance(a, float):
      np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6, err_msg=jax.tree_util.keystr(path))
    else:
      assert a == b, jax.tree_util.keystr(path)
  rows = [(tmp_path / run / 'per_image.csv').read_text().splitlines() for run in ('one', 'two')]
  assert len(rows[0]) == len(rows[1]) > 4
  assert two.stdout.count('PSNR') == one.stdout.count('PSNR') > 0  # the report printed once
  assert 'PSNR' not in (tmp_path / 'logs' / 'process_1.log').read_text()


@pytest.mark.slow
def test_a_killed_process_ends_the_others_with_its_name(tmp_path):
  """SIGKILL of process 1 (a crashed host): process 0 stops within the heartbeat timeout (5 s here,
  S2K_HEARTBEAT_TIMEOUT) plus a margin, saying which task was lost, and never hangs."""
  with socket.socket() as probe:
    probe.bind(('127.0.0.1', 0))
    port = probe.getsockname()[1]
  workdir = tmp_path / 'w'
  env = dict(os.environ, JAX_PLATFORMS='cpu', S2K_HEARTBEAT_TIMEOUT='5',
             XLA_FLAGS=f'--xla_force_host_platform_device_count=1 {XLA_FLAGS}')
  common = [sys.executable, 'train.py'] + ARGS + [
      f'--workdir={workdir}', '--config.train.num_steps=100000', '--config.train.eval_every=100000',
      '--config.train.checkpoint_every=100000', '--config.train.distributed=True',
      f'--config.train.coordinator_address=127.0.0.1:{port}', '--config.train.num_processes=2']
  first, second = (subprocess.Popen(common + [f'--config.train.process_id={i}'], cwd=ROOT, env=env,
                                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for i in range(2))
  try:
    deadline = time.monotonic() + 300
    while not (workdir / 'metrics.jsonl').exists() or len(metrics_of(workdir)) < 3:
      assert first.poll() is None and time.monotonic() < deadline, 'the run did not start'
      time.sleep(0.5)
    second.kill()
    killed = time.monotonic()
    out, _ = first.communicate(timeout=60)
    assert time.monotonic() - killed < 60
  finally:
    for process in (first, second):
      if process.poll() is None:
        process.kill()
  assert first.returncode != 0
  assert re.search(r'unhealthy \(stopped sending heartbeats\):\s*1\b', out), out[-3000:]
