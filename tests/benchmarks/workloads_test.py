"""Tests for the benchmark helpers (the benchmarks themselves are timed by
hand; their figures are in docs/results/performance.md).

Only flag-free modules are imported: the benchmark scripts define absl flags
that would collide with the binaries' in the test process."""

import os

import pytest
import tensorflow as tf

from benchmarks import machine
from benchmarks import workloads


def test_parse_shape():
  assert workloads.parse_shape("84x84x3:10") == ((84, 84, 3), 10)


@pytest.mark.parametrize("text", ["84x84:10", "84x84x3", "axbxc:1",
                                  "8x8x1:10", "28x28x1:0"])
def test_bad_shape_is_a_one_line_error(text):
  with pytest.raises(ValueError, match="--shapes entry") as e:
    workloads.parse_shape(text)
  assert "\n" not in str(e.value)


def test_machine_line_names_cores_and_cpu():
  line = machine.describe(with_tensorflow=False)
  assert f"{os.cpu_count()} cores online" in line
  assert machine.cpu_model() in line and "load average" in line


def test_inner_loop_rates_on_a_tiny_run():
  graph_rate, call_rate = workloads.inner_loop_rates(
      (16, 16, 1), 4, "strided", steps=3, python_steps=2, repeats=1)
  assert graph_rate > 0 and call_rate > 0


def test_inner_loop_rates_in_mixed_bfloat16_leave_the_policy_alone():
  graph_rate, _ = workloads.inner_loop_rates(
      (16, 16, 1), 4, "strided", steps=3, python_steps=0, repeats=1,
      precision_name="mixed_bfloat16")
  assert graph_rate > 0
  assert tf.keras.mixed_precision.global_policy().name == "float32"


def test_interleaved_rates_time_each_setting_in_turn():
  calls = []

  def fake_timer(name, rate):
    def timer(repeat):
      calls.append((name, repeat))
      return rate + repeat
    return timer

  best = workloads.interleaved_rates(
      {"a": fake_timer("a", 1.0), "b": fake_timer("b", 10.0)}, repeats=3)
  assert calls == [("a", 0), ("b", 0), ("a", 1), ("b", 1), ("a", 2), ("b", 2)]
  assert best == {"a": 3.0, "b": 12.0}
  timer = workloads.in_graph_timer((16, 16, 1), 4, "strided", 3,
                                   "mixed_bfloat16")
  assert timer(0) > 0
  assert tf.keras.mixed_precision.global_policy().name == "float32"


def test_peak_memory_of_this_process():
  assert machine.peak_kib(os.getpid()) > 10_000
