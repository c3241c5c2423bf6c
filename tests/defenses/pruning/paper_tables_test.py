"""The transcribed tables of the pruning paper reproduce the figures its
text quotes (Section V-E), so a transcription slip cannot hide."""

import pytest

from fedmeta_tf.defenses.pruning import paper_tables as pt


def _mean(table, stage):
  cell = pt.get(table).mean(stage)
  return round(cell.test, 1), round(cell.attack, 1)


def test_table_iv_means_are_the_texts():
  # "the average test accuracy ... drops from 98.3% to 94.4%, and the average
  # attack success rate drops from 99.7% to 8.4%. With the fine-tuning
  # process ... 96.9% ... 4.7%" (Section V-E 3).
  assert _mean("IV", pt.TRAINING) == (98.3, 99.7)
  assert _mean("IV", pt.EXTREME) == (94.4, 8.4)
  assert _mean("IV", pt.FINE_TUNED) == (96.9, 4.7)


def test_table_v_and_vi_means_are_the_texts():
  # Abstract and Section V-E 4: 99.7 -> 1.9 %, 88.1 -> 82.5 %; with
  # fine-tuning 86.4 % and 6.4 %. Section V-E 5: 87.6 -> 13.0 %, 72.4 -> 71.0 %.
  assert _mean("V", pt.TRAINING) == (88.1, 99.7)
  assert _mean("V", pt.EXTREME) == (82.5, 1.9)
  assert _mean("V", pt.FINE_TUNED) == (86.4, 6.4)
  assert _mean("VI", pt.TRAINING) == (72.4, 87.6)
  assert _mean("VI", pt.EXTREME) == (71.1, 13.0)  # the text rounds to 71.0


def test_table_ii_and_iii_counts_are_the_texts():
  # "the backdoor attack success rates drop below 10% only in 5 out of 18
  # cases ... With the Majority Vote method ... 7 out of 18" (Section V-E 1).
  for table, count in (("II-ranking", 5), ("II-majority", 7)):
    rows = pt.get(table).rows.values()
    assert len(rows) == 18
    assert sum(r[pt.PRUNING].attack < 10 for r in rows) == count
  # Table III: "decrease from over 99% to an average of 3.2%".
  assert _mean("III", pt.EXTREME)[1] == 3.2


def test_rows_are_keyed_like_sweep_members():
  assert pt.get("I").rows[9][pt.PRUNING].attack == 2.3
  assert pt.get("II-ranking").rows[(9, 1)][pt.PRUNING].num == 37
  assert pt.get("IV").rows[(8, 9)][pt.FINE_TUNED].attack == 0.5
  with pytest.raises(ValueError, match="valid: I, II-ranking"):
    pt.get("VII")
