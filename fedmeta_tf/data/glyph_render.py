"""Glyph rendering for the glyphs dataset: fonts, pen strokes, deduplication.

Draws a character as handwriting from the fonts matplotlib ships (DejaVu,
STIX): the glyph is thinned to its skeleton (Zhang-Suen), inked again with a
round pen of random width and distorted (affine, elastic field; Simard et al.
2003), 28x28 uint8, ink 255 on 0, like the downsampled Omniglot (Lake et al.
2015) that the Reptile experiments use. Also finds the usable characters of the
fonts and drops those that would collide under the Omniglot protocol (near
duplicates and turns by 90/180/270 degrees). `fedmeta_tf.data.glyphs` groups,
splits, caches and serves the result.
"""

from __future__ import annotations

import bisect
import dataclasses
import functools
import multiprocessing
import os
import re
import unicodedata
import warnings
from typing import Callable, Optional, Sequence

import matplotlib
from matplotlib import ft2font
import numpy as np
from scipy import ndimage

from fedmeta_tf.data import class_pool as class_pool_lib

IMAGE_SIZE = 28
EXAMPLES_PER_CLASS = 20
_CANVAS = 2 * IMAGE_SIZE  # Drawn at 56x56, area-averaged down to 28x28.
_BOX = 36  # Canvas pixels spanned by the longer side of an undistorted glyph.
_GLYPH_PX = 48  # Rasterisation size (pixels per em).
_PAD = 8  # Glyph pixels of margin around a pen field.
_PEN_PX = 4.5  # Mean pen width in canvas pixels (2.25 px at 28x28).
_MIN_GLYPH_PX = 10  # Smaller glyphs (dots, commas, accents) are not classes.
_MIN_PART_FRACTION = 0.4  # Glyphs of dots only (: ∴ ⁛) have no part this long.
# Glyphs whose thickest stroke (twice the largest distance from ink to paper)
# spans more than twice this fraction of their longer side are blobs (filled
# squares, discs, blocks, bullets), not strokes: not classes. Letters: < 0.12.
MAX_STROKE_FRACTION = 0.2
# A character is a duplicate when the cosine similarity of its mean-centred
# canonical image (28x28, blurred 0.7 px) with that of an earlier kept one,
# upright or turned by 90/180/270 degrees, exceeds this. Homoglyphs and turned
# letters score > 0.97, o/O and c/C ~0.97, one letter with two small accents
# 0.9-0.95; the 0.90-0.93 band is mostly turned shapes and accent variants
# (with a few distinct pairs such as O/D, which go too).
DEDUP_COSINE_THRESHOLD = 0.9

FONT_DIR = os.path.join(matplotlib.get_data_path(), "fonts", "ttf")
# Upright regular faces; the first that has a glyph draws its canonical image.
# Bold faces would add nothing: every glyph is redrawn from its skeleton.
FONT_FILES = ("DejaVuSans.ttf", "DejaVuSerif.ttf", "DejaVuSansMono.ttf",
              "STIXGeneral.ttf")
# Codepoint ranges and their family. Left out on purpose: combining marks,
# modifier letters, Braille (dot patterns), Lisu (turned Latin capitals),
# mahjong/domino/cards (details too fine for 28x28), math alphanumerics.
_BLOCKS = tuple((int(lo, 16), int(hi, 16), name) for lo, hi, name in (
    re.fullmatch(r"(\w+)-(\w+) (.+)", row.strip()).groups() for row in """
0000-024F Latin;0250-02AF IPA;0370-03FF Greek;0400-052F Cyrillic;0530-058F Armenian;
0590-05FF Hebrew;0600-06FF Arabic;07C0-07FF NKo;0E80-0EFF Lao;10A0-10FF Georgian;
1400-167F Canadian Syllabics;1680-169F Ogham;1D00-1DBF IPA;1E00-1EFF Latin;
1F00-1FFF Greek;2000-206F Punctuation;2070-20CF Letterlike;2100-218F Letterlike;
2190-21FF Arrows;2200-22FF Math Operators;2300-245F Technical;2460-24FF Enclosed;
2500-259F Box Drawing;25A0-25FF Shapes;2600-26FF Symbols;2700-27BF Dingbats;
27C0-27EF Math Symbols;27F0-27FF Arrows;2900-297F Arrows;2980-29FF Math Symbols;
2A00-2AFF Math Operators;2B00-2BFF Arrows;2C60-2C7F Latin;2D00-2D2F Georgian;
2D30-2D7F Tifinagh;2E00-2E7F Punctuation;4DC0-4DFF Yijing;A640-A69F Cyrillic;
A700-A7FF Latin;10300-1032F Old Italic;1D300-1D35F Yijing;1F600-1F64F Emoticons
""".split(";")))
_BLOCK_STARTS = [b[0] for b in _BLOCKS]


