"""The catalogue of shipped models (s2k_jax/catalogue.py), their recipes (configs/release.py) and the
script that reproduces them (scripts/reproduce_shipped.py) against the bundles in s2k_jax/weights/."""
import glob
import os
import pathlib
import shlex
import sys

import pytest

from configs import common
from configs import release
from s2k_jax import catalogue
from s2k_jax import degradation
from s2k_jax import kernels
from s2k_jax import modelio

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(__file__)), 'scripts'))
import reproduce_shipped  # pylint: disable=g-import-not-at-top,wrong-import-position

WEIGHTS = os.path.dirname(modelio.pretrained_path(catalogue.SHIPPED[0].file))
# Fields that say where and how often a run wrote things, not what the model learned.
BOOKKEEPING = {'train.log_every', 'train.eval_every', 'train.checkpoint_every', 'train.keep_checkpoints',
               'train.init_from', 'train.distributed', 'data.tfds_data_dir', 'data.num_workers',
               'data.read_threads', 'train.coordinator_address', 'train.num_processes', 'train.process_id'}


def _tuples(value):
  """JSON's lists (nested too) as the tuples a config holds."""
  return tuple(_tuples(v) for v in value) if isinstance(value, (list, tuple)) else value


def _flat(tree, prefix=''):
  out = {}
  for key, value in tree.items():
    if isinstance(value, dict):
      out.update(_flat(value, f'{prefix}{key}.'))
    else:
      out[prefix + key] = _tuples(value)
  return out


def test_every_weights_file_has_one_entry_and_every_entry_a_file():
  files = sorted(os.path.basename(p) for p in glob.glob(os.path.join(WEIGHTS, '*.npz')))
  assert sorted(m.file for m in catalogue.SHIPPED) == files
  assert len({m.name for m in catalogue.SHIPPED}) == len(catalogue.SHIPPED)


def test_one_default_estimator_per_family_scale_and_grid():
  for grid in degradation.LR_GRIDS:
    claims = [(m.family, m.scales[0]) for m in catalogue.SHIPPED
              if m.kind == catalogue.ESTIMATOR and grid in m.default_on]
    assert len(claims) == len(set(claims)), grid
    assert set(claims) == {(f, s) for f in kernels.FAMILIES for s in degradation.SCALES}, grid
  assert catalogue.estimators('centre')[('gaussian', 2)] == 'gaussian_x2_resized_estimator.npz'
  assert catalogue.estimators('direct')[('gaussian', 2)] == 'gaussian_x2_estimator.npz'
  assert catalogue.estimators('centre')[('gaussian', 4)] == 'gaussian_x4_resized_estimator.npz'
  assert catalogue.estimators('direct')[('gaussian', 4)] == 'gaussian_x4_estimator.npz'
  assert catalogue.estimators('centre')[('motion', 4)] == 'motion_x4_resized_estimator.npz'
  assert catalogue.estimators('direct')[('motion', 4)] == 'motion_x4_estimator.npz'
  assert modelio.RESIZED_ESTIMATORS == {('gaussian', 2): 'gaussian_x2_resized_estimator.npz',
                                        ('gaussian', 4): 'gaussian_x4_resized_estimator.npz',
                                        ('motion', 4): 'motion_x4_resized_estimator.npz'}
  assert catalogue.restorers('usrnet')[('disk', 3)] == 'usrnet_mixed.npz'
  assert set(catalogue.restorers('sftmd')) == {('gaussian', 4), ('motion', 4)}
  with pytest.raises(ValueError, match="no shipped model named 'edsr'; shipped: gaussian_x4_estimator"):
    catalogue.by_name('edsr')


def test_one_family_classifier_per_scale_and_grid():
  for grid in degradation.LR_GRIDS:
    claims = [m.scales for m in catalogue.SHIPPED if m.kind == catalogue.CLASSIFIER and grid in m.default_on]
    assert len(claims) == len(set(claims)) and all(len(s) == 1 for s in claims), grid
  assert catalogue.classifiers('direct') == {4: 'family_x4_classifier.npz'}
  assert catalogue.classifiers('centre') == {4: 'family_x4_resized_classifier.npz'}
  assert modelio.pretrained_classifier(4, 'centre').endswith('family_x4_resized_classifier.npz')
  assert modelio.pretrained_classifier(4, 'direct').endswith('family_x4_classifier.npz')
  with pytest.raises(ValueError, match='downsample=random_resizer'):  # the photo recipe, to train one
    modelio.pretrained_classifier(2, 'centre')
  with pytest.raises(ValueError, match="grid"):
    catalogue.classifiers('corner')


