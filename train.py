r"""Trains the model a config names (`config.task`, table in `s2k_jax/tasks.py`): the S2K kernel
estimator (paper §3.3) or a restorer (§3.4).

  python train.py --config configs/motion.py --workdir runs/motion
  python train.py --config configs/gaussian.py:cpu --workdir runs/gaussian_cpu --config.train.num_steps=500
  python train.py --config configs/sftmd.py:gaussian_x4,cpu --workdir runs/sftmd_gaussian_x4_cpu

Re-running the same command resumes from the latest checkpoint in --workdir.
"""
from absl import app
from absl import flags
from absl import logging
import jax
from ml_collections import config_flags

from s2k_jax import runtime
from s2k_jax import tasks

FLAGS = flags.FLAGS
flags.DEFINE_string('workdir', None, 'Directory for checkpoints, metrics and figures.')
config_flags.DEFINE_config_file('config', None, 'Experiment config file, e.g. configs/motion.py:cpu.',
                                lock_config=True)
flags.mark_flags_as_required(['config', 'workdir'])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  runtime.quiet_library_logs()
  # Before any other jax call (the log line below starts the backend).
  runtime.exit_on_user_error(lambda: runtime.maybe_initialize_distributed(FLAGS.config.train))
  logging.info('JAX process %d/%d, local devices: %s', jax.process_index(), jax.process_count(),
               jax.local_devices())
  runtime.exit_on_user_error(lambda: tasks.train_and_evaluate(FLAGS.config, FLAGS.workdir))


if __name__ == '__main__':
  app.run(main)
