"""Shell commands as printed to users: runnable as shown, from where they are (no paper section: the
front ends' wording). `make demo` runs .venv/bin/python without activating .venv, so neither `python`
nor the console scripts are on the user's PATH.
"""
import importlib.util
import os
import re
import shlex
import sys

# Console scripts the closing lines name, with the module each runs (`python -m`) when the script is not
# installed beside the interpreter.
_CONSOLE_SCRIPTS = {'s2k-sr': 's2k_jax.cli', 'tensorboard': 'tensorboard.main'}


def _shown_path(path: str) -> str:
  """`path` relative to the working directory when inside it (`.venv/bin/python`), else absolute."""
  relative = os.path.relpath(path)
  if relative == os.pardir or relative.startswith(os.pardir + os.sep):
    return shlex.quote(path)
  # A bare name would be looked up on PATH by the shell, not in the working directory.
  return shlex.quote(relative if os.sep in relative else os.path.join(os.curdir, relative))


def _program(name: str) -> str:
  """How to run `python` or a console script from this process's working directory."""
  interpreter = sys.executable or 'python'
  if name == 'python':
    return _shown_path(interpreter)
  script = os.path.join(os.path.dirname(interpreter), name)
  if os.path.isfile(script):
    return _shown_path(script)
  return f'{_shown_path(interpreter)} -m {_CONSOLE_SCRIPTS[name]}'


def runnable(command: str) -> str:
  """A command as typed in an activated environment, runnable as printed: `python` and the console
  scripts where a command starts (the line's start, or after ': ', '; ', '&& ', '| ') become this
  interpreter and the scripts beside it. `make demo` runs .venv/bin/python without activating .venv,
  so neither is on the user's PATH."""
  programs = '|'.join(map(re.escape, ('python', *_CONSOLE_SCRIPTS)))
  return re.sub(rf'(?:^|(?<=[:;&|] ))({programs})(?=\s|$)', lambda m: _program(m.group(1)), command)


def tensorboard_hint(logdir: str) -> str:
  """How to view `logdir`: TensorBoard if installed; the logs are written by tensorboardX, which does
  not bring it."""
  view = runnable(f'tensorboard --logdir {logdir}')
  if importlib.util.find_spec('tensorboard') is not None:
    return view
  return f'TensorBoard is not installed: {runnable("python -m pip install tensorboard")}, then {view}'


def in_source_tree() -> bool:
  """Whether this s2k_jax runs from a clone of the repository (train.py and configs/ beside it), not
  from an installed wheel, which holds only the package."""
  return os.path.isfile(os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'train.py'))


def train_command(args: str) -> str:
  """`python train.py ARGS` as advice in a message; from an installed wheel, with where to run it."""
  command = f'python train.py {args}'
  if in_source_tree():
    return command
  return (f'{command}, from a clone of the s2k-jax source repository (train.py and configs/ are not in the '
          'installed package)')