@dataclasses.dataclass(frozen=True)
class GlyphClass:
  """A class: a character, the fonts its examples use, its family/group/split."""
  codepoint: int
  fonts: tuple[str, ...]
  family: str = ""
  group: str = ""
  split: int = class_pool_lib.SPLIT_UNSPECIFIED

  @property
  def name(self) -> str:
    return f"U+{self.codepoint:04X} {unicodedata.name(chr(self.codepoint), '')}"


def _as_class(cls: GlyphClass | int) -> GlyphClass:
  """A bare codepoint becomes a class drawn from every font that has it."""
  if isinstance(cls, GlyphClass):
    return cls
  fonts = tuple(f for f in FONT_FILES if _font(f).get_char_index(int(cls)))
  if not fonts:
    raise ValueError(f"no font in FONT_FILES has U+{int(cls):04X}")
  return GlyphClass(int(cls), fonts)


@functools.lru_cache(maxsize=None)
def _font(file: str) -> ft2font.FT2Font:
  return ft2font.FT2Font(os.path.join(FONT_DIR, file))


def _glyph(file: str, codepoint: int) -> Optional[np.ndarray]:
  """The glyph's bitmap in [0, 1] cropped to its ink; None if it has none."""
  font = _font(file)
  if not font.get_char_index(codepoint):
    return None
  font.clear()
  font.set_size(_GLYPH_PX, 72)
  with warnings.catch_warnings():  # "Arabic not supported natively": isolated
    warnings.simplefilter("ignore")  # letters need no shaping.
    font.set_text(chr(codepoint), 0.0, flags=ft2font.LOAD_NO_HINTING)
  font.draw_glyphs_to_bitmap(antialiased=True)
  image = np.asarray(font.get_image(), np.float32) / 255.0
  rows, cols = np.nonzero(image > 0.5)
  if rows.size == 0:
    return None
  return image[rows.min():rows.max() + 1, cols.min():cols.max() + 1]


def _thinning_tables() -> tuple[np.ndarray, np.ndarray]:
  """Zhang-Suen deletion rules of both sub-steps, by 8-neighbour code."""
  n = (np.arange(256) >> np.arange(8)[:, None]) & 1  # n[k]: P(k+2), clockwise.
  count, runs = n.sum(0), ((n == 0) & (np.roll(n, -1, axis=0) == 1)).sum(0)
  base = (count >= 2) & (count <= 6) & (runs == 1)
  return (base & (n[0] * n[2] * n[4] == 0) & (n[2] * n[4] * n[6] == 0),
          base & (n[0] * n[2] * n[6] == 0) & (n[0] * n[4] * n[6] == 0))


_THINNING_TABLES = _thinning_tables()


def _thin(ink: np.ndarray) -> np.ndarray:
  """Zhang-Suen thinning of a boolean image to 1-pixel-wide strokes."""
  img = np.pad(ink, 1).astype(np.uint8)
  changed = True
  while changed:
    changed = False
    for table in _THINNING_TABLES:  # Neighbours P2..P9, clockwise from north:
      code = sum(v << k for k, v in enumerate((
          img[:-2, 1:-1], img[:-2, 2:], img[1:-1, 2:], img[2:, 2:],
          img[2:, 1:-1], img[2:, :-2], img[1:-1, :-2], img[:-2, :-2])))
      drop = (img[1:-1, 1:-1] == 1) & table[code]
      if drop.any():
        img[1:-1, 1:-1][drop] = 0
        changed = True
  return img[1:-1, 1:-1].astype(bool)


def _pen_field(file: str, codepoint: int) -> Optional[tuple[np.ndarray, float]]:
  """Distance to the glyph's skeleton (glyph pixels) and its scale to `_BOX`.

  Inking near the skeleton draws any font's glyph with a round pen, by hand.
  """
  glyph = _glyph(file, codepoint)
  if glyph is None:
    return None
  ink = np.pad(glyph > 0.5, _PAD)
  skeleton = _thin(ink)
  skeleton = skeleton if skeleton.any() else ink  # Thinning erases 2x2 dots.
  field = ndimage.distance_transform_edt(~skeleton).astype(np.float32)
  return field, _BOX / max(glyph.shape)


