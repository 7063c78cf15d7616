"""Tests for s2k_jax/commands.py: commands printed runnable as shown."""
import sys

from s2k_jax import commands


def test_commands_name_this_interpreter_and_its_scripts(tmp_path, monkeypatch):
  bin_dir = tmp_path / '.venv' / 'bin'
  bin_dir.mkdir(parents=True)
  monkeypatch.chdir(tmp_path)
  monkeypatch.setattr(sys, 'executable', str(bin_dir / 'python'))
  assert commands.runnable('python evaluate.py') == '.venv/bin/python evaluate.py'
  (bin_dir / 's2k-sr').touch()
  assert commands.runnable('s2k-sr photo.png') == '.venv/bin/s2k-sr photo.png'
  # A console script not beside the interpreter runs as its module; run from the interpreter's own
  # folder, it is ./python (a bare name is looked up on PATH); from outside the working directory, its
  # full path.
  (bin_dir / 's2k-sr').unlink()
  assert commands.runnable('s2k-sr photo.png') == '.venv/bin/python -m s2k_jax.cli photo.png'
  monkeypatch.chdir(bin_dir)
  assert commands.runnable('python -c 1') == './python -c 1'
  (tmp_path / 'elsewhere').mkdir()
  monkeypatch.chdir(tmp_path / 'elsewhere')
  assert commands.runnable('python -c 1') == f'{bin_dir / "python"} -c 1'
  # Only where a command starts.
  (bin_dir / 'tensorboard').touch()
  assert commands.runnable('pip install tensorboard  # then: tensorboard') == (
      f'pip install tensorboard  # then: {bin_dir / "tensorboard"}')


def test_train_advice_says_where_train_py_is_for_an_installed_package(monkeypatch):
  assert commands.in_source_tree()  # the tests run from the repository
  assert commands.train_command('--config configs/usrnet.py') == 'python train.py --config configs/usrnet.py'
  monkeypatch.setattr(commands, 'in_source_tree', lambda: False)
  assert commands.train_command('--config configs/usrnet.py') == (
      'python train.py --config configs/usrnet.py, from a clone of the s2k-jax source repository '
      '(train.py and configs/ are not in the installed package)')
