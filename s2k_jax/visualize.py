"""Figures: estimation grids in the style of the paper's Figure 6 (spectrum, true and estimated kernels).

Pure numpy → uint8 images, written with Pillow, so figures need no plotting stack.
"""
import os

import numpy as np
from PIL import Image
from PIL import ImageDraw


FIGURE_SIZE = 256  # Side, in pixels, that single-kernel and spectrum figures are enlarged to at least.


def to_uint8(x: np.ndarray) -> np.ndarray:
  """[0, 1] floats → 8-bit levels, rounded to nearest (values outside are clipped)."""
  return (np.clip(x, 0.0, 1.0) * 255 + 0.5).astype(np.uint8)


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


ESTIMATION_COLUMNS = ('true map', 'estimated map', 'true kernel', 'estimated kernel')
LABEL_HEIGHT = 14  # Pixels of the column-label strip above a grid.


def _with_column_labels(grid: np.ndarray, names, tile: int, border: int) -> np.ndarray:
  """`grid` (H, W, 3) in [0, 1] under a strip naming its columns (each `tile` px, `border` apart)."""
  header = np.ones((LABEL_HEIGHT, grid.shape[1], 3))
  for j, name in enumerate(names):
    left = j * (tile + border)
    header[:, left:left + tile] = _label(name, tile, LABEL_HEIGHT)[..., None]
  spacer = np.ones((border, grid.shape[1], 3))
  return np.concatenate([header, spacer, grid], axis=0)


def estimation_grid(inputs, true_maps, pred_maps, true_kernels, est_kernels, max_rows: int = 8,
                    border: int = 2, input_label: str = 'spectrum') -> np.ndarray:
  """One row per example: input | true map | estimated map | true kernel | estimated kernel (uint8 RGB),
  under a strip of column labels (`input_label` names the first column)."""
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
  grid = _with_column_labels(np.repeat(grid[..., None], 3, axis=-1), (input_label,) + ESTIMATION_COLUMNS,
                             size * rep, border * rep)
  return to_uint8(grid)


