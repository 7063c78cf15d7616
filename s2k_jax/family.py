"""Kernel-family recognition: which family's S2K estimator reads a photo (`s2k-sr --family auto`).

Not in the paper. S2K trains one estimator per kernel family (§4) and the user picks the family; one
estimator for every family, tried here at two sizes, stayed 1–10 dB of kernel PSNR behind the
per-family ones (docs/results.md §5). This model tells the family from the same LR amplitude spectrum
the estimators read (§3.3, `spectrum.amplitude_spectrum`), and the estimator of that family runs
(docs/conventions.md, "Family recognition").

One module per model, the shape of `estimator.py`:
  * training: `make_batch_fn` (HR crops → LR of a kernel whose family is drawn per image, the same
    draws as the estimators' `degradation.degrade` → amplitude spectrum and family index, on the
    device), `create_train_state`, `train_step` (softmax cross-entropy, Adam), `eval_step`,
    `summarize_eval` and `task` for the shared driver `loop.run`;
  * inference: `load` rebuilds the network from the config saved with a checkpoint or bundle,
    `recognise` gives each LR image's probabilities over `kernels.FAMILIES`, `decide` picks the
    family whose estimator runs (`classify`: both, for one image): the least expected cost under `config.recognition.costs` (what running
    the wrong family's estimator costs), the most probable family by default.
"""
import dataclasses
import functools
from typing import Any

from flax.training import train_state
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from s2k_jax import data
from s2k_jax import degradation
from s2k_jax import images
from s2k_jax import kernels as kernels_lib
from s2k_jax import loop
from s2k_jax import modelio
from s2k_jax import spectrum
from s2k_jax.models import classifier
from s2k_jax.models import layers

CHECKPOINT_KIND = 'family_classifier'
FAMILIES = kernels_lib.FAMILIES  # the order of the logits and probabilities


# ---------------------------------------------------------------------------------------------------
# Training.


def check_config(config: ml_collections.ConfigDict) -> None:
  """The classifier learns to tell the families apart, so it trains on all of them; its Welch spectra
  must average several tiles of a training crop, as they do of a photo."""
  if config.degradation.family != kernels_lib.MIXED:
    raise ValueError(f'a family classifier learns to tell {", ".join(FAMILIES)} kernels apart: train it '
                     f'with degradation.family={kernels_lib.MIXED!r}, not {config.degradation.family!r}.')
  spectrum.check_training_crop(config)
  decision_costs(config)


def decision_costs(config: ml_collections.ConfigDict) -> np.ndarray:
  """config.recognition.costs as a checked (F, F) array: [t, f] = what running family f's estimator on LR
  of family t costs (≥ 0, 0 on the diagonal), rows and columns in FAMILIES order."""
  n = len(FAMILIES)
  given = config.get('recognition', {}).get('costs')
  try:
    costs = np.asarray(given, np.float64)
  except (TypeError, ValueError):  # ragged rows, or not numbers
    costs = np.full((0,), np.nan)
  off_diagonal = costs[~np.eye(n, dtype=bool)] if costs.shape == (n, n) else costs
  if (costs.shape != (n, n) or not np.all(np.isfinite(costs)) or np.any(np.diag(costs))
      or not np.all(off_diagonal > 0)):
    raise ValueError(f'recognition.costs must be {n} rows of {n} costs (rows: the true family, columns: the '
                     f'estimator run; {", ".join(FAMILIES)}), 0 on the diagonal and > 0 elsewhere; got {given}.')
  return costs


def create_model(config: ml_collections.ConfigDict) -> classifier.FamilyClassifier:
  groups = classifier.FamilyClassifier.groups
  if not config.model.features or any(int(f) <= 0 or int(f) % groups for f in config.model.features):
    raise ValueError(f'model.features must be positive multiples of {groups} (GroupNorm groups), e.g. '
                     f'(16, 32, 64, 128); got {tuple(config.model.features)}.')
  return classifier.FamilyClassifier(features=tuple(int(f) for f in config.model.features),
                                     hidden=int(config.model.hidden), num_families=len(FAMILIES),
                                     dtype=layers.compute_dtype(config.model.dtype, 'model.dtype'))


