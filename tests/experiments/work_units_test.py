"""Resumable units are keyed by settings; settings added later keep old keys."""

import dataclasses

import pytest

from fedmeta_tf.experiments import defend
from fedmeta_tf.experiments import finetune
from fedmeta_tf.experiments import work_units


@pytest.mark.parametrize("config_class", [finetune.FinetuneConfig,
                                          defend.DefendConfig])
def test_precision_keys_units_apart_but_float32_keeps_earlier_keys(
    config_class):
  default = dataclasses.asdict(config_class())
  before_the_field = {k: v for k, v in default.items() if k != "precision"}
  assert work_units.settings_key(default) == before_the_field
  bf16 = dataclasses.asdict(config_class(precision="mixed_bfloat16"))
  assert work_units.settings_key(bf16)["precision"] == "mixed_bfloat16"
  assert (work_units.fingerprint(work_units.settings_key(bf16)) !=
          work_units.fingerprint(before_the_field))


@pytest.mark.parametrize("config_class", [finetune.FinetuneConfig,
                                          defend.DefendConfig])
def test_unknown_precision_is_refused(config_class):
  with pytest.raises(ValueError, match="precision"):
    config_class(precision="float16")