def restoration_grid(lrs, srs, hrs, max_rows: int = 4, border: int = 2,
                     sr_label: str = 'SR') -> np.ndarray:
  """One row per example: LR (nearest-enlarged to the HR size) | SR | HR, under column labels.

  Images are (B, H, W, 3) in [0, 1] (LR at H/s × W/s); tiles under 128 px are enlarged (nearest) to
  at least 128 px so the labels fit. Returns uint8 RGB.
  """
  hrs, lrs, srs = (np.clip(np.asarray(x, np.float64), 0, 1) for x in (hrs, lrs, srs))
  n, height, width = min(max_rows, hrs.shape[0]), hrs.shape[1], hrs.shape[2]
  s = height // lrs.shape[1]
  rep = -(-128 // min(height, width))
  up = lambda x, f: np.repeat(np.repeat(x, f, 0), f, 1)
  tile_w = width * rep
  grid = np.ones((n * (height * rep + border) - border, 3 * (tile_w + border) - border, 3))
  for i in range(n):
    for j, t in enumerate((up(lrs[i], s), srs[i], hrs[i])):
      top, left = i * (height * rep + border), j * (tile_w + border)
      grid[top:top + height * rep, left:left + tile_w] = up(t, rep)
  return to_uint8(_with_column_labels(grid, ('LR', sr_label, 'HR'), tile_w, border))


def _enlarge(unit: np.ndarray) -> np.ndarray:
  """[0, 1] (n, n) → nearest-neighbour enlarged to ≥ FIGURE_SIZE pixels, uint8."""
  rep = max(1, -(-FIGURE_SIZE // unit.shape[0]))
  return to_uint8(np.kron(unit, np.ones((rep, rep))))


def kernel_figure(kernel: np.ndarray) -> np.ndarray:
  """The kernel scaled by its maximum and enlarged with nearest-neighbour blocks (uint8 gray)."""
  k = np.asarray(kernel, np.float64)
  return _enlarge(k / max(k.max(), 1e-12))


def spectrum_figure(inputs: np.ndarray) -> np.ndarray:
  """The generator input (S, S, 1) in [−1, 1] as uint8 gray, enlarged to ≥ FIGURE_SIZE pixels."""
  return _enlarge((np.asarray(inputs)[..., 0] + 1.0) / 2.0)


def save_png(path: str, image: np.ndarray) -> None:
  os.makedirs(os.path.dirname(path) or '.', exist_ok=True)
  Image.fromarray(image).save(path)


def save_tiff16(path: str, image: np.ndarray) -> None:
  """(H, W, 3) RGB or (H, W, 4) RGBA floats in [0, 1] → a 16-bit TIFF (levels rounded to nearest, values
  outside clipped; the 4th sample marked as straight alpha), which `images` reads back exactly. Pillow
  writes no 16-bit colour PNG, so 16-bit results are TIFFs."""
  import tifffile  # A scikit-image dependency.
  levels = (np.clip(image, 0.0, 1.0) * 65535 + 0.5).astype(np.uint16)
  os.makedirs(os.path.dirname(path) or '.', exist_ok=True)
  tifffile.imwrite(path, levels, photometric='rgb',
                   extrasamples=['unassalpha'] if levels.shape[-1] == 4 else None)


def _label(text: str, width: int, height: int = 14) -> np.ndarray:
  """A white strip with `text` in PIL's built-in bitmap font (no font files needed), as floats in [0, 1]."""
  strip = Image.new('L', (width, height), 255)
  ImageDraw.Draw(strip).text((2, 1), text, fill=0)
  return np.asarray(strip, np.float64) / 255.0


def _centre_crop(x: np.ndarray, size: int) -> np.ndarray:
  h, w = x.shape[:2]
  top, left = max(0, (h - size) // 2), max(0, (w - size) // 2)
  return x[top:top + size, left:left + size]


def sr_grid(lrs, srs, hrs, true_kernels, est_kernels=None, crop: int = 128, border: int = 2) -> np.ndarray:
  """Rows of centre crops: LR (nearest-enlarged) | true kernel | [S2K kernel] | each SR method | HR.

  `srs` is a list (one per row) of {method name: SR image}; images are (H, W, 3) in [0, 1] or uint8.
  """
  def rgb(x):
    x = np.asarray(x)
    return x / 255.0 if x.dtype == np.uint8 else np.clip(x, 0, 1)

  columns = ['LR', 'true kernel'] + (['S2K kernel'] if est_kernels is not None else []) + \
      list(srs[0]) + ['HR']
  rows = []
  for i, (lr, sr, hr) in enumerate(zip(lrs, srs, hrs)):
    hr = rgb(hr)
    scale = hr.shape[0] // np.asarray(lr).shape[0]
    size = min(crop, hr.shape[0], hr.shape[1])
    lr_up = np.repeat(np.repeat(rgb(lr), scale, 0), scale, 1)
    tiles = [_centre_crop(lr_up, size), np.repeat(_kernel_tile(true_kernels[i], size)[..., None], 3, -1)]
    if est_kernels is not None:
      tiles.append(np.repeat(_kernel_tile(est_kernels[i], size)[..., None], 3, -1))
    tiles += [_centre_crop(rgb(sr[m]), size) for m in sr] + [_centre_crop(hr, size)]
    row = np.ones((size, len(tiles) * (size + border) - border, 3))
    for j, t in enumerate(tiles):
      row[:t.shape[0], j * (size + border):j * (size + border) + t.shape[1]] = t
    rows.append(row)
  width = max(r.shape[1] for r in rows)
  size = rows[0].shape[0]
  header = np.ones((14, width, 3))
  for j, name in enumerate(columns):
    header[:, j * (size + border):j * (size + border) + size] = _label(name, size)[..., None]
  grid = np.concatenate([header] + [np.pad(r, ((border, 0), (0, width - r.shape[1]), (0, 0)),
                                           constant_values=1) for r in rows], axis=0)
  return to_uint8(grid)


COLOURS = ((31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40))


def histogram(values: dict, xlabel: str, bins: int = 20, width: int = 480, height: int = 240) -> np.ndarray:
  """Overlaid histograms (one colour per entry of `values`) with a legend, as a uint8 RGB image."""
  data = {k: np.asarray(v, np.float64)[np.isfinite(v)] for k, v in values.items()}
  lo = min(float(v.min()) for v in data.values() if v.size)
  hi = max(float(v.max()) for v in data.values() if v.size)
  edges = np.linspace(lo, hi if hi > lo else lo + 1e-12, bins + 1)
  counts = {k: np.histogram(v, edges)[0] for k, v in data.items()}
  top = max(1, max(int(c.max()) for c in counts.values()))
  img = Image.new('RGB', (width, height), (255, 255, 255))
  draw = ImageDraw.Draw(img)
  left, bottom, plot_h = 40, height - 30, height - 60
  bar_w = (width - left - 10) / bins
  for n, (name, c) in enumerate(counts.items()):
    colour = COLOURS[n % len(COLOURS)]
    for b, count in enumerate(c):
      x0 = left + b * bar_w + n * bar_w / len(counts)
      draw.rectangle([x0, bottom - plot_h * count / top, x0 + bar_w / len(counts) - 1, bottom], fill=colour)
    draw.rectangle([left + 5, 5 + 14 * n, left + 15, 15 + 14 * n], fill=colour)
    draw.text((left + 20, 4 + 14 * n), name, fill=(0, 0, 0))
  draw.line([left, bottom, width - 10, bottom], fill=(0, 0, 0))
  draw.line([left, bottom, left, bottom - plot_h], fill=(0, 0, 0))
  draw.text((left, bottom + 4), f'{lo:.3g}', fill=(0, 0, 0))
  draw.text((width - 60, bottom + 4), f'{hi:.3g}', fill=(0, 0, 0))
  draw.text((width // 2 - 10, bottom + 14), xlabel, fill=(0, 0, 0))
  draw.text((4, bottom - plot_h), str(top), fill=(0, 0, 0))
  return np.asarray(img)