def _render(pen_field: tuple[np.ndarray, float],
            rng: Optional[np.random.Generator]) -> np.ndarray:
  """Draws a glyph, distorted if `rng` is given; float [28, 28] in [0, 1].

  Canvas points map to glyph points through one inverse affine (scale to
  `_BOX`; random scale 0.8-1.1, aspect, rotation +-15 deg, shear, shift) and,
  when distorting, a smooth random displacement field (Simard et al. 2003).
  One bilinear `map_coordinates` reads the skeleton distance there; a pen of
  random width inks what is close; the 56x56 canvas is area-averaged to 28x28.
  """
  field, scale = pen_field
  matrix, shift, pen = np.eye(2), np.zeros(2), _PEN_PX
  if rng is not None:
    scale *= rng.uniform(0.8, 1.1)
    aspect = np.exp(rng.normal(0.0, 0.08))
    angle = np.deg2rad(rng.uniform(-15.0, 15.0))
    cos, sin = np.cos(angle), np.sin(angle)
    matrix = (np.array([[cos, -sin], [sin, cos]])
              @ np.array([[1.0, rng.uniform(-0.25, 0.25)], [0.0, 1.0]])
              @ np.diag([aspect, 1.0 / aspect]))
    shift = rng.uniform(-3.0, 3.0, size=2)
    pen *= rng.uniform(0.75, 1.3)
  grid = np.indices((_CANVAS, _CANVAS), np.float64).reshape(2, -1)
  grid -= (_CANVAS - 1) / 2.0 + shift[:, None]
  if rng is not None:  # Elastic field: smoothed noise, RMS 1-2.5 canvas px.
    noise = ndimage.gaussian_filter(
        rng.uniform(-1.0, 1.0, (2, _CANVAS, _CANVAS)), (0, 6, 6), truncate=2.5)
    grid += (noise * rng.uniform(1.0, 2.5) / (noise.std() + 1e-9)).reshape(2, -1)
  source = (np.linalg.inv(matrix * scale) @ grid
            + ((np.array(field.shape) - 1) / 2.0)[:, None])
  distance = ndimage.map_coordinates(field, source, order=1, cval=1e3,
                                     prefilter=False).reshape(_CANVAS, _CANVAS)
  canvas = np.clip(pen / 2 + 0.5 - distance * scale, 0.0, 1.0)
  return canvas.reshape(IMAGE_SIZE, 2, IMAGE_SIZE, 2).mean(axis=(1, 3))


def render_glyph_classes(classes: Sequence[GlyphClass | int], *, seed: int = 0,
                         examples: int = EXAMPLES_PER_CLASS,
                         first_index: int = 0) -> np.ndarray:
  """Renders `examples` handwriting-like images per class; uint8 [C, E, 28, 28].

  Args:
    classes: `GlyphClass`es, or codepoints (drawn from every font with them).
    seed: dataset seed (>= 0).
    examples: examples per class.
    first_index: dataset index of `classes[0]`. Class i draws its randomness
      from SeedSequence([seed, first_index + i]) only, so chunks rendered in
      different processes equal the same classes rendered together.
  """
  out = np.zeros([len(classes), examples, IMAGE_SIZE, IMAGE_SIZE], np.uint8)
  for i, cls in enumerate(map(_as_class, classes)):
    fields = [f for f in (_pen_field(f, cls.codepoint) for f in cls.fonts) if f]
    if not fields:
      raise ValueError(f"no font renders U+{cls.codepoint:04X}")
    rng = np.random.default_rng(np.random.SeedSequence([seed, first_index + i]))
    for e in range(examples):
      image = _render(fields[rng.integers(len(fields))], rng)
      out[i, e] = np.clip(np.rint(image * 255.0), 0, 255)
  return out


def _canonical(classes: Sequence[GlyphClass]) -> np.ndarray:
  """Undistorted images of `classes` in their first font; float [C, 28, 28]."""
  return np.stack([_render(_pen_field(c.fonts[0], c.codepoint), None)
                   for c in classes]).reshape(-1, IMAGE_SIZE, IMAGE_SIZE)


