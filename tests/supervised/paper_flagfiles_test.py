"""The pruning paper's flagfiles (Tables I-VI) run as committed, shrunk to
one round on fixtures in the official layouts: MNIST and Fashion-MNIST IDX
files, CIFAR-10 python batches (test sets only, the CPU-sized protocol).
Each training flagfile is followed by its prune flagfile, whose table must
carry the paper's figures."""

import subprocess
import sys

import pytest

from tests.conftest import tiny_test_set

# (training flagfile, prune flagfiles, dataset layout, a figure of the paper)
CASES = [
    ("mnist_table1_cpu", ["mnist_table1_prune"], "idx", "97.2 / 0.4 (131)"),
    ("mnist_pairs_cpu", ["mnist_table2_ranking_prune",
                         "mnist_table2_majority_prune", "mnist_table4_prune"],
     "idx", "98.5 / 100.0"),
    ("mnist_concise_cpu", ["mnist_table3_prune"], "idx", "98.2 / 0.4 (30)"),
    ("fashion_mnist_table5", ["fashion_mnist_table5_prune"], "idx",
     "82.9 / 2.1"),
    ("cifar10_table6", ["cifar10_table6_prune"], "cifar", "71.1 / 13.0"),
]


def _run(args):
  proc = subprocess.run([sys.executable, "-m", *args, "--progress=none"],
                        capture_output=True, text=True,
                        timeout=900, check=False)
  assert proc.returncode == 0, proc.stdout + proc.stderr
  return proc.stdout


@pytest.mark.parametrize("train, prunes, layout, paper_figure", CASES,
                         ids=[c[0] for c in CASES])
def test_flagfile_runs_and_its_table_has_the_papers_figures(
    tmp_path, train, prunes, layout, paper_figure):
  data_dir = tiny_test_set(tmp_path / "data", layout, per_label=24)
  root = tmp_path / "runs"
  # One round, two members (Table I keeps its five keys: two of them).
  shrink = (["--key_pixels=1,9"] if train == "mnist_table1_cpu" else
            ["--label_pairs=9:0,9:1"])
  _run(["binaries.train_supervised", f"--flagfile=configs/{train}.cfg",
        f"--data_dir={data_dir}", f"--root_output_dir={root}", "--rounds=1",
        "--parallelism=1", *shrink])
  tables = []
  for prune in prunes:
    out = _run(["binaries.prune", f"--flagfile=configs/{prune}.cfg",
                f"--from={root / train}", "--fine_tune_rounds=1"])
    tables.append(out)
  assert any(paper_figure in t for t in tables), tables
  for table in tables:
    assert table.count("| vic") + table.count("| pixels") == 2