def make_batch_fn(config: ml_collections.ConfigDict):
  """fn(hr uint8 (B, C, C, 3), key) → dict(inputs (B, S, S, 1) spectra, family (B,) int32 index into
  FAMILIES, kernel (B, k, k)), jit-able. The kernels, noise, JPEG and resizer are the ones
  `degradation.degrade(hr, key, config.degradation)` draws for the same key."""
  check_config(config)
  deg = ml_collections.FrozenConfigDict(config.degradation)
  size, mode = int(config.spectrum.size), str(config.spectrum.mode)

  def batch_fn(hr_uint8: jax.Array, key: jax.Array) -> dict[str, jax.Array]:
    hr = images.to_float(jnp.asarray(hr_uint8))
    kernel_key, noise_key = jax.random.split(key)  # as degradation.degrade splits it
    kernels, families = kernels_lib.sample_kernels_and_families(kernel_key, hr.shape[0], deg)
    lr = degradation.degrade_with_kernels(hr, kernels, noise_key, deg)['lr']
    return dict(inputs=spectrum.amplitude_spectrum(lr, size=size, mode=mode), family=families,
                kernel=kernels)

  return batch_fn


def create_train_state(config: ml_collections.ConfigDict, key: jax.Array) -> train_state.TrainState:
  model = create_model(config)
  size = int(config.spectrum.size)
  params = model.init(key, jnp.zeros((1, size, size, 1), jnp.float32))['params']
  return train_state.TrainState.create(apply_fn=model.apply, params=params, tx=loop.create_optimizer(config))


def train_step(state: train_state.TrainState, batch: dict[str, jax.Array], key: jax.Array, *,
               config: ml_collections.ConfigDict) -> tuple[train_state.TrainState, dict[str, jax.Array]]:
  """One Adam step on the mean softmax cross-entropy of the family logits."""
  del key, config  # deterministic network; the batch carries the randomness

  def loss_fn(params):
    logits = state.apply_fn({'params': params}, batch['inputs'])
    loss = optax.softmax_cross_entropy_with_integer_labels(logits, batch['family']).mean()
    return loss, logits

  (loss, logits), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
  accuracy = jnp.mean(jnp.argmax(logits, -1) == batch['family'])
  return state.apply_gradients(grads=grads), dict(loss=loss, accuracy=accuracy)


def eval_step(state, batch, *, config=None):
  del config
  probs = jax.nn.softmax(state.apply_fn({'params': state.params}, batch['inputs']))
  return dict(probs=probs, predicted=jnp.argmax(probs, -1))


def checkpoint_meta(config: ml_collections.ConfigDict) -> dict:
  return dict(kind=CHECKPOINT_KIND, config=config.to_dict(), families=list(FAMILIES))


def summarize_eval(out, eval_batch) -> tuple[dict[str, float], None]:
  """Accuracy on the fixed eval batch, overall and per true family (its recall); no figure."""
  true, predicted = np.asarray(eval_batch['family']), np.asarray(out['predicted'])
  scalars = {'accuracy': float(np.mean(predicted == true))}
  for i, name in enumerate(FAMILIES):
    if np.any(true == i):
      scalars[f'accuracy_{name}'] = float(np.mean(predicted[true == i] == i))
  return scalars, None


def describe_eval(scalars) -> list[str]:
  """The closing summary's reading of the latest eval scalars."""
  if 'accuracy' not in scalars:
    return []
  per = ', '.join(f'{name} {scalars[f"accuracy_{name}"]:.0%}' for name in FAMILIES
                  if f'accuracy_{name}' in scalars)
  return [f'family recognised on {scalars["accuracy"]:.0%} of the eval batch (chance '
          f'{1 / len(FAMILIES):.0%}; per true family: {per}).']