def chunk_bounds(count: int, pieces: int) -> list[tuple[int, int]]:
  """`[start, stop)` of up to `pieces` near-equal non-empty parts of `count`."""
  bounds = np.linspace(0, count, pieces + 1).astype(int)
  return [(int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:]) if b > a]


def map_chunks(fn: Callable, chunks: list, workers: int) -> list:
  """`[fn(c) for c in chunks]`, in `workers` forked processes if > 1."""
  if workers <= 1 or "fork" not in multiprocessing.get_all_start_methods():
    return [fn(c) for c in chunks]
  # fork, not spawn: children do not re-import TF (they use none). They reopen
  # the fonts: FreeType reads glyphs lazily through a file offset that forked
  # processes would share, garbling outlines.
  with multiprocessing.get_context("fork").Pool(
      workers, initializer=_font.cache_clear) as pool:
    return pool.map(fn, chunks, chunksize=1)


def candidate_classes() -> list[GlyphClass]:
  """Every usable character of `FONT_FILES`, in codepoint order.

  Usable: in `_BLOCKS`; a letter (no modifier letter), digit, symbol (no
  spacing accent) or punctuation without a compatibility decomposition
  (accented letters stay); a glyph `_MIN_GLYPH_PX` tall or wide, with strokes
  (see `MAX_STROKE_FRACTION`) and one part spanning `_MIN_PART_FRACTION`.
  """
  charmaps = {f: _font(f).get_charmap() for f in FONT_FILES}
  out = []
  for cp in sorted(set().union(*charmaps.values())):
    block = bisect.bisect_right(_BLOCK_STARTS, cp) - 1
    category = unicodedata.category(chr(cp))
    if (block < 0 or cp > _BLOCKS[block][1] or category[0] not in "LNSP" or
        category in ("Lm", "Sk") or
        unicodedata.decomposition(chr(cp)).startswith("<")):
      continue
    fonts = tuple(f for f in FONT_FILES if charmaps[f].get(cp))
    glyph = _glyph(fonts[0], cp)
    if glyph is None or max(glyph.shape) < _MIN_GLYPH_PX:
      continue
    ink, size = np.pad(glyph > 0.5, 1), max(glyph.shape)
    longest_part = max(max(s.stop - s.start for s in part)
                       for part in ndimage.find_objects(ndimage.label(ink)[0]))
    if (ndimage.distance_transform_edt(ink).max() <= MAX_STROKE_FRACTION * size
        and longest_part >= _MIN_PART_FRACTION * size):
      out.append(GlyphClass(cp, fonts, family=_BLOCKS[block][2]))
  return out


def dedup_classes(classes: Sequence[GlyphClass | int], *,
                  threshold: float = DEDUP_COSINE_THRESHOLD,
                  workers: int = 1) -> list[int]:
  """Indices of the classes kept: all but those too close to an earlier kept one.

  Args:
    classes: `GlyphClass`es or codepoints, in priority order.
    threshold: see `DEDUP_COSINE_THRESHOLD`.
    workers: processes that render the canonical images.
  """
  classes = [_as_class(c) for c in classes]
  chunks = [classes[a:b] for a, b in chunk_bounds(len(classes), 4 * workers)]
  images = ndimage.gaussian_filter(
      np.concatenate(map_chunks(_canonical, chunks, workers)), (0, 0.7, 0.7))
  feats = np.stack([np.rot90(images, k, axes=(1, 2)) for k in range(4)], 1)
  feats = feats.reshape(len(classes), 4, -1).astype(np.float32)
  feats -= feats.mean(axis=-1, keepdims=True)
  feats /= np.linalg.norm(feats, axis=-1, keepdims=True) + 1e-6
  kept = np.zeros(len(classes), bool)
  for start in range(0, len(classes), 512):  # Rows of the similarity matrix.
    stop = min(start + 512, len(classes))  # Columns: classes before `stop`.
    sims = feats[start:stop, 0] @ feats[:stop].reshape(4 * stop, -1).T
    for i, row in enumerate(sims.reshape(-1, stop, 4).max(axis=-1) > threshold,
                            start):
      kept[i] = not (row[:i] & kept[:i]).any()
  return np.nonzero(kept)[0].tolist()


def render_chunk(args: tuple[Sequence[GlyphClass], int, int]) -> np.ndarray:
  """`render_glyph_classes` of one `(classes, seed, first_index)` chunk."""
  classes, seed, first_index = args
  return render_glyph_classes(classes, seed=seed, first_index=first_index)
