"""`--eval_formulation`: how an evaluation's fine-tuning episodes run
(`fedmeta_tf/evaluation/batched_eval.py`).

A speed setting, not an experiment setting: every formulation draws the same
episodes and mini-batches and scores them alike, equal to float tolerance
(tests/evaluation/batched_eval_test.py), so it is not part of a run
directory's identity and may differ between a run and its resumption.
"""

from absl import flags

CHOICES = ("auto", "sequential", "grouped", "loop", "patches")  # batched_eval.CHOICES

EVAL_FORMULATION = flags.DEFINE_enum(
    "eval_formulation", "auto", list(CHOICES),
    "How evaluations fine-tune their episodes (Conv4 with its dense head, "
    "or the local defense's metric heads): sequential, one episode after "
    "another; grouped / loop / patches, up to 10 episodes as one "
    "computation of stacked models (grouped convolutions / the models' "
    "convolutions side by side / 3x3 patches times the kernels in one "
    "batched matmul), in --precision; auto: grouped on a GPU, sequential on "
    "a CPU (where no stacking measured faster with both streams in use: "
    "docs/results/performance.md). Results equal to float tolerance.")


def configure() -> None:
  """Sets this process's evaluations to --eval_formulation."""
  from fedmeta_tf.evaluation import batched_eval  # pylint: disable=g-import-not-at-top
  batched_eval.configure(EVAL_FORMULATION.value)
