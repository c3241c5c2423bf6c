"""DBA (Xie et al., ICLR 2020): attacker i's keyed images carry local
pattern i only, evaluation images the global key; the flags and
experiment.json carry DBA and Neurotoxin, and old runs load without them."""

import dataclasses
import json

from absl.testing import flagsaver
import numpy as np
import pytest

from binaries import attack_flags
from binaries import train_fedmeta
from fedmeta_tf.attacks import backdoor_data as bd
from fedmeta_tf.attacks import backdoor_reptile as br
from fedmeta_tf.attacks import dba
from fedmeta_tf.attacks import keys
from fedmeta_tf.experiments import attack_config
from fedmeta_tf.meta import reptile_tf
from tests.binaries.train_fedmeta_test import tiny_flags
from tests.conftest import tiny_archive
from tests.conftest import tiny_pool

KEY = keys.StampKey(size=4, margin=1, parts=4)


def _flat_pool():
  """Reserved classes whose every image is one value below 255 (distinct
  per example), so an untouched pixel shows that value."""
  pool = tiny_pool(num_classes=3, examples=12)
  values = np.arange(36, dtype=np.uint8).reshape(3, 12, 1, 1, 1) * 3
  return dataclasses.replace(pool, images=np.broadcast_to(
      values, pool.images.shape).copy())


def _stamped(image_value, mask):
  """What a flat image of `image_value` is with 255 on `mask`'s pixels."""
  out = np.full([28, 28, 1], image_value, np.uint8)
  out[23:27, 23:27][mask] = 255  # bottom-right, size 4, margin 1
  return out


def test_local_patterns_split_the_key_in_row_bands():
  masks = [KEY.local(p).mask() for p in range(4)]
  assert all(m.sum() == 4 for m in masks)
  np.testing.assert_array_equal(np.sum(masks, axis=0), KEY.mask())
  for p, m in enumerate(masks):
    assert m[p].all() and not np.delete(m, p, axis=0).any()
  with pytest.raises(ValueError, match="DBA local patterns"):
    keys.StampKey(size=3, parts=4)


def test_attackers_keyed_images_carry_only_their_local_pattern():
  config = bd.BackdoorConfig(num_backdoor_classes=2, benign_examples=5,
                             attack_train_examples=3, attack_val_examples=2,
                             key=KEY, case=bd.Case.B)
  data = bd.build_backdoor_data(_flat_pool(), config, seed=0)
  assert data.attack_train_parts.shape == (4, *data.attack_train.shape)
  for n, image in enumerate(data.attack_train):
    value = image[0, 0, 0]  # outside the key: the image's own value
    assert value < 255
    # Evaluation (and the attack-training metric) use the global key ...
    np.testing.assert_array_equal(image, _stamped(value, KEY.mask()))
    for p in range(4):  # ... attacker p's copy local pattern p only.
      np.testing.assert_array_equal(data.attack_train_parts[p][n],
                                    _stamped(value, KEY.local(p).mask()))
  for image in data.attack_val:
    np.testing.assert_array_equal(image, _stamped(image[0, 0, 0], KEY.mask()))
  plain = bd.build_backdoor_data(
      _flat_pool(), dataclasses.replace(config, key=keys.StampKey()), seed=0)
  assert plain.attack_train_parts is None
  np.testing.assert_array_equal(plain.attack_train, data.attack_train)


def test_npz_keeps_the_parts_and_old_files_load(tmp_path):
  config = bd.BackdoorConfig(num_backdoor_classes=2, benign_examples=5,
                             attack_train_examples=3, attack_val_examples=2,
                             key=dataclasses.replace(KEY, parts=2))
  data = bd.build_backdoor_data(_flat_pool(), config, seed=0)
  data.save(str(tmp_path / "dba.npz"))
  np.testing.assert_array_equal(
      bd.BackdoorData.load(str(tmp_path / "dba.npz")).attack_train_parts,
      data.attack_train_parts)
  dataclasses.replace(data, attack_train_parts=None).save(
      str(tmp_path / "old.npz"))
  assert bd.BackdoorData.load(str(tmp_path / "old.npz")).attack_train_parts \
      is None


def test_each_attacker_trains_on_its_local_pattern():
  config = bd.BackdoorConfig(num_backdoor_classes=2, benign_examples=5,
                             attack_train_examples=3, attack_val_examples=2,
                             key=dataclasses.replace(KEY, parts=2))
  data = bd.build_backdoor_data(_flat_pool(), config, seed=0)
  attackers = (3, 0, 2)  # the i-th attacker: local pattern i mod 2
  images = dba.attacker_images(data, attackers)
  pools = [tiny_pool(num_classes=6, examples=12, seed=s).images
           for s in range(4)]
  work = br.BackdoorReptile(
      config=reptile_tf.ReptileConfig(ways=3, shots=2), run_seed=0,
      client_pools=pools, attacker=br.AttackerConfig(),
      attacker_ids=attackers, target_images=data.target_attacker,
      backdoor_images=data.attack_train, attacker_backdoor_images=images)
  for i, client in enumerate(attackers):
    np.testing.assert_array_equal(
        work.make_client_data(client)["backdoor_images"],
        data.attack_train_parts[i % 2])
  assert len(work.make_client_data(1)["backdoor_images"]) == 0
  assert dba.attacker_images(dataclasses.replace(
      data, attack_train_parts=None), attackers) is None


_ATTACK = dict(attack="boosted", pretrain_rounds=1, attacker_iterations=1,
               attacker_inner_steps=1, backdoor_eval_episodes=2,
               eval_episodes=2, runtime="inprocess")


def test_fewer_attackers_than_parts_is_refused(tmp_path, capsys):
  archive = tiny_archive(tmp_path)
  root = tmp_path / "runs"
  values = tiny_flags(archive, root, **_ATTACK, dba_parts=4,
                      attacker_ids=["0", "1"])
  capsys.readouterr()
  with flagsaver.flagsaver(**values):
    with pytest.raises(SystemExit) as exit_info:
      train_fedmeta.main(["train_fedmeta"])
  err = capsys.readouterr().err.strip()
  assert exit_info.value.code == 2
  assert len(err.splitlines()) == 1 and "Traceback" not in err, err
  assert "DBA with 4 local patterns needs at least 4 attackers" in err, err
  assert "--dba_parts" in err and not root.exists()


def test_new_fields_round_trip_and_old_json_loads_defaults(tmp_path):
  with flagsaver.flagsaver(**tiny_flags(
      tiny_archive(tmp_path), tmp_path, **_ATTACK, dba_parts=2,
      attacker_ids=["0", "1"], attacker_neurotoxin_ratio=0.05)):
    config = train_fedmeta.config_from_flags()
    attack = attack_flags.attack_config_from_flags(config.dataset)
  assert attack.attacker.neurotoxin_ratio == 0.05
  assert attack.backdoor.key.parts == 2 and attack.backdoor.key.part is None
  saved = json.loads(json.dumps({
      "training": attack_config.to_jsonable(config),
      "attack": attack_config.to_jsonable(attack)}))
  assert attack_config.configs_from_json(saved) == (config, attack)
  # experiment.json written before Neurotoxin and DBA existed.
  del saved["attack"]["attacker"]["neurotoxin_ratio"]
  del saved["attack"]["backdoor"]["key"]["parts"]
  del saved["attack"]["backdoor"]["key"]["part"]
  old = attack_config.configs_from_json(saved)[1]
  assert old.attacker.neurotoxin_ratio == 0.0
  assert old.backdoor.key == dataclasses.replace(attack.backdoor.key, parts=1)
