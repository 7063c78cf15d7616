"""Tests for s2k_jax/color.py beyond luma (tests/test_metrics.py checks Y against BT.601): the chroma
transfer the SFTMD restorer uses."""
import numpy as np
import pytest

from s2k_jax import color


def _ycbcr(x):
  """MATLAB rgb2ycbcr on 0..255, written out from its matrix (an independent reference)."""
  m = np.array([[65.481, 128.553, 24.966], [-37.797, -74.203, 112.0], [112.0, -93.786, -18.214]])
  return x @ m.T + np.array([16.0, 128.0, 128.0])


def test_with_luma_of_takes_luma_from_one_image_and_chroma_from_the_other():
  rng = np.random.default_rng(0)
  reference, x = rng.random((2, 5, 7, 3), np.float32)
  out = np.asarray(color.with_luma_of(reference, x), np.float64)
  np.testing.assert_allclose(_ycbcr(out)[..., 0], _ycbcr(x.astype(np.float64))[..., 0], atol=1e-3)
  np.testing.assert_allclose(_ycbcr(out)[..., 1:], _ycbcr(reference.astype(np.float64))[..., 1:], atol=1e-3)
  # A grey keeps its hue: the shift added is the same in R, G and B.
  grey = np.full((1, 3), 0.4, np.float32)
  np.testing.assert_allclose(np.ptp(np.asarray(color.with_luma_of(grey, grey * 1.5))), 0.0, atol=1e-6)


def test_with_luma_of_refuses_arrays_of_two_shapes():
  with pytest.raises(ValueError, match='one shape'):
    color.with_luma_of(np.zeros((4, 4, 3)), np.zeros((8, 8, 3)))
