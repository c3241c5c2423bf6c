"""The one episode-evaluation loop: sample, fine-tune step by step, score.

Every few-shot figure of the papers is measured the same way (main paper,
Section 3.1; Algorithm 1's FLClientFineTuning, Algorithm 2's
FLClientSecureFineTuning): draw an episode of N classes with K support and
Q query examples each, load the weights under test, fine-tune on the N*K
support examples and score, averaging over many episodes (the papers: 40
or 50). Meta-test accuracy, the backdoor curves of Experiments 1 and 2
(`backdoor.py`) and the defended curves of Experiment 3 (`defended.py`)
are all `make_episodes_fn` with different tasks and learners:

- a `Task` says how one kind of episode is drawn from the evaluation data
  and scored (main-task episode with the target class, meta-test episode);
- a `Learner` says how the model is started and fine-tuned: `DenseLearner`
  (Adam on a Conv4 with its dense head) or the metric-head learner of the
  local defense (`defended.py`);
- a `Schedule` says after which fine-tuning steps the tasks are scored.

Seeds. An evaluation is a pure function of one seed, `evaluation_seed(run
seed, purpose, client)`: episode i of a task with stream s is drawn from
fold(seed, s, i) and its mini-batches from fold(that, STREAM_MINIBATCH);
the mini-batch of fine-tuning step t is a function of that seed and t only,
so a curve's value at step t does not depend on how often it is recorded.
Two evaluations with the same purpose, run seed and client therefore see
the same episodes whatever the model or learner: curves with and without a
defense, or before and after fine-tuning, compare models, not draws.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable, Mapping, Optional, Protocol, Sequence

import numpy as np
import tensorflow as tf

from fedmeta_tf.data import episodes as episodes_lib
from fedmeta_tf.evaluation import batched_eval
from fedmeta_tf.meta import reptile_tf
from fedmeta_tf.meta import weights as w
from fedmeta_tf.reporting import progress
from fedmeta_tf import parallel

# Purposes: which evaluation a seed is for.
BACKDOOR = 0xBD  # backdoor, main-task and meta-test curves (Experiments 1-3)
META_TEST = 0x7E57  # meta-test accuracy of benign meta-training
CLIENT_STRIDE = 1000  # a client's evaluation: run seed + 1000 * client
# Chunks of episodes per parallel stream: the progress bar advances after
# each (an episode's results do not depend on its chunk).
PROGRESS_CHUNKS = 4


def client_seed(run_seed: int, client: Optional[int] = None) -> int:
  """The run seed of a benign client's own evaluations (Experiments 2 and 3:
  run seed + 1000 * client); `client` None: the run seed (Experiment 1's
  evaluation on the server's data)."""
  return int(run_seed if client is None else run_seed + CLIENT_STRIDE * client)


def evaluation_seed(run_seed: int, purpose: int = BACKDOOR,
                    client: Optional[int] = None) -> list[int]:
  """The seed of one evaluation: [`client_seed(run_seed, client)`, purpose].

  Every evaluation of a purpose on a client draws the same episodes, so
  Experiments 2 and 3 on that client compare models on equal footing.
  """
  return [client_seed(run_seed, client), int(purpose)]


def episode_seed(seed, stream: Sequence[int], index) -> tf.Tensor:
  """The seed episode `index` of the task with `stream` is drawn from."""
  return episodes_lib.fold_seed(seed, *stream, index)


@dataclasses.dataclass(frozen=True)
class Schedule:
  """Fine-tuning steps, and the steps after which the tasks are scored.

  Attributes:
    steps: fine-tuning steps per episode.
    every: score every this many steps; None: only after the last one.
    at_start: also score before the first step (step 0).
  """

  steps: int
  every: Optional[int] = None
  at_start: bool = True

  def __post_init__(self):
    if self.steps <= 0:
      raise ValueError(f"steps must be positive, got {self.steps}")
    if self.every is not None and self.every <= 0:
      raise ValueError(f"curve_every must be positive, got {self.every}")

  @property
  def chunk(self) -> int:
    """Steps between two scores (the last chunk may be shorter)."""
    return self.steps if self.every is None else self.every

  @property
  def chunks(self) -> int:
    return len(range(0, self.steps, self.chunk))

  @property
  def last_chunk(self) -> int:
    return self.steps - self.chunk * (self.chunks - 1)

  @property
  def points(self) -> list[int]:
    """The fine-tuning steps at which the tasks are scored."""
    steps = list(range(0, self.steps, self.chunk)) + [self.steps]
    return steps if self.at_start else steps[1:]


# `predictor(images, training=True) -> [B, N] scores`: a Keras model, or an
# object that classifies against a support set.
Predictor = Callable[..., tf.Tensor]


@dataclasses.dataclass(frozen=True)
class Task:
  """One kind of evaluation episode.

  Attributes:
    stream: integers folded into the evaluation seed before the episode's
      index (tasks with different streams draw independent episodes).
    sample: episode seed -> (episodes.Episode, context for `score`).
    score: (predictor, episode, context) -> float32 [metrics].
  """

  stream: tuple[int, ...]
  sample: Callable[[tf.Tensor], tuple[episodes_lib.Episode, Any]]
  score: Callable[[Predictor, episodes_lib.Episode, Any], tf.Tensor]


class Learner(Protocol):
  """How a model under evaluation starts an episode and fine-tunes.

  Methods run inside a tf.function; Keras objects are made beforehand.
  """

  def start(self, weights, episode: episodes_lib.Episode, seed) -> Any:
    """Loads `weights`, fresh optimizer (and head); returns the episode's
    plan for `train` (e.g. its mini-batch seed or query schedule)."""

  def train(self, episode: episodes_lib.Episode, plan, chunk, first_step,
            steps) -> None:
    """Fine-tuning steps first_step .. first_step + steps - 1, the chunk
    `chunk` (0-based) of the schedule."""

  def predictor(self, episode: episodes_lib.Episode) -> Predictor:
    """What the tasks score now."""

  def restore(self, weights) -> None:
    """Called with the weights under test after the last episode."""


class DenseLearner:
  """Adam on the whole model, its dense head included (Algorithm 1's
  FLClientFineTuning; `meta_test.py` settings).

  The mini-batch of step t is row t of one schedule drawn from the
  episode's mini-batch seed for all `steps` steps (shuffled epochs over the
  support set), so the model after step s is the same whatever the
  `Schedule` records along the way.
  """

  def __init__(self, model: tf.keras.Model, optimizer, *, batch: int,
               steps: int):
    """`steps`: the fine-tuning steps of an episode (`Schedule.steps`)."""
    self.model = model
    self.optimizer = optimizer
    self._batch = batch
    self._steps = steps

  @property
  def batch(self) -> int:
    return self._batch

  def start(self, weights, episode, seed):
    w.assign(self.model.trainable_variables, weights)
    reptile_tf.reset_optimizer(self.optimizer)
    return reptile_tf.shuffled_batches(episode, self._steps, self._batch,
                                       seed)

  def train(self, episode, plan, chunk, first_step, steps) -> None:
    del chunk  # step t trains on row t of the episode's schedule
    reptile_tf.train_steps(self.model, self.optimizer, episode.support_images,
                           episode.support_labels, steps=steps,
                           batch_size=self._batch, seed=None,
                           batches=plan[first_step:first_step + steps])

  def predictor(self, episode) -> Predictor:
    del episode
    return self.model

  def restore(self, weights) -> None:
    w.assign(self.model.trainable_variables, weights)


def fine_tune_curve(learner: Learner, weights, episode, seed,
                    schedule: Schedule, score) -> tf.Tensor:
  """float32 [points, metrics]: `score(predictor)` at `schedule.points`
  while `learner` fine-tunes on `episode` from `weights`."""
  plan = learner.start(weights, episode, seed)
  rows = tf.TensorArray(tf.float32, size=len(schedule.points))
  offset = 0
  if schedule.at_start:
    rows = rows.write(0, score(learner.predictor(episode)))
    offset = 1
  chunks, chunk = schedule.chunks, schedule.chunk
  for i in tf.range(chunks):
    steps = tf.where(i == chunks - 1, schedule.last_chunk, chunk)
    learner.train(episode, plan, i, i * chunk, steps)
    rows = rows.write(i + offset, score(learner.predictor(episode)))
  return rows.stack()


# The tasks of an evaluation, made from its data inside the tf.function.
TasksFn = Callable[[Mapping[str, tf.Tensor]], Sequence[Task]]


def make_episodes_fn(learner: Learner, schedule: Schedule,
                     make_tasks: TasksFn, metrics: Sequence[str]):
  """Builds `evaluate(weights, data, seed, episodes) -> {metric: [episodes,
  points]}`, `metrics` naming the tasks' scores in order.

  `episodes` = (start, stop) evaluates episodes start..stop-1 only; each is
  a function of `seed` and its index, so chunks evaluated apart (in any
  order, on other learners) equal one whole run. `data` is a mapping of
  tensors the tasks draw from; `learner.restore(weights)` runs at the end.

  With a stacked formulation configured (`batched_eval.configure`), a
  `DenseLearner`'s or the defense's metric-head learner's episodes are
  fine-tuned together instead (`batched_eval.make_batched_evaluate`: same
  episodes, same results to float tolerance).
  """
  stack = batched_eval.formulation()
  evaluate = (None if stack is None else batched_eval.make_batched_evaluate(
      learner, schedule, make_tasks, stack))
  if evaluate is None:
    evaluate = _one_at_a_time(learner, schedule, make_tasks)

  def evaluate_dict(weights, data, seed, episodes):
    start, stop = episodes
    values = evaluate([tf.convert_to_tensor(v, tf.float32) for v in weights],
                      {k: tf.convert_to_tensor(v) for k, v in data.items()},
                      tf.convert_to_tensor(seed, tf.int64), start, stop)
    return {name: values[:, :, k] for k, name in enumerate(metrics)}

  return evaluate_dict


def _one_at_a_time(learner: Learner, schedule: Schedule, make_tasks: TasksFn):
  """`evaluate(weights, data, seed, start, stop) -> float32 [episodes,
  points, metrics]` of `make_episodes_fn`, one episode after another."""

  @tf.function
  def evaluate(weights, data, seed, start, stop):
    tasks = make_tasks(data)
    per_episode = tf.TensorArray(tf.float32, size=stop - start)
    for i in tf.range(start, stop):
      rows = []
      for task in tasks:
        task_seed = episode_seed(seed, task.stream, i)
        episode, context = task.sample(task_seed)
        rows.append(fine_tune_curve(
            learner, weights, episode,
            episodes_lib.fold_seed(task_seed, episodes_lib.STREAM_MINIBATCH),
            schedule, functools.partial(task.score, episode=episode,
                                        context=context)))
      per_episode = per_episode.write(i - start, tf.concat(rows, 1))
    learner.restore(weights)
    return per_episode.stack()  # [episodes, points, metrics]

  return lambda weights, data, seed, start, stop: evaluate(
      weights, data, seed, tf.constant(start, tf.int32),
      tf.constant(stop, tf.int32))


def map_episodes(replicas: parallel.ReplicaPool, fn, episodes: int,
                 desc: str) -> list:
  """`replicas.map_chunks(fn, episodes)` in `PROGRESS_CHUNKS` chunks per
  replica (batched evaluation: chunks of up to `batched_eval.MAX_STACK`),
  with a progress bar of episodes named `desc`; results in episode
  order."""
  chunks = batched_eval.chunks_per_replica(episodes, replicas.size,
                                           PROGRESS_CHUNKS)
  with progress.bar(episodes, desc, "episode") as counter:
    return replicas.map_chunks(fn, episodes, chunks_per_replica=chunks,
                               on_done=counter.update)


def mean_over_episodes(parts) -> dict[str, np.ndarray]:
  """{metric: [points]}, the mean over every episode of `parts`, the
  per-chunk {metric: [episodes, points]} results in episode order."""
  return {k: np.mean(np.concatenate([np.asarray(p[k]) for p in parts]),
                     axis=0) for k in parts[0]}


class EpisodeEvaluator:
  """`make_episodes_fn` on `parallelism` learners side by side.

  Each learner (with its own traced function) evaluates a contiguous chunk
  of the episodes (`parallel.ReplicaPool.map_chunks`); results do not
  depend on how many there are.
  """

  def __init__(self, make_learner: Callable[[], Learner], *,
               schedule: Schedule, make_tasks: TasksFn,
               metrics: Sequence[str], episodes: int,
               parallelism: Optional[int] = None):
    """`parallelism` default: `parallel.streams()`."""
    self.schedule = schedule
    self.episodes = episodes

    def make_replica():
      learner = make_learner()
      return learner, make_episodes_fn(learner, schedule, make_tasks, metrics)

    self._replicas = parallel.ReplicaPool(make_replica,
                                         parallelism or parallel.streams())
    self.learner = self._replicas.replicas[0][0]

  def per_chunk(self, weights, data, seed) -> list[dict[str, tf.Tensor]]:
    """{metric: [episodes, points]} of each chunk, in episode order."""
    return map_episodes(
        self._replicas,
        lambda replica, chunk: replica[1](weights, data, seed, chunk),
        self.episodes, "evaluation")

  def curves(self, weights, data, seed) -> dict[str, np.ndarray]:
    """{metric: mean over episodes, [points]} at `schedule.points`."""
    return mean_over_episodes(self.per_chunk(weights, data, seed))
