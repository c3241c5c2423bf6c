"""Shared fixtures: tiny class pools and configs, and a guard against leaked
TFF workers."""

import gzip
import hashlib
import os
import pickle

from absl import flags
import numpy as np
import pytest

from fedmeta_tf.data import class_pool
from fedmeta_tf import parallel

# Binaries' main() reads flags; tests set them with absl's flagsaver.
flags.FLAGS.mark_as_parsed()

SHARED_OMNIGLOT = os.path.join(os.path.dirname(__file__), "..", "..", "shared",
                               "data", "omniglot", "omniglot_28.npz")


@pytest.fixture(autouse=True)
def _restore_parallel_streams(monkeypatch):
  """A binary's main() sets the process-wide stream count
  (fedmeta_tf/parallel.py); each test starts from the sequential default."""
  monkeypatch.setattr(parallel, "_streams", 1)


def tiny_pool(num_classes=12, examples=8, size=28, channels=1, seed=0):
  """Random class pool; each class has its own mean so episodes are learnable."""
  rng = np.random.default_rng(seed)
  means = rng.integers(0, 256, size=(num_classes, 1, size, size, channels))
  noise = rng.integers(-30, 30, size=(num_classes, examples, size, size,
                                      channels))
  images = np.clip(means + noise, 0, 255).astype(np.uint8)
  return class_pool.make_class_pool(
      images, groups=[f"g{i % 3}" for i in range(num_classes)],
      split=[0 if i < num_classes * 2 // 3 else 1 for i in range(num_classes)])


def tiny_archive(directory, num_classes=24, examples=10) -> str:
  """Writes a `tiny_pool` as a class-pool archive (`--dataset=archive`) in
  `directory`; returns its path."""
  path = os.path.join(str(directory), "pool.npz")
  class_pool.save_class_pool_archive(
      tiny_pool(num_classes=num_classes, examples=examples), path)
  return path


def snapshot_files(root) -> dict:
  """{path: (mtime, sha256)} of every file under `root`: equal snapshots
  before and after a refused command show it wrote nothing."""
  files = {}
  for directory, _, names in os.walk(root):
    for name in names:
      path = os.path.join(directory, name)
      with open(path, "rb") as f:
        files[path] = (os.stat(path).st_mtime_ns,
                       hashlib.sha256(f.read()).hexdigest())
  return files


def tiny_attack_configs(archive: str):
  """(TrainingConfig, AttackConfig) of Experiment 1 at toy size on the class
  pool archive `archive`: 0 pre-training rounds, the attack in round 1."""
  # pylint: disable=g-import-not-at-top
  from fedmeta_tf.attacks import backdoor_data
  from fedmeta_tf.attacks import backdoor_reptile
  from fedmeta_tf.evaluation import meta_test
  from fedmeta_tf.experiments import backdoor_attack
  from fedmeta_tf.experiments import training
  from fedmeta_tf.meta import reptile_tf
  # pylint: enable=g-import-not-at-top
  config = training.TrainingConfig(
      dataset="archive", data_dir=archive, rounds=1, runtime="inprocess",
      filters=4,
      reptile=reptile_tf.ReptileConfig(ways=3, shots=2, iterations=1,
                                       meta_batch=1, inner_steps=1,
                                       inner_batch=4),
      evaluation=meta_test.EvalConfig(ways=3, shots=2, queries=1, steps=2,
                                      batch=4, episodes=1))
  attack = backdoor_attack.AttackConfig(
      attacker=backdoor_reptile.AttackerConfig(iterations=1, inner_steps=1),
      backdoor=backdoor_data.BackdoorConfig(
          num_backdoor_classes=2, benign_examples=4, attack_train_examples=2,
          attack_val_examples=2, case=backdoor_data.Case.B),
      pretrain_rounds=0, eval_episodes=1)
  return config, attack


@pytest.fixture
def omniglot_archive():
  if not os.path.isfile(SHARED_OMNIGLOT):
    pytest.skip("../shared/data/omniglot is absent (a user's clone has none)")
  return SHARED_OMNIGLOT


@pytest.fixture(scope="session", autouse=True)
def no_leaked_tff_workers():
  yield
  from fedmeta_tf.tff_process import contexts  # pylint: disable=g-import-not-at-top
  leaked = contexts.worker_processes()
  contexts.stop_workers()
  assert not leaked, f"TFF worker processes left running: {leaked}"


# MNIST / Fashion-MNIST official IDX files (what TFDS downloads).
T10K = ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
TRAIN = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte")


def idx_images(x):
  header = (0x803).to_bytes(4, "big") + b"".join(
      d.to_bytes(4, "big") for d in x.shape)
  return header + x.tobytes()


def idx_labels(y):
  return (0x801).to_bytes(4, "big") + len(y).to_bytes(4, "big") + \
      np.asarray(y, np.uint8).tobytes()


def write_file(path, data, gz):
  if gz:
    with gzip.open(str(path) + ".gz", "wb") as f:
      f.write(data)
  else:
    with open(path, "wb") as f:
      f.write(data)


def write_idx(directory, base, x, y, gz=True):
  """Writes images and labels as official IDX files (`base`: T10K or TRAIN)."""
  write_file(directory / base[0], idx_images(x), gz)
  write_file(directory / base[1], idx_labels(y), gz)


def write_cifar_batch(path, data, labels):
  """Writes a CIFAR-10 python batch: uint8 data [n, 3072] (channel-first
  rows), int labels [n]."""
  with open(path, "wb") as f:
    pickle.dump({b"batch_label": b"x", b"labels": [int(v) for v in labels],
                 b"data": data, b"filenames": [b"f"] * len(labels)}, f,
                protocol=2)


def tiny_test_set(directory, layout="idx", per_label=20) -> str:
  """The official test files of MNIST ("idx": t10k-* IDX) or CIFAR-10
  ("cifar": test_batch) in `directory`: noise images whose label is a bright
  row (learnable), `per_label` of each of the 10 labels. Returns the path."""
  rng = np.random.default_rng(0)
  y = np.repeat(np.arange(10, dtype=np.uint8), per_label)
  directory.mkdir(parents=True, exist_ok=True)
  if layout == "idx":
    x = rng.integers(0, 60, size=(len(y), 28, 28), dtype=np.uint8)
    x[np.arange(len(y)), 4 + 2 * y, 4:20] = 255
    write_idx(directory, T10K, x, y)
  else:
    x = rng.integers(0, 60, size=(len(y), 3, 32, 32), dtype=np.uint8)
    x[np.arange(len(y)), :, 4 + 2 * y, 4:20] = 255
    write_cifar_batch(directory / "test_batch", x.reshape(len(y), -1), y)
  return str(directory)


# CelebA's attribute file lists 40 attributes; the fixture writes these.
CELEBA_ATTRIBUTES = ("5_o_Clock_Shadow", "Male", "Wearing_Hat", "Young")


def write_celeba(root, identities, *, missing=0, header=True,
                 in_the_wild=True) -> dict:
  """A CelebA manual download in the official layout under `root`:
  Img/img_align_celeba/ (178x218 JPEGs), Img/img_celeba/ (in-the-wild, the
  same photos larger; the loader prefers the aligned ones), Anno/
  identity_CelebA.txt (with a header line when `header`) and
  Anno/list_attr_celeba.txt (count line, attribute names, one row a photo).

  `identities`: {identity: (photos, hat photos, male)}. A photo's red and
  green encode its identity and index; hat photos are blue in the upper half
  of the face (the key the tests look for), the others have no blue. The
  last identity loses `missing` aligned files (a partial image folder).
  Returns {"hat": {file names with a hat}, "files": {identity: [names]},
  "missing": [names]}.
  """
  from PIL import Image  # pylint: disable=g-import-not-at-top
  aligned = os.path.join(root, "Img", "img_align_celeba")
  wild = os.path.join(root, "Img", "img_celeba")
  os.makedirs(os.path.join(root, "Anno"), exist_ok=True)
  for d in (aligned, wild) if in_the_wild else (aligned,):
    os.makedirs(d, exist_ok=True)
  id_lines, attr_lines, hats, files, n = [], [], set(), {}, 0
  for identity, (count, hat_count, male) in identities.items():
    for k in range(count):
      n += 1
      name = f"{n:06d}.jpg"
      face = np.zeros([218, 178, 3], np.uint8)
      face[..., 0] = 40 + 15 * (identity % 14)
      face[..., 1] = 30 + 20 * (k % 10)
      face[60:140, 40:140, 1] = 200 - 10 * (identity % 14)  # a "face"
      if k < hat_count:
        face[20:110, :, 2] = 255
        hats.add(name)
      Image.fromarray(face).save(os.path.join(aligned, name), quality=95)
      if in_the_wild:
        Image.fromarray(face).resize((356, 436)).save(os.path.join(wild, name))
      files.setdefault(identity, []).append(name)
      id_lines.append(f"{name} {identity}")
      values = ["-1", "1" if male else "-1", "1" if k < hat_count else "-1",
                "1"]
      attr_lines.append(f"{name} " + " ".join(f"{v:>2}" for v in values))
  gone = files[identity][:missing]
  for name in gone:
    os.remove(os.path.join(aligned, name))
  with open(os.path.join(root, "Anno", "identity_CelebA.txt"), "w") as f:
    f.write(("image_id identity\n" if header else "") + "\n".join(id_lines) +
            "\n")
  with open(os.path.join(root, "Anno", "list_attr_celeba.txt"), "w") as f:
    f.write(f"{n}\n{' '.join(CELEBA_ATTRIBUTES)}\n" + "\n".join(attr_lines) +
            "\n")
  return {"hat": hats, "files": files, "missing": gone}
