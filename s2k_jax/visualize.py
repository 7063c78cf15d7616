"""Figures: estimation grids in the style of the paper's Figure 6 (spectrum, true and estimated kernels).

Pure numpy → uint8 images, written with Pillow, so figures need no plotting stack.
"""
import os

import numpy as np
from PIL import Image


def _to_unit(x: np.ndarray, lo: float, hi: float) -> np.ndarray:
  return np.clip((x - lo) / max(hi - lo, 1e-12), 0.0, 1.0)


def _kernel_tile(kernel: np.ndarray, size: int) -> np.ndarray:
  """A kernel enlarged with nearest-neighbour blocks to about `size` pixels, scaled by its own max."""
  k = np.asarray(kernel, np.float64)
  rep = max(1, size // k.shape[0])
  tile = np.kron(_to_unit(k, 0.0, k.max()), np.ones((rep, rep)))
  out = np.zeros((size, size))
  off = (size - tile.shape[0]) // 2
  out[off:off + tile.shape[0], off:off + tile.shape[1]] = tile[:size, :size]
  return out


def estimation_grid(inputs, true_maps, pred_maps, true_kernels, est_kernels, max_rows: int = 8,
                    border: int = 2) -> np.ndarray:
  """One row per example: input | true map | estimated map | true kernel | estimated kernel (uint8 RGB)."""
  n = min(max_rows, inputs.shape[0])
  size = inputs.shape[1]
  rows = []
  for i in range(n):
    x = inputs[i, ..., 0]
    tiles = [_to_unit(x, x.min(), x.max()), _to_unit(true_maps[i, ..., 0], -1, 1),
             _to_unit(pred_maps[i, ..., 0], -1, 1), _kernel_tile(true_kernels[i], size),
             _kernel_tile(est_kernels[i], size)]
    row = np.ones((size, len(tiles) * (size + border) - border))
    for j, t in enumerate(tiles):
      row[:, j * (size + border):j * (size + border) + size] = t
    rows.append(row)
  grid = np.ones((n * (size + border) - border, rows[0].shape[1]))
  for i, r in enumerate(rows):
    grid[i * (size + border):i * (size + border) + size] = r
  rep = -(-128 // size)  # Small (CPU-preset) maps are enlarged so tiles are at least 128 px.
  grid = np.kron(grid, np.ones((rep, rep))) if rep > 1 else grid
  return np.repeat((grid * 255 + 0.5).astype(np.uint8)[..., None], 3, axis=-1)


def save_png(path: str, image: np.ndarray) -> None:
  os.makedirs(os.path.dirname(path) or '.', exist_ok=True)
  Image.fromarray(image).save(path)
