"""Start-up of the command lines (train.py, evaluate.py, s2k-sr, the python -m tools): quiet library
logs, user errors as one line and exit status 1, multi-host initialisation. No paper section: the
entry points' plumbing, kept out of the training driver so that inference never imports training.
"""
import logging as std_logging
import sys
from typing import Any, Callable

from absl import flags
import jax


def quiet_library_logs() -> None:
  """Entry points: orbax and grain log every save and read at INFO from their threads, drowning the
  progress bar; raise the threshold to WARNING unless the user chose one (--verbosity / -v)."""
  if not flags.FLAGS['verbosity'].present:
    std_logging.getLogger().setLevel(std_logging.WARNING)


class NonFiniteLossError(RuntimeError):
  """Raised when a training loss becomes NaN or infinite."""


def exit_on_user_error(fn: Callable[[], Any]) -> Any:
  """Entry points: bad input (files, configs, checkpoints) and a non-finite loss end with the message
  alone on stderr and exit status 1 — the message says what to do; `--verbosity` keeps the traceback."""
  try:
    return fn()
  except (ValueError, FileNotFoundError, NonFiniteLossError) as e:
    if flags.FLAGS['verbosity'].present:
      raise
    print(f'error: {e}', file=sys.stderr)
    sys.exit(1)


def maybe_initialize_distributed(enabled: bool) -> None:
  """Multi-host start-up (TPU pods, multi-node GPU): one call per host before any other jax call.

  Asks nothing of the backend first (jax.process_count() would start it, after which initialize()
  refuses to run); a second call is a no-op.
  """
  if enabled and not jax.distributed.is_initialized():
    jax.distributed.initialize()
