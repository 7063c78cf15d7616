"""Tests for scripts/device_train.sh without a GPU or a training run: its checkpoint packing (the parts
the device tool can return) and unpacking, and its refusals. The training half (train.py stopped by the
time limit, export, resume on CPU) is train.py's own, tested in tests/test_train.py; the whole script was
run end to end by hand (docs/benchmarks.md, "GPU training recipe")."""
import os
import pathlib
import subprocess

ROOT = pathlib.Path(__file__).resolve().parents[1]
SCRIPT = ROOT / 'scripts' / 'device_train.sh'


def device_train(*args, part_bytes=None):
  env = dict(os.environ)
  if part_bytes:
    env['PART_BYTES'] = str(part_bytes)
  return subprocess.run(['bash', str(SCRIPT), *map(str, args)], capture_output=True, text=True, env=env,
                        timeout=120, check=False)


def fake_workdir(root: pathlib.Path) -> pathlib.Path:
  """A workdir as train.py leaves it: two checkpoints, metrics.jsonl, and files that need not travel."""
  workdir = root / 'workdir'
  for step in (2, 10):
    state = workdir / 'checkpoints' / str(step) / 'state'
    state.mkdir(parents=True)
    (state / 'array.bin').write_bytes(os.urandom(30_000 + step))
  (workdir / 'metrics.jsonl').write_text('{"step": 10, "train/l1": 0.5}\n')
  (workdir / 'samples').mkdir()
  (workdir / 'samples' / 'step_0000010.png').write_bytes(b'png')
  return workdir


def test_the_last_checkpoint_travels_in_parts_and_unpacks_into_a_workdir(tmp_path):
  workdir = fake_workdir(tmp_path)
  out = tmp_path / 'out'
  packed = device_train('pack', workdir, out, 'run1', part_bytes=16_384)
  assert packed.returncode == 0, packed.stdout + packed.stderr
  parts = sorted(p.name for p in out.iterdir())
  assert len(parts) >= 2 and parts == [f'run1.ckpt.tar.{i:02d}' for i in range(len(parts))], parts
  assert all((out / p).stat().st_size <= 16_384 for p in parts)
  unpacked = device_train('unpack', out, 'run1', tmp_path / 'here')
  assert unpacked.returncode == 0 and 'unpacked step 10' in unpacked.stdout, unpacked.stdout + unpacked.stderr
  here = tmp_path / 'here'
  assert sorted(p.name for p in (here / 'checkpoints').iterdir()) == ['10']  # the last one only
  for name in ('checkpoints/10/state/array.bin', 'metrics.jsonl'):
    assert (here / name).read_bytes() == (workdir / name).read_bytes()
  assert not (here / 'samples').exists()
  again = device_train('unpack', out, 'run1', here)  # never over a workdir that has checkpoints
  assert again.returncode == 1 and 'already has checkpoints' in again.stdout


def test_a_checkpoint_too_large_to_come_back_is_dropped_and_said(tmp_path):
  out = tmp_path / 'out'
  out.mkdir()
  (out / 'run1.npz').write_bytes(b'bundle')
  packed = device_train('pack', fake_workdir(tmp_path), out, 'run1', part_bytes=4096)  # > 6 parts
  assert packed.returncode == 0, packed.stderr
  assert 'Only the bundle is kept' in packed.stdout
  assert sorted(p.name for p in out.iterdir()) == ['run1.npz']


def test_bad_arguments_are_refused_before_anything_runs(tmp_path):
  bad_name = device_train('run', tmp_path / 'out', 'my run', 10, '--config', 'configs/gaussian.py:smoke')
  assert bad_name.returncode == 2 and "NAME must be letters, digits, '.', '_', '-': my run" in bad_name.stdout
  bad_time = device_train('run', tmp_path / 'out', 'run1', '9m', '--config', 'configs/gaussian.py:smoke')
  assert bad_time.returncode == 2 and 'SECONDS must be a whole number, got 9m' in bad_time.stdout
  missing = device_train('unpack', tmp_path, 'run1', tmp_path / 'w')
  assert missing.returncode == 1 and f'no run1.ckpt.tar.* in {tmp_path}' in missing.stdout
  no_checkpoint = device_train('pack', tmp_path, tmp_path / 'out', 'run1')
  assert no_checkpoint.returncode == 1 and 'no checkpoint in' in no_checkpoint.stdout
  usage = device_train('train')
  assert usage.returncode == 2 and 'usage:' in usage.stdout
