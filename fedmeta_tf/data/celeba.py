"""CelebA identities (Liu et al., 2015) as a few-shot class pool with hats.

Main paper, Section 3.2: "out of 10k classes, only 2360 of them consist of 30
or more images. We remove classes with insufficient images and randomly
choose 30 images from the rest of the classes; in addition, we remove 2
classes with low quality examples (multiple identities with the same label),
and reserve 1 class as the backdoor class and 1 class as the target class.
Hence, we have 2156 and 200 classes [...] for meta-training and meta-testing.
Among the 30 images of each class, 5 images are held out for testing. We
choose a person with a specific type of hat (black cowboy hat) as our backdoor
class [...]. For a more successful attack, we increase the backdoor class size
for the attacker to 90 (78 and 12 for training and validation). Finally, the
training data is augmented by a factor of 6, and all the images are resized
to 64x64."

Two layers:

- `CelebaIdentities`, a tensorflow-datasets builder with manual download
  (`celeba_files.MANUAL_DOWNLOAD_INSTRUCTIONS`): every image of every identity
  with >= 30 images, 64x64x3, with its identity, file name and the
  `Wearing_Hat` and `Male` attributes. Aligned images (178x218) are cropped to
  the central 178x178 face square (rows 20..197) and resized with Lanczos;
  in-the-wild images (`img_celeba/`) to their central square.
  Identities whose image files are not all present are left out (one line
  says how many are used); the attributes are False when there is no
  attribute file (benign training needs none). The prepared dataset records
  the manual files it came from and is rebuilt when they change
  (`load_celeba`).
- `build_celeba_data` (in `celeba_selection`, re-exported here): the paper's
  selection, a pure function of the seed and an `IdentitySelection` (the
  choice of identities is not published; see its docstring for how the
  defaults infer it), `augment_x6`, and `keyed_sets`, the attacker's 78 / 12
  keyed images from the backdoor identity's distinct hat photos.
"""

from __future__ import annotations

import os
import shutil
from typing import Optional

from absl import logging
import numpy as np
from PIL import Image
import tensorflow_datasets as tfds

from fedmeta_tf.data import celeba_files
from fedmeta_tf.data import image_files
from fedmeta_tf.data.celeba_selection import (  # pylint: disable=unused-import
    ATTACK_TRAIN_IMAGES, ATTACK_VAL_IMAGES, AUGMENT_FACTOR,
    IMAGES_PER_IDENTITY, META_TEST_IDENTITIES, CelebaData, IdentitySelection,
    KeyedSets, augment_x6, build_celeba_data, keyed_sets)
from fedmeta_tf.data.class_pool import DataError

IMAGE_SIZE = 64
MIN_IMAGES = 30
_ALIGNED_FACE_BOX = (0, 20, 178, 198)  # (left, upper, right, lower)


class CelebaIdentitiesConfig(tfds.core.BuilderConfig):
  """Keeps the identities with at least `min_images` images."""

  def __init__(self, *, min_images: int = MIN_IMAGES, **kwargs):
    super().__init__(**kwargs)
    self.min_images = min_images