def task(config: ml_collections.ConfigDict) -> loop.Task:
  """The family classifier as a task of the shared training driver."""
  inputs = data.task_inputs(config)
  create_model(config)  # checks model.dtype before any image is read
  batch_fn = make_batch_fn(config)
  return loop.Task(
      name='family', kind=CHECKPOINT_KIND, meta=checkpoint_meta(config), **inputs,
      make_batch=lambda host, key: batch_fn(host['hr'], key),
      create_state=functools.partial(create_train_state, config),
      train_step=functools.partial(train_step, config=config),
      eval_step=eval_step, summarize_eval=summarize_eval,
      progress_keys=('loss', 'accuracy'), describe_eval=describe_eval)


# ---------------------------------------------------------------------------------------------------
# Inference.


@dataclasses.dataclass(frozen=True)
class Classifier:
  config: ml_collections.ConfigDict
  state: modelio.InferenceState
  step: int
  directory: str       # the checkpoints directory or bundle file it was loaded from
  costs: np.ndarray    # `decision_costs(config)`, checked once when loaded

  @property
  def scale(self) -> int:
    return int(self.config.degradation.scale)


def load(source: str, step: int | None = None) -> Classifier:
  """A family classifier from a model bundle or a training workdir (latest step unless `step`)."""
  config, state, step, path, meta = modelio.load_for_inference(
      source, CHECKPOINT_KIND, lambda config: functools.partial(create_train_state, config), step)
  if meta.get('families') != list(FAMILIES):
    raise ValueError(f'{source}: its probabilities are over the families {meta.get("families")}, this version\'s '
                     f'over {list(FAMILIES)}; retrain it (python train.py --config configs/family.py:photo).')
  return Classifier(config=config, state=state, step=step, directory=path,
                    costs=decision_costs(config))  # checked before any image is read


@functools.partial(jax.jit, static_argnames=('size', 'mode'))
def _probabilities(state, lr, *, size, mode):
  return jax.nn.softmax(state.apply_fn({'params': state.params}, spectrum.amplitude_spectrum(lr, size, mode)))


def recognise(clf: Classifier, lr: Any) -> np.ndarray:
  """LR batch (B, h, w, 3) in [0, 1] (uint8 is rescaled) → (B, len(FAMILIES)) probabilities, read off
  the amplitude spectrum the classifier was trained on (its spectrum size and mode: a whole photo of any
  size through the Welch mode)."""
  lr = jnp.asarray(lr)
  if lr.dtype == jnp.uint8:
    lr = images.to_float(lr)
  c = clf.config.spectrum
  return np.asarray(_probabilities(clf.state, lr, size=int(c.size), mode=str(c.mode)))


def decide(probabilities: np.ndarray, costs: np.ndarray | None = None) -> int:
  """The family (index into FAMILIES) whose estimator has the least expected cost, Σ_t p(t)·costs[t, f],
  for one image's probabilities; without costs, the most probable one."""
  p = np.asarray(probabilities, np.float64)
  return int(np.argmax(p) if costs is None else np.argmin(p @ np.asarray(costs, np.float64)))


def describe(probabilities: np.ndarray) -> str:
  """One image's probabilities for a reader: 'gaussian 62%, motion 35%, disk 3%'."""
  return ', '.join(f'{name} {p:.0%}' for name, p in zip(FAMILIES, np.asarray(probabilities)))


def recognised(probabilities: np.ndarray, costs: np.ndarray | None = None) -> tuple[str, float]:
  """One image's probabilities → (the family `decide` picks, its probability)."""
  i = decide(probabilities, costs)
  return FAMILIES[i], float(probabilities[i])


def classify(clf: Classifier, lr: Any) -> tuple[str, np.ndarray]:
  """One LR image (h, w, 3) → (the family whose estimator runs, decided with the classifier's costs; its
  probabilities over FAMILIES): what `s2k-sr --family auto` does per image."""
  probabilities = recognise(clf, jnp.asarray(lr)[None])[0]
  return recognised(probabilities, clf.costs)[0], probabilities
