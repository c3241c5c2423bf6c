"""What the attack experiments evaluate on (main paper, Section 3.3):
main-task queries are held out from meta-training, and the run's seed
reaches the attack data."""

import dataclasses

import numpy as np
import pytest
import tensorflow as tf

from fedmeta_tf.attacks import backdoor_data as bd
from fedmeta_tf.data import class_pool
from fedmeta_tf.data import protocol
from fedmeta_tf.data import registry
from fedmeta_tf.evaluation import backdoor as backdoor_eval
from fedmeta_tf.evaluation import meta_test
from fedmeta_tf.experiments import attack_config
from fedmeta_tf.experiments import backdoor_attack
from fedmeta_tf.experiments import training
from tests.conftest import tiny_pool


def _split(tmp_path, seed, num_classes=40):
  archive = str(tmp_path / f"tiny{num_classes}.npz")
  class_pool.save_class_pool_archive(
      tiny_pool(num_classes=num_classes, examples=20), archive)
  config = training.TrainingConfig(dataset="archive", data_dir=archive,
                                   seed=seed, filters=4)
  return backdoor_attack.load_attack_split(config, bd.BackdoorConfig(),
                                           attacker_ids=(0,))


def _bytes(images):
  images = np.asarray(images)
  return {x.tobytes() for x in images.reshape((-1,) + images.shape[-3:])}


def _main_episodes(data, ways=5, shots=5, queries=3, count=8,
                   backdoor_in_episode=False):
  tensors = {k: tf.constant(v) for k, v in data.items()}
  for s in range(count):
    episode, slot = backdoor_eval.sample_target_episode(
        tensors, ways=ways, shots=shots, queries=queries,
        backdoor_in_episode=backdoor_in_episode,
        seed=tf.constant([s, 1], tf.int64))
    yield (np.round(episode.support_images.numpy() * 255).astype(np.uint8),
           np.round(episode.query_images.numpy() * 255).astype(np.uint8),
           episode.query_labels.numpy(), int(slot))


@pytest.mark.parametrize("client", [None, 0, 2])
def test_main_task_queries_are_never_training_examples(tmp_path, client):
  attack_split = _split(tmp_path, seed=0)
  split = attack_split.split
  classes = (slice(None) if client is None else split.client_classes[client])
  trained_on = _bytes(split.meta_train.images[classes]) | _bytes(
      attack_split.data.target_benign)
  held_out = _bytes(split.meta_train_heldout.images[classes]) | _bytes(
      attack_split.data.target_attacker)
  data = backdoor_attack.eval_data_for(attack_split, client)
  for support, queries, labels, slot in _main_episodes(data):
    assert not _bytes(queries) & trained_on
    assert _bytes(queries) <= held_out
    assert _bytes(support) <= trained_on
    target_queries = queries[labels == slot]
    assert _bytes(target_queries) <= _bytes(attack_split.data.target_attacker)


def test_celeba_queries_are_no_augmented_view_of_a_training_photo():
  rng = np.random.default_rng(0)
  pool = class_pool.make_class_pool(
      rng.integers(0, 256, size=(12, 10, 16, 16, 3), dtype=np.uint8))
  split = protocol.build_meta_split(pool, num_clients=2, num_meta_train=8,
                                    heldout_per_class=3, rotate=False, seed=0)
  split = registry.augment_split("celeba", split)
  assert split.meta_train.examples_per_class == 6 * 7  # x6 views
  target = rng.integers(0, 256, size=(10, 16, 16, 3), dtype=np.uint8)
  data = backdoor_eval.eval_data(
      main_support=split.meta_train.images,
      main_queries=split.meta_train_heldout.images,
      target_support=target[:5], target_queries=target[5:],
      backdoor_pool=target[None], attack_train=target[:2],
      attack_val=target[2:4], meta_test_pool=split.meta_test.images)
  views = _bytes(split.meta_train.images)  # the original photo is view 0
  for _, queries, _, _ in _main_episodes(data, shots=2, queries=3):
    assert not _bytes(queries) & views
    assert _bytes(queries) <= _bytes(split.meta_train_heldout.images) | _bytes(
        target[5:])


def test_more_queries_than_held_out_examples_is_refused(tmp_path):
  attack_split = _split(tmp_path, seed=0)
  data = backdoor_attack.eval_data_for(attack_split)
  config = backdoor_eval.BackdoorEvalConfig(
      episode=meta_test.EvalConfig(queries=6, episodes=1, steps=1))
  with pytest.raises(ValueError, match="--eval_queries <= 5"):
    backdoor_eval.check_eval_data(data, config)


def test_the_run_seed_reaches_the_attack_data(tmp_path):
  a = _split(tmp_path, seed=0).data
  b = _split(tmp_path, seed=1).data
  again = _split(tmp_path, seed=0).data
  assert (a.target_name, a.backdoor_names) == (again.target_name,
                                               again.backdoor_names)
  np.testing.assert_array_equal(a.attack_train, again.attack_train)
  assert (a.target_name, a.backdoor_names) != (b.target_name, b.backdoor_names)
  assert not np.array_equal(a.attack_train, b.attack_train)


def test_a_run_of_an_older_version_with_another_attack_seed_is_refused():
  train = training.TrainingConfig(seed=3)
  attack = backdoor_attack.AttackConfig()
  d = {"training": attack_config.to_jsonable(train),
       "attack": attack_config.to_jsonable(attack)}
  assert backdoor_attack.configs_from_json(d)[0].seed == 3
  d["attack"]["backdoor"]["seed"] = 0  # older runs: always 0
  with pytest.raises(ValueError, match="older version"):
    backdoor_attack.configs_from_json(d)