def test_recipes_and_release_configs_are_the_same_set():
  stages = [stage for m in catalogue.SHIPPED for stage in m.recipe]
  assert sorted(stages) == sorted(release.RECIPES)
  for m in catalogue.SHIPPED:  # a model's last stage is named after it, or after it with .N
    assert m.recipe[-1] == m.name or m.recipe[-1].rpartition('.')[0] == m.name
  with pytest.raises(ValueError, match="configs/release.py takes the name.*got 'gaussian'"):
    release.get_config('gaussian')


@pytest.mark.parametrize('model', catalogue.SHIPPED, ids=lambda m: m.name)
def test_each_recipe_is_the_config_saved_in_its_bundle(model):
  """What the model learned from (everything but logging and paths) is the same in the bundle and in
  configs/release.py. Fields the bundle predates are left to modelio.saved_config's upgrade."""
  meta, _ = modelio.read_bundle(modelio.pretrained_path(model.file))
  saved = _flat(modelio.saved_config(meta).to_dict())
  recipe = release.get_config(model.recipe[-1])
  made = _flat(recipe.to_dict())
  assert recipe.task == saved['task'] == model.kind
  assert recipe.degradation.family == model.family
  assert {k: saved[k] for k in set(saved) & set(made) - BOOKKEEPING - {'train.num_steps'}} == {
      k: made[k] for k in set(saved) & set(made) - BOOKKEEPING - {'train.num_steps'}}
  # The step exported: the recipe's last step, or the one chosen. Runs stopped by the clock at a
  # constant rate saved a huge num_steps; the step they reached is the recipe's.
  assert meta['step'] == (model.export_step or recipe.train.num_steps)
  if saved['train.schedule'] != 'constant':
    assert saved['train.num_steps'] == recipe.train.num_steps
  if model.raw_weights:
    assert recipe.train.ema_decay > 0


def test_stages_start_from_the_stage_before_and_the_last_export_is_as_shipped(tmp_path):
  model = catalogue.by_name('usrnet_mixed')
  plan = reproduce_shipped.stage_commands(model, str(tmp_path), ['data.tfds_data_dir=/corpus'])
  assert [bundle for bundle, _ in plan] == [str(tmp_path / f'{stage}.npz') for stage in model.recipe]
  for i, (_, (train, export)) in enumerate(plan):
    train, export = shlex.split(train), shlex.split(export)
    assert train[2].endswith(f'configs/release.py:usrnet_mixed.{i + 1}') and '--config.data.tfds_data_dir=/corpus' in train
    starts = [a for a in train if a.startswith('--config.train.init_from=')]
    assert starts == ([f'--config.train.init_from={tmp_path}/usrnet_mixed.{i}.npz'] if i else [])
    assert export[-1] == f'--out={tmp_path}/usrnet_mixed.{i + 1}.npz'
  assert release.get_config('usrnet_mixed.4').train.init_from == 'runs/release/usrnet_mixed.3.npz'
  assert release.get_config('usrnet_mixed.1').train.init_from == ''
  (_, (_, export)), = reproduce_shipped.stage_commands(catalogue.by_name('disk_x2_estimator'), 'r', [])
  assert export.endswith('--step=5000')
  (_, (_, export)), = reproduce_shipped.stage_commands(catalogue.by_name('gaussian_x3_estimator'), 'r', [])
  assert export.endswith('--raw_weights')


def test_script_refuses_unknown_models_and_malformed_overrides(capsys):
  for argv, message in ((['edsr'], "no shipped model named 'edsr'"),
                        (['disk_x2_estimator', '--override', 'steps'], 'write SECTION.FIELD=VALUE'),
                        ([], 'name a shipped model')):
    with pytest.raises(SystemExit):
      reproduce_shipped.main(argv)
    assert message in capsys.readouterr().err
  assert reproduce_shipped.main(['--list']) == 0
  assert 'usrnet_mixed.1 → usrnet_mixed.2' in capsys.readouterr().out


def test_weights_readme_names_every_model_and_its_recipe():
  with open(os.path.join(WEIGHTS, 'README.md'), encoding='utf-8') as f:
    readme = f.read()
  for model in catalogue.SHIPPED:
    assert f'`{model.file}`' in readme, model.file
    assert f'configs/release.py:{model.recipe[-1]}' in readme, model.recipe[-1]


def test_set_fields_refuses_an_unknown_field():
  config = release.get_config('gaussian_x4_estimator')
  with pytest.raises(KeyError, match="no field 'train.num_step'"):
    common.set_fields(config, {'train.num_step': 3})


def test_docs_release_holds_one_training_log_per_stage_of_what_ships():
  logs = pathlib.Path(__file__).resolve().parents[1] / 'docs' / 'release'
  assert sorted(p.name for p in logs.iterdir()) == sorted(
      f'{stage}.jsonl' for model in catalogue.SHIPPED for stage in model.recipe)