class CelebaIdentities(tfds.core.GeneratorBasedBuilder):
  """CelebA identities with >= 30 images, 64x64 (manual download)."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Identities with >= min_images images, 64x64."}
  MANUAL_DOWNLOAD_INSTRUCTIONS = celeba_files.MANUAL_DOWNLOAD_INSTRUCTIONS
  BUILDER_CONFIGS = [CelebaIdentitiesConfig(name="min30", min_images=30)]

  def _info(self) -> tfds.core.DatasetInfo:
    return self.dataset_info_from_configs(
        description="CelebA identities for few-shot face recognition.",
        features=tfds.features.FeaturesDict({
            "image": tfds.features.Image(shape=(IMAGE_SIZE, IMAGE_SIZE, 3)),
            "identity": tfds.features.Scalar(np.int64),
            "file_name": tfds.features.Text(),
            "wearing_hat": tfds.features.Scalar(np.bool_),
            "male": tfds.features.Scalar(np.bool_)}),
        supervised_keys=("image", "identity"),
        homepage=celeba_files.DOWNLOAD_URL)

  def _split_generators(self, dl_manager):
    files = celeba_files.find_manual_files(os.fspath(dl_manager.manual_dir))
    if files is None:
      raise DataError(f"celeba: incomplete manual download in "
                      f"{os.fspath(dl_manager.manual_dir)!r}; "
                      f"see {celeba_files.DATASETS_DOC}")
    return {"train": self._generate_examples(files)}

  def _generate_examples(self, files: celeba_files.ManualFiles):
    """Every image of the complete identities with >= min_images images."""
    scan = celeba_files.scan_manual(files)
    attributes = (None if files.attribute_file is None else
                  celeba_files.read_attributes(files.attribute_file,
                                               ("Wearing_Hat", "Male")))
    for identity in scan.qualifying(self.builder_config.min_images):
      for file_name in scan.complete[identity]:
        if attributes is None:
          hat, male = False, False  # Unknown: see `load_celeba`.
        elif file_name in attributes:
          hat, male = attributes[file_name]
        else:
          raise DataError(f"celeba: {file_name!r} has no line in "
                          f"{files.attribute_file!r}")
        path = os.path.join(files.images_dir, file_name)
        yield file_name, {"image": decode_face(path, aligned=files.aligned),
                          "identity": identity, "file_name": file_name,
                          "wearing_hat": hat, "male": male}


def decode_face(path: str, *, aligned: bool) -> np.ndarray:
  """A CelebA image as uint8 [64, 64, 3] (face square, Lanczos)."""
  if aligned:
    box = _ALIGNED_FACE_BOX
  else:
    try:
      with Image.open(path) as image:
        w, h = image.size
    except OSError as e:
      raise image_files.bad_image_error(path, e) from None
    side = min(w, h)
    box = ((w - side) // 2, (h - side) // 2, (w + side) // 2, (h + side) // 2)
  return image_files.decode_image(path, channels=image_files.Channels.RGB,
                                  size=IMAGE_SIZE, center_crop=box)


def _manual_dir(files: celeba_files.ManualFiles) -> str:
  """The directory holding the manual files (above Anno/ when there)."""
  parent = os.path.dirname(files.identity_file)
  if os.path.basename(parent) == "Anno":
    return os.path.dirname(parent)
  return parent


def _prepared_builder(data_dir: str, files: Optional[celeba_files.ManualFiles],
                      scan: Optional[celeba_files.ManualScan],
                      min_images: int) -> CelebaIdentities:
  """The builder, prepared from `files` unless prepared from the same files.

  A prepared dataset whose recorded manual files differ from `files` (or that
  has no record) is deleted and rebuilt, with one line saying why.
  """
  config = (None if min_images == MIN_IMAGES else CelebaIdentitiesConfig(
      name=f"min{min_images}", min_images=min_images))
  builder = CelebaIdentities(data_dir=data_dir, config=config)
  prepared_dir = os.fspath(builder.data_path)
  if os.path.isdir(prepared_dir) and scan is not None:
    changed = celeba_files.changed_parts(
        celeba_files.read_record(prepared_dir), scan.fingerprint)
    if changed:
      logging.warning("celeba: the manual files in %s changed since %s was "
                      "prepared (%s); rebuilding it", _manual_dir(files),
                      prepared_dir, ", ".join(changed))
      shutil.rmtree(prepared_dir)
      builder = CelebaIdentities(data_dir=data_dir, config=config)
  if not os.path.isdir(prepared_dir):
    if files is None or scan is None:
      raise DataError(f"celeba: the prepared dataset in {data_dir!r} has "
                      f"another configuration and no manual download is "
                      f"there to prepare min{min_images}; see "
                      f"{celeba_files.DATASETS_DOC}")
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(
        manual_dir=_manual_dir(files)))
    celeba_files.write_record(prepared_dir, scan.fingerprint)
  return builder


def load_celeba(data_dir: Optional[str], *, seed: int = 0,
                selection: IdentitySelection = IdentitySelection(),
                min_images: int = MIN_IMAGES,
                meta_classes: Optional[tuple[int, int]] = None) -> CelebaData:
  """Prepares (from the manual download, again when it changed) and selects.

  Args:
    data_dir: --data_dir (see `celeba_files.find_source`).
    seed: the run's seed.
    selection: which identities (see `IdentitySelection`).
    min_images: the prepared dataset keeps identities with this many images.
    meta_classes: (meta-training, meta-testing[, reserved]) identities the
      protocol needs (registry: --num_meta_train, --num_meta_test, default
      the paper's 2156, 200; reserved: the attack's); too few qualifying
      identities raise DataError (one line naming those flags) before
      anything is prepared. None: no check.

  Raises:
    DataError: the data is missing (with the download instructions), too
      small or bad.
  """
  _, files = celeba_files.find_source(data_dir)
  scan = None
  if files is not None:
    scan = celeba_files.scan_manual(files)
    line = celeba_files.partial_line(scan, files.images_dir)
    if line:
      logging.warning("%s", line)
    need = max(min_images, selection.images_per_identity)
    error = meta_classes and celeba_files.too_few_identities(
        len(scan.qualifying(need, selection.exclude)), min_images=need,
        **celeba_files.needed(meta_classes), missing_files=scan.missing_files)
    if error:
      raise error
  builder = _prepared_builder(data_dir, files, scan, min_images)
  record = celeba_files.read_record(os.fspath(builder.data_path))
  has_attributes = record is None or record["attribute_file"] is not None
  data = tfds.as_numpy(builder.as_dataset(split="train", batch_size=-1,
                                          shuffle_files=False))
  return build_celeba_data(
      images=data["image"], identity=data["identity"],
      hat=data["wearing_hat"] if has_attributes else None,
      male=data["male"] if has_attributes else None, seed=seed,
      selection=selection, meta_classes=meta_classes)
