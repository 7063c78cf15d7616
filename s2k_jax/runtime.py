"""Start-up of the command lines (train.py, evaluate.py, s2k-sr, the python -m tools): quiet library
logs, user errors as one line and exit status 1, multi-host initialisation. No paper section: the
entry points' plumbing, kept out of the training driver so that inference never imports training.
"""
import logging as std_logging
import os
import socket
import sys
import threading
import time
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


# Seconds: connecting to the coordinator (an unreachable one is an error after this), and without a
# heartbeat from a process before the others stop (a killed process ends the run, never hangs it).
CONNECT_TIMEOUT = 60
HEARTBEAT_TIMEOUT = int(os.environ.get('S2K_HEARTBEAT_TIMEOUT', 30))  # a flaky network may want more


def _host_and_port(address: str) -> tuple[str, str]:
  """'HOST:PORT' ('[v6]:PORT' too) → (host without brackets, port text)."""
  host, _, port = address.rpartition(':')
  return host.strip('[]'), port


def cluster_settings(train: Any, prefix: str = 'train.') -> dict[str, Any] | None:
  """The explicit cluster of a config's train section (or of evaluate.py's flags, `prefix` '--') →
  jax.distributed.initialize's arguments, None to auto-detect (the three fields unset), or a ValueError
  naming the field that is wrong."""
  name = lambda field: f'{prefix}{field}'
  address, n, i = str(train.coordinator_address), int(train.num_processes), int(train.process_id)
  given = {'coordinator_address': address != '', 'num_processes': n != 0, 'process_id': i != -1}
  if not train.distributed:
    if any(given.values()):
      switch = '--config.train.distributed=True' if prefix == 'train.' else f'{name("distributed")}'
      raise ValueError(f'{name(next(k for k, v in given.items() if v))} is set but {name("distributed")} is '
                       f'False, so it would have no effect: add {switch} (docs/multihost.md).')
    return None
  if not any(given.values()):
    return None
  if not all(given.values()):
    missing = ', '.join(name(k) for k, v in given.items() if not v)
    raise ValueError(f'set {name("coordinator_address")}, {name("num_processes")} and {name("process_id")} '
                     f'together (or none of them, to auto-detect the cluster); missing: {missing}.')
  host, port = _host_and_port(address)
  if not host or not port.isdigit() or not 0 < int(port) < 65536:
    raise ValueError(f'{name("coordinator_address")}={address!r} must be HOST:PORT (process 0\'s address and a '
                     'free port, e.g. 10.0.0.2:1234 or 127.0.0.1:12345).')
  if n < 1:
    raise ValueError(f'{name("num_processes")}={n} must be at least 1.')
  if not 0 <= i < n:
    raise ValueError(f'{name("process_id")}={i} must be in [0, {n}) ({name("num_processes")}={n}).')
  return dict(coordinator_address=address, num_processes=n, process_id=i)


def _wait_for_coordinator(address: str, timeout: float, field: str) -> None:
  """Processes other than 0: until process 0's coordinator accepts a TCP connection, or a ValueError
  naming the address (jax would abort the process without a word on where it tried)."""
  host, port = _host_and_port(address)
  try:
    socket.getaddrinfo(host, int(port))
  except OSError as e:
    raise ValueError(f'{field}={address!r}: the host {host!r} does not resolve ({e}).') from e
  deadline = time.monotonic() + timeout
  while True:
    try:
      with socket.create_connection((host, int(port)), timeout=2):
        return
    except OSError as e:
      if time.monotonic() > deadline:
        raise ValueError(f'no coordinator answered at {field}={address} within {timeout:.0f} s ({e}): start '
                         'process 0 with the same address, and check the host, the port and any firewall '
                         'between the machines.') from e
      time.sleep(0.5)


def maybe_initialize_distributed(train: Any, prefix: str = 'train.') -> None:
  """Multi-host start-up (TPU pods, multi-node GPU, local processes): with train.distributed, one call
  per process before any other jax call, with the explicit cluster of `cluster_settings` or
  auto-detection. Asks nothing of the backend first (jax.process_count() would start it, after which
  initialize() refuses to run); a second call is a no-op. On CPUs, processes exchange through gloo.

  Errors come within CONNECT_TIMEOUT seconds and name the setting: an unreachable coordinator (checked
  here first), no cluster to detect; if processes are missing, jax ends the waiting ones after the
  same time, and a line here first says which setting to check."""
  settings = cluster_settings(train, prefix)
  if not train.distributed or jax.distributed.is_initialized():
    return
  address = f'{prefix}coordinator_address'
  if settings and settings['process_id'] > 0:
    _wait_for_coordinator(settings['coordinator_address'], CONNECT_TIMEOUT, address)
  jax.config.update('jax_cpu_collectives_implementation', 'gloo')  # CPU collectives across processes
  where = (f'{address}={settings["coordinator_address"]}, process {settings["process_id"]} of '
           f'{prefix}num_processes={settings["num_processes"]}' if settings else
           f'no {address}, so auto-detection')
  hint = threading.Timer(max(CONNECT_TIMEOUT - 2, 1), lambda: print(
      f'error: multi-process start-up has waited {CONNECT_TIMEOUT} s for every process to join ({where}); '
      'jax stops it now. Start all processes with the same coordinator address and process count, and '
      f'each with its own {prefix}process_id.', file=sys.stderr, flush=True))
  hint.daemon = True
  hint.start()
  try:
    jax.distributed.initialize(**(settings or {}), initialization_timeout=CONNECT_TIMEOUT,
                               heartbeat_timeout_seconds=HEARTBEAT_TIMEOUT)
  except (RuntimeError, ValueError) as e:
    reason = str(e).splitlines()[0].rstrip('.')
    raise ValueError(f'multi-process start-up failed ({where}): {reason}. Without {address}, '
                     f'{prefix}num_processes and {prefix}process_id the cluster must be detectable (cloud TPU, '
                     'SLURM); see docs/multihost.md.') from e
  finally:
    hint.cancel()
