"""Tests for the model table (s2k_jax/tasks.py) and the layout it relies on (docs/architecture.md)."""
import ast
import pathlib

import pytest

from configs import common
from configs import gaussian
from configs import motion
from configs import sftmd as sftmd_config
from configs import usrnet as usrnet_config
from s2k_jax import estimator
from s2k_jax import modelio
from s2k_jax import tasks
from s2k_jax.restorers import sftmd as sftmd_restorer

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / 's2k_jax'


def _imports(path: pathlib.Path, modules: set[str]) -> set[str]:
  """Every s2k_jax module a file imports, at any depth (deferred imports inside functions included);
  `from pkg import sub` imports the submodule, not the package's __init__."""
  names = set()
  for node in ast.walk(ast.parse(path.read_text())):
    if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith('s2k_jax'):
      for alias in node.names:
        sub = f'{node.module}.{alias.name}'
        names.add(sub if sub in modules else node.module)
    elif isinstance(node, ast.Import):
      names.update(a.name for a in node.names if a.name.startswith('s2k_jax'))
  return names


def _module_graph() -> dict[str, set[str]]:
  paths = {}
  for path in PACKAGE.rglob('*.py'):
    rel = path.relative_to(PACKAGE.parent).with_suffix('')
    paths['.'.join(rel.parts[:-1] if rel.name == '__init__' else rel.parts)] = path
  return {m: {i for i in _imports(p, set(paths)) if i in paths and i != m} for m, p in paths.items()}


def test_no_import_cycle_in_the_package():
  """Depth-first search for a back edge in the import graph read from the source (reference: the graph
  itself; a cycle, deferred imports included, fails with its path)."""
  graph = _module_graph()
  state = {}

  def visit(node, path):
    state[node] = 'open'
    for nxt in sorted(graph[node]):
      if state.get(nxt) == 'open':
        raise AssertionError(' -> '.join(path + [node, nxt]))
      if nxt not in state:
        visit(nxt, path + [node])
    state[node] = 'done'

  for node in sorted(graph):
    if node not in state:
      visit(node, [])


def test_lower_layers_import_no_model_or_entry_module():
  """loop (the driver) and modelio (model I/O) import no data or model module; the bottom layer imports
  nothing above it (docs/architecture.md)."""
  graph = _module_graph()
  above_data = {'s2k_jax.estimator', 's2k_jax.family', 's2k_jax.tasks', 's2k_jax.pipeline', 's2k_jax.evaluation', 's2k_jax.cli',
                's2k_jax.export', 's2k_jax.make_testset', 's2k_jax.build_tfds'}
  above_data |= {m for m in graph if m.startswith('s2k_jax.restorers')}
  assert not graph['s2k_jax.loop'] & (above_data | {'s2k_jax.data', 's2k_jax.testsets'})
  assert not graph['s2k_jax.modelio'] & (above_data | {'s2k_jax.data'})
  for bottom in ('kernels', 'degradation', 'spectrum', 'pca', 'losses', 'metrics', 'color', 'images',
                 'visualize', 'noise', 'models.unet', 'models.patchgan', 'models.sftmd', 'models.layers',
                 'models.usrnet', 'models.classifier'):
    assert not graph[f's2k_jax.{bottom}'] & (above_data | {'s2k_jax.data', 's2k_jax.loop', 's2k_jax.modelio'})


def test_every_task_module_has_the_same_shape():
  """Each model module offers the training and inference functions the driver and loaders call."""
  for module in set(tasks.TASKS.values()) | set(tasks.RESTORERS.values()):
    for name in ('CHECKPOINT_KIND', 'make_batch_fn', 'create_train_state', 'train_step', 'eval_step',
                 'summarize_eval', 'task', 'load'):
      assert hasattr(module, name), (module.__name__, name)
  assert tasks.RESTORERS[sftmd_restorer.CHECKPOINT_KIND] is sftmd_restorer
  assert tasks.TASKS['estimator'] is estimator


def test_unknown_task_is_refused(tmp_path):
  config = gaussian.get_config('smoke')
  config.task = 'denoiser'
  with pytest.raises(ValueError, match=r"config.task must be one of \['estimator', 'family', 'sftmd', 'usrnet'\], got 'denoiser'"):
    tasks.train_and_evaluate(config, str(tmp_path))


