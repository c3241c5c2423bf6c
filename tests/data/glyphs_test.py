"""Tests for fedmeta_tf.data.glyphs (the embedded few-shot dataset).

The full build (~30 s on 2 cores) runs once per session, into a temp dir.
"""

import os

import numpy as np
import pytest

from fedmeta_tf.data import class_pool
from fedmeta_tf.data import glyphs

# 20 letters of 6 scripts, distinct even when turned.
_CHARS = "AbDeFgHkMRsTwYЖЯλΨאب"


def _codepoints(text):
  return [ord(c) for c in text]


def test_render_shape_dtype_and_determinism():
  images = glyphs.render_glyph_classes(_codepoints("aЖ∑ლ"), seed=0, examples=5)
  assert images.shape == (4, 5, 28, 28) and images.dtype == np.uint8
  again = glyphs.render_glyph_classes(_codepoints("aЖ∑ლ"), seed=0, examples=5)
  assert images.tobytes() == again.tobytes()
  other = glyphs.render_glyph_classes(_codepoints("aЖ∑ლ"), seed=1, examples=5)
  assert not np.array_equal(images, other)


def test_chunks_render_like_the_whole():
  whole = glyphs.render_glyph_classes(_codepoints("xyzw"), seed=3, examples=4)
  head = glyphs.render_glyph_classes(_codepoints("xy"), seed=3, examples=4)
  tail = glyphs.render_glyph_classes(_codepoints("zw"), seed=3, examples=4,
                                     first_index=2)
  np.testing.assert_array_equal(whole, np.concatenate([head, tail]))


def test_ink_is_high_on_zero_background():
  images = glyphs.render_glyph_classes(_codepoints(_CHARS), seed=0, examples=4)
  flat = images.reshape(-1, 28 * 28)
  assert (flat.max(axis=1) == 255).all()  # Every image has full ink...
  assert (np.median(flat, axis=1) == 0).all()  # ...on a black background.
  assert ((flat > 127).mean(axis=1) < 0.35).all()
  border = np.concatenate([images[..., 0, :], images[..., -1, :],
                           images[..., :, 0], images[..., :, -1]], axis=-1)
  assert border.mean() < 5


def test_examples_vary_like_handwriting_but_keep_their_class():
  images = glyphs.render_glyph_classes(_codepoints(_CHARS), seed=0)
  x = images.reshape(len(_CHARS), 20, -1).astype(np.float32) / 255.0
  for c in range(len(_CHARS)):  # No two examples of a class are the same.
    assert len({e.tobytes() for e in images[c]}) == 20
  means = x[:, :10].mean(axis=1)
  dist = ((x[:, 10:, None, :] - means[None, None]) ** 2).sum(axis=-1)
  accuracy = (dist.argmin(axis=-1) == np.arange(len(_CHARS))[:, None]).mean()
  assert accuracy > 0.4, accuracy  # Chance is 0.05; measured ~0.6.


def test_dedup_drops_homoglyphs():
  # Latin o, Greek omicron, Cyrillic o; then x.
  assert glyphs.dedup_classes([ord("o"), 0x3BF, 0x43E, ord("x")]) == [0, 3]
  # Latin A, Greek Alpha, Cyrillic A.
  assert glyphs.dedup_classes([ord("A"), 0x391, 0x410]) == [0]


def test_dedup_drops_turned_characters():
  kept = glyphs.dedup_classes(_codepoints("unpd69bqM"))
  assert [("unpd69bqM")[i] for i in kept] == ["u", "p", "6", "b", "M"]


@pytest.fixture(scope="session")
def built(tmp_path_factory):
  """The full dataset, built once per session into a temp dir."""
  data_dir = str(tmp_path_factory.mktemp("glyphs_data"))
  return data_dir, glyphs.load_glyphs(data_dir)


def test_full_build(built):
  # How long the cold build takes is a benchmark's question, not a test's
  # (it took 134 s on a loaded 2-core machine where it usually takes < 60).
  _, pool = built
  assert pool.num_classes >= glyphs.MIN_CLASSES
  assert pool.images.shape[1:] == (20, 28, 28, 1)
  assert len(set(pool.names)) == pool.num_classes
  groups = set(pool.groups)
  assert len(groups) >= 20
  sizes = [pool.groups.count(g) for g in groups]
  assert max(sizes) <= glyphs.MAX_GROUP_SIZE
  background = pool.split == class_pool.SPLIT_BACKGROUND
  evaluation = pool.split == class_pool.SPLIT_EVALUATION
  assert (background | evaluation).all()
  assert 0.5 < background.mean() < 0.7
  groups_bg = {g for g, b in zip(pool.groups, background) if b}
  groups_ev = {g for g, e in zip(pool.groups, evaluation) if e}
  assert groups_bg and groups_ev and not groups_bg & groups_ev


def test_second_load_comes_from_the_cache(built, monkeypatch):
  data_dir, pool = built

  def no_rendering(*args, **kwargs):
    raise AssertionError("the second load rendered the glyphs again")

  monkeypatch.setattr(glyphs, "build_glyphs", no_rendering)
  monkeypatch.setattr(glyphs, "render_glyph_classes", no_rendering)
  again = glyphs.load_glyphs(data_dir)
  np.testing.assert_array_equal(pool.images, again.images)
  assert pool.names == again.names and pool.groups == again.groups
  np.testing.assert_array_equal(pool.split, again.split)
  assert os.path.isfile(os.path.join(data_dir, "glyphs", "glyphs_seed0_v1.npz"))


def test_tfds_builder_serves_the_same_examples(built):
  data_dir, pool = built
  builder = glyphs.Glyphs(data_dir=data_dir)
  info = builder.info
  assert info.splits["background"].num_examples == 20 * (pool.split == 0).sum()
  assert info.splits["evaluation"].num_examples == 20 * (pool.split == 1).sum()
  example = next(iter(builder.as_dataset(split="evaluation").take(1)))
  label = int(example["label"])
  assert pool.split[label] == 1
  assert example["group"].numpy().decode() == pool.groups[label]
  np.testing.assert_array_equal(example["image"].numpy(), pool.images[label, 0])


def test_default_data_dir_follows_the_environment(monkeypatch, tmp_path):
  monkeypatch.setenv("FEDMETA_DATA_DIR", str(tmp_path))
  assert glyphs.default_data_dir() == str(tmp_path)
  with pytest.raises(ValueError):
    glyphs.load_glyphs(str(tmp_path), seed=-1)
