"""The pruning defense on a federated meta-learning attack run (Conv4).

The pruning paper's procedure transplanted to the main paper's setting: the
"last conv layer" is Conv4's conv4 (pruning a channel zeroes its kernel and
norm4's gamma and beta, `surgery.conv4_target`); each client's activation
record is over the images of its own class pool (attackers' pools included,
the server cannot tell); the metrics are those of Experiment 1
(`evaluation/backdoor.py`), mapped onto the defense's names:

    val_accuracy    main-task accuracy (5-way episodes from meta-training
                    classes with the target class: the server's validation)
    test_accuracy   meta-test accuracy (unseen classes)
    attack_success  backdoor accuracy on unseen keyed images (attack
                    validation); `backdoor_train_accuracy` is kept too

Each evaluation fine-tunes on every evaluation episode, so curves cost
(points x episodes x e) Adam steps: use `--prune_step` and few
`--eval_episodes`. Fine-tuning rounds are not offered here.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from fedmeta_tf.defenses.pruning import defense
from fedmeta_tf.defenses.pruning import surgery
from fedmeta_tf.defenses.pruning import voting
from fedmeta_tf.evaluation import backdoor as backdoor_eval
from fedmeta_tf.experiments import backdoor_attack
from fedmeta_tf.experiments import training

EXPERIMENT_JSON = backdoor_attack.EXPERIMENT_JSON


def defend_run(run_dir: str, config: defense.PruningConfig, *,
               checkpoint: str = "final", eval_episodes: int = 10,
               activation_images: int = 400) -> defense.DefenseResult:
  """Runs the defense on `run_dir`'s checkpoint (a train_fedmeta --attack
  run directory)."""
  if config.fine_tune_rounds:
    raise ValueError("fine_tune_rounds is supported for supervised runs only")
  if config.stop_metric != "val_accuracy":
    raise ValueError("meta-learning runs stop on val_accuracy (main task)")
  train_config, attack = backdoor_attack.load_run(run_dir)
  weights = backdoor_attack.load_weights(run_dir, checkpoint)
  attack_split = backdoor_attack.load_attack_split(
      train_config, attack.backdoor, attack.schedule.attacker_ids)
  image_shape = attack_split.split.meta_train.image_shape
  model_fn = training.make_model_fn(train_config, image_shape)
  evaluator = backdoor_eval.BackdoorEvaluator(
      model_fn, config=backdoor_attack.backdoor_eval_config(
          train_config, eval_episodes, attack.backdoor.case),
      data=backdoor_attack.eval_data_for(attack_split),
      seed=train_config.seed)
  model = model_fn()
  target = surgery.conv4_target(model)
  model.set_weights(weights)
  acts = surgery.activation_model(model, target)
  rng = np.random.default_rng([train_config.seed, 0x9A1])
  activations = []
  for pool in attack_split.client_pools:
    images = pool.reshape([-1, *pool.shape[2:]])
    pick = rng.choice(len(images), min(activation_images, len(images)),
                      replace=False)
    activations.append(voting.mean_channel_activation(
        acts, tf.cast(images[np.sort(pick)], tf.float32).numpy() / 255.0,
        batch_size=100))

  def evaluate(w):
    m = evaluator([tf.constant(v) for v in w])
    return {"val_accuracy": m["main_task_accuracy"],
            "test_accuracy": m["meta_test_accuracy"],
            "attack_success": m["backdoor_val_accuracy"],
            "backdoor_train_accuracy": m["backdoor_train_accuracy"]}

  return defense.run_defense(weights, target=target,
                             client_activations=activations,
                             evaluate=evaluate, config=config)