def test_next_steps_evaluate_the_run_and_pair_it_with_a_shipped_model():
  """What a finished run prints under 'Next:': evaluate.py on its workdir, then s2k-sr with the shipped
  model it goes with (or how to train one)."""
  from configs import mixed  # pylint: disable=g-import-not-at-top
  evaluate, sr = tasks.next_steps(gaussian.get_config('smoke'), 'W')
  assert evaluate == 'python evaluate.py --estimator W --out W/eval   # kernel errors on the held-out photos (Figure 6)'
  assert sr == 's2k-sr your_photo.png --out sr_out --estimator W --family gaussian   # blind ×4 SR with the shipped restorer'
  # A mixed-family estimator goes with the shipped USRNet (every family), whatever --family says.
  assert tasks.next_steps(mixed.get_config('smoke'), 'W')[1] == (
      's2k-sr your_photo.png --out sr_out --estimator W   # blind ×4 SR with the shipped restorer')
  # USRNet serves every scale: the largest, with the shipped Gaussian estimator of that scale.
  evaluate, sr = tasks.next_steps(usrnet_config.get_config('mixed,smoke'), 'R')
  assert evaluate.startswith('python evaluate.py --restorer R --out R/eval   # PSNR/SSIM: bicubic, USRNet')
  assert sr == ('s2k-sr your_photo.png --out sr_out --restorer R --family gaussian --scale 4   # blind ×4 SR '
                'with the shipped gaussian estimator')
  assert tasks.next_steps(sftmd_config.get_config('motion_x2,smoke'), 'R')[1] == (
      's2k-sr your_photo.png --out sr_out --restorer R --family motion --scale 2   # blind ×2 SR with the '
      'shipped motion estimator')


def test_load_restorer_names_a_missing_source(tmp_path):
  with pytest.raises(FileNotFoundError, match='no such checkpoint directory'):
    tasks.load_restorer(str(tmp_path / 'nothing'))


# ---------------------------------------------------------------------------------------------------
# Presets (configs/common.py): tables, not branches.


@pytest.mark.parametrize('preset', ['cpu', 'smoke'])
def test_presets_change_exactly_their_table(preset):
  """Reference: the paper-scale config with the table's fields set by hand."""
  for get, table in ((gaussian.get_config, common.ESTIMATOR_PRESETS),
                     (lambda a=None: sftmd_config.get_config('gaussian_x4' + (f',{a}' if a else '')),
                      common.RESTORER_PRESETS),
                     (lambda a=None: usrnet_config.get_config('gaussian' + (f',{a}' if a else '')),
                      common.USRNET_PRESETS)):
    expected = get().to_dict()
    for dotted, value in table[preset].items():
      section, field = dotted.split('.')
      expected[section][field] = value
    got = get(preset).to_dict()
    got['data'].pop('hr_crop'), expected['data'].pop('hr_crop')  # derived: tested below
    assert got == expected


def test_motion_presets_add_the_motion_table():
  config = motion.get_config('cpu')
  assert config.degradation.motion_bank_size == common.MOTION_PRESETS['cpu']['degradation.motion_bank_size']
  assert 'motion_bank_size' not in gaussian.get_config('cpu').degradation


def test_the_photo_preset_is_the_recipe_of_the_shipped_estimators():
  """`:photo` = `:cpu` plus real-photo LR and Welch spectra, fresh motion trajectories, valid at every
  scale and family; the shipped Gaussian ×4 estimator was trained with exactly its fields."""
  photo = common.ESTIMATOR_PRESETS['photo']
  assert {k: v for k, v in common.ESTIMATOR_PRESETS['cpu'].items() if k not in photo} == {}
  for family in ('gaussian', 'motion', 'disk', 'mixed'):
    config = common.apply_preset(common.get_estimator_config(family), 'photo')
    assert (config.degradation.jpeg_prob, config.spectrum.mode, config.data.hr_crop) == (0.7, 'welch', 384)
    assert config.degradation.get('motion_bank_size', 0) == 0
    for scale in (2, 3, 4):
      config.degradation.scale = scale
      estimator.check_model_fields(config)
  shipped = estimator.load(modelio.pretrained_estimator('gaussian', 4)).config
  for dotted, value in photo.items():
    section, field = dotted.split('.')
    if section != 'train' and field not in ('num_workers', 'read_threads'):
      assert shipped[section][field] == (list(value) if isinstance(value, tuple) else value), dotted
  with pytest.raises(ValueError, match="unknown config preset 'photo'"):
    sftmd_config.get_config('gaussian_x4,photo')


def test_hr_crop_follows_the_spectrum_size_and_scale():
  """The HR crop gives exactly S×S LR crops (estimator) or the LR patch (restorer), also after overrides
  of either field (reference: S·s, 64·s as IKC)."""
  config = gaussian.get_config('cpu')
  assert config.data.hr_crop == 64 * 4
  config.degradation.scale = 3
  assert config.data.hr_crop == 64 * 3
  config.spectrum.size = 48
  assert config.data.hr_crop == 48 * 3
  assert gaussian.get_config().data.hr_crop == 1024
  assert sftmd_config.get_config('disk_x2').data.hr_crop == 128
  assert sftmd_config.get_config('disk_x3,cpu').data.hr_crop == 32 * 3


def test_a_field_of_another_family_is_not_silently_accepted():
  """A Gaussian config has no disk radius: overriding one raises instead of doing nothing."""
  config = gaussian.get_config()
  config.lock()  # As train.py's --config flag does (lock_config=True).
  with pytest.raises(AttributeError):
    config.degradation.radius_range = (1.0, 2.0)
  with pytest.raises(ValueError, match="unknown kernel family 'box'"):
    common.get_degradation_config('box')
