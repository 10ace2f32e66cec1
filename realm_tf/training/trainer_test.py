"""Tests of the shared training loop: learning, exact resume, NaN stop, config checks, replicas."""
import json
import os
import textwrap

import numpy as np
import pytest
import tensorflow as tf
import tf_keras

from realm_tf.modeling.encoder_config import EncoderConfig
from realm_tf.testing import cli as cli_testing
from realm_tf.modeling.realm_pretrainer import RealmConfig, RealmPretrainer
from realm_tf.stages import tasks
from realm_tf.training.optimizer import create_optimizer
from realm_tf.training.trainer import (DONE_MARKER, ConfigMismatchError, HostStagedTask,
                                       InputShard, NonFiniteLossError, Trainer,
                                       check_or_write_config)

MICRO = EncoderConfig(vocab_size=1100, hidden_size=32, num_layers=1, num_attention_heads=2,
                      intermediate_size=64, dropout_rate=0.0, attention_dropout_rate=0.0)
CONFIG = RealmConfig(retriever_encoder=MICRO, reader_encoder=MICRO, query_seq_length=12, doc_seq_length=16, joint_seq_length=24,
                     num_candidates=3, max_predictions=4, retriever_projection_dropout=0.0)
BATCH = 4


def example(index):
  """A deterministic featurized example whose content depends only on its raw index."""
  seed = tf.stack([tf.constant(7, tf.int64), index])
  c, m = CONFIG.num_candidates, CONFIG.max_predictions
  ex = {}
  for prefix, shape in (("query", [CONFIG.query_seq_length]),
                        ("candidates", [c, CONFIG.doc_seq_length]),
                        ("joint", [c, CONFIG.joint_seq_length])):
    ex[f"{prefix}/input_word_ids"] = tf.random.stateless_uniform(
        shape, seed, 1000, 1050, tf.int32)
    ex[f"{prefix}/input_mask"] = tf.ones(shape, tf.int32)
    ex[f"{prefix}/input_type_ids"] = tf.zeros(shape, tf.int32)
  ex["masked_positions"] = tf.constant([1, 2, 0, 0], tf.int32)
  # Targets are a function of the joint input, so the model can learn them.
  ex["masked_ids"] = tf.stack([ex["joint/input_word_ids"][0, 1], ex["joint/input_word_ids"][0, 2],
                               0, 0])
  ex["masked_weights"] = tf.constant([1.0, 1.0, 0.0, 0.0])
  ex["candidate_mask"] = tf.ones([c])
  ex["index"] = index
  return ex


def make_dataset(position, shard=None):
  ds = tf.data.Dataset.range(position, 1 << 40).map(example).batch(BATCH, drop_remainder=True)

  def _pos(b):
    b["data_position"] = tf.fill([BATCH], tf.reduce_max(b.pop("index")) + 1)
    return b

  return ds.map(_pos)


def make_trainer(model_dir, lr=1e-3, task=tasks.realm_pretrain_task, checkpoint_every=2):
  strategy = tf.distribute.get_strategy()
  model = RealmPretrainer(CONFIG)
  model.build_all()
  opt = create_optimizer(lr, num_train_steps=1000, num_warmup_steps=0)
  return Trainer(model, opt, task, strategy, model_dir, BATCH, checkpoint_every=checkpoint_every,
                 log_every=1)


def test_short_run_loss_decreases(tmp_path):
  tf.random.set_seed(0)
  model_dir = str(tmp_path / "learn")
  trainer = make_trainer(model_dir, lr=2e-3, checkpoint_every=1000)
  losses = []
  trainer.train(lambda p, s: make_dataset(0).take(1).repeat(), 25,
                hooks=[lambda s: losses.append(trainer.model) and False])
  first = trainer.task(trainer.model, next(iter(make_dataset(0))), False)[0]
  assert os.path.exists(os.path.join(model_dir, DONE_MARKER))
  # The optimizer's slots exist before the first step, so the step is traced once, not twice.
  assert trainer._train_step.experimental_get_tracing_count() == 1  # pylint: disable=protected-access
  # Start from a fresh model: the trained one must fit the batch far better.
  fresh = make_trainer(str(tmp_path / "fresh"))
  batch = next(iter(make_dataset(0)))
  batch.pop("data_position")
  before = float(tf.reduce_mean(fresh.task(fresh.model, batch, False)[0]))
  after = float(tf.reduce_mean(trainer.task(trainer.model, batch, False)[0]))
  assert after < 0.7 * before, (before, after, first)


def test_resume_after_kill_restores_step_and_data_position(tmp_path):
  model_dir = str(tmp_path / "resume")
  trainer = make_trainer(model_dir)
  seen = []

  def killer(step):
    if step == 3:
      raise KeyboardInterrupt("killed")
    return False

  with pytest.raises(KeyboardInterrupt):
    trainer.train(make_dataset, 10, hooks=[killer])
  # Checkpoint at step 2 holds data position 2 * BATCH.
  resumed = make_trainer(model_dir)

  def recording(position, shard):
    seen.append((position, shard))
    return make_dataset(position)

  assert resumed.train(recording, 4)["start_step"] == 2
  assert seen[0] == (2 * BATCH, InputShard(0, 1, BATCH))
  assert int(resumed.step.numpy()) == 4
  assert resumed.data_position.numpy().tolist() == [4 * BATCH]  # one input pipeline
  restored = make_trainer(model_dir)
  assert restored.restore() == 4


def test_checkpoint_with_a_scalar_data_position_resumes_on_one_host(tmp_path):
  """A one-host checkpoint written when the data position was one scalar still resumes, at its
  position, with its weights."""
  model_dir = str(tmp_path / "scalar")
  trainer = make_trainer(model_dir)
  trainer.train(make_dataset, 2)
  weights = [w.numpy() for w in trainer.model.trainable_weights]
  old = tf.train.Checkpoint(model=trainer.model, optimizer=trainer.optimizer, step=trainer.step,
                            data_position=tf.Variable(40, dtype=tf.int64))
  tf.train.CheckpointManager(old, os.path.join(model_dir, "checkpoints"), max_to_keep=5).save(7)
  resumed = make_trainer(model_dir)
  assert resumed.restore() == 2
  assert resumed.data_position.numpy().tolist() == [40]
  for a, b in zip(weights, resumed.model.trainable_weights):
    np.testing.assert_array_equal(a, b.numpy())


# Slow: the default run's tests/faults/test_numerics.py stops the same Trainer on a NaN loss and
# on a finite loss with an infinite gradient norm, before that step's checkpoint and hooks.
@pytest.mark.slow
def test_nan_loss_stops_and_keeps_last_good_checkpoint(tmp_path):
  model_dir = str(tmp_path / "nan")
  trainer = make_trainer(model_dir)
  trainer.train(make_dataset, 2)
  good = trainer.manager.latest_checkpoint

  def nan_task(model, batch, training):
    loss, metrics = tasks.realm_pretrain_task(model, batch, training)
    return loss * float("nan"), metrics

  bad = make_trainer(model_dir, task=nan_task)
  with pytest.raises(NonFiniteLossError, match="step 3"):
    bad.train(make_dataset, 6)
  assert bad.manager.latest_checkpoint == good


@tf.custom_gradient
def _overflowing_gradient(x):
  """Identity whose gradient overflows to inf: a finite loss with an exploding gradient."""
  return tf.identity(x), lambda dy: dy * float("inf")


# Slow: the default run's tests/faults/test_numerics.py stops the same Trainer on a NaN loss and
# on a finite loss with an infinite gradient norm, before that step's checkpoint and hooks.
@pytest.mark.slow
def test_finite_loss_with_inf_gradient_stops_before_that_steps_checkpoint_and_hooks(tmp_path):
  model_dir = str(tmp_path / "inf_grad")
  trainer = make_trainer(model_dir, checkpoint_every=1)
  trainer.train(make_dataset, 2)
  good = trainer.manager.latest_checkpoint

  def exploding_task(model, batch, training):
    loss, metrics = tasks.realm_pretrain_task(model, batch, training)
    return _overflowing_gradient(loss), metrics

  hook_steps = []
  bad = make_trainer(model_dir, task=exploding_task, checkpoint_every=1)
  with pytest.raises(NonFiniteLossError, match=r"Non-finite gradient norm at step 3 \(loss [0-9]"):
    bad.train(make_dataset, 6, hooks=[lambda step: hook_steps.append(step)])
  # Step 3's NaN weights were neither checkpointed nor handed to a hook (an export).
  assert bad.manager.latest_checkpoint == good and hook_steps == []
  restored = make_trainer(model_dir)
  assert restored.restore() == 2
  assert all(np.isfinite(v.numpy()).all() for v in restored.model.trainable_variables)


def test_config_mismatch_is_refused(tmp_path):
  model_dir = str(tmp_path / "cfg")
  check_or_write_config(model_dir, {"a": 1, "b": 2})
  check_or_write_config(model_dir, {"a": 1, "b": 2})
  with pytest.raises(ConfigMismatchError, match="b"):
    check_or_write_config(model_dir, {"a": 1, "b": 3})
  with open(os.path.join(model_dir, "config.json")) as f:
    assert json.load(f) == {"a": 1, "b": 2}
  # Schedule fields may change on resume (and are recorded); anything else still may not.
  check_or_write_config(model_dir, {"a": 2, "b": 2}, may_change=("a",))
  with open(os.path.join(model_dir, "config.json")) as f:
    assert json.load(f) == {"a": 2, "b": 2}
  with pytest.raises(ConfigMismatchError, match=r"\['b'\]"):
    check_or_write_config(model_dir, {"a": 3, "b": 3}, may_change=("a",))


def test_resume_accepts_a_record_without_a_field_that_holds_its_default(tmp_path):
  import dataclasses  # pylint: disable=g-import-not-at-top
  from realm_tf.stages.finetune import FinetuneConfig  # pylint: disable=g-import-not-at-top
  model_dir = str(tmp_path / "ft")
  old = dict(FinetuneConfig().to_dict(), index_bundle="/i/00000001")
  del old["model"]["featurization"]  # written before OpenQAConfig.featurization existed
  os.makedirs(model_dir)
  with open(os.path.join(model_dir, "config.json"), "w") as f:
    json.dump(old, f)
  new = dict(FinetuneConfig().to_dict(), index_bundle="/i/00000001")
  with pytest.raises(ConfigMismatchError, match="model"):  # without the class: refused
    check_or_write_config(model_dir, new)
  check_or_write_config(model_dir, new, config_class=FinetuneConfig)
  orqa = FinetuneConfig(model=dataclasses.replace(FinetuneConfig().model, featurization="orqa"))
  with pytest.raises(ConfigMismatchError, match=r"\['model'\]"):  # not the default: refused
    check_or_write_config(model_dir, dict(orqa.to_dict(), index_bundle="/i/00000001"),
                          config_class=FinetuneConfig)


def three_steps(strategy, weights: str, model_dir: str):
  """Three REALM steps from `weights` under `strategy`: the loss, the replicas, a weight's sum."""
  tf.random.set_seed(1)
  with strategy.scope():
    model = RealmPretrainer(CONFIG)
    model.build_all()
    model.load_weights(weights)
    opt = create_optimizer(1e-3, 100, 0)
  tr = Trainer(model, opt, tasks.realm_pretrain_task, strategy, model_dir, BATCH,
               checkpoint_every=100)
  out = tr.train(make_dataset, 3)
  return {"loss": out["loss"], "replicas": strategy.num_replicas_in_sync,
          "w": float(tf.reduce_sum(model.trainable_variables[5]))}


# Two logical CPU devices can be made only before TensorFlow starts: the mirrored run is a fresh
# process; the one-device run is this one.
_MIRRORED_SCRIPT = textwrap.dedent("""
    import json, sys
    from realm_tf.utils.strategy import get_strategy
    strategy = get_strategy(strategy=sys.argv[1], num_cpu_devices=2)
    from realm_tf.training import trainer_test as t
    print("RESULT", json.dumps(t.three_steps(strategy, sys.argv[2], sys.argv[3])))
""")


def test_two_cpu_replicas_match_one_device(tmp_path):
  weights = str(tmp_path / "init.weights.h5")
  model = RealmPretrainer(CONFIG)
  model.build_all()
  model.save_weights(weights)
  default = three_steps(tf.distribute.get_strategy(), weights, str(tmp_path / "default"))
  mirrored = cli_testing.run_strategy_scripts(_MIRRORED_SCRIPT, weights, str(tmp_path),
                                              strategies=("mirrored",))
  assert mirrored["mirrored"]["replicas"] == 2
  assert default["replicas"] == 1
  np.testing.assert_allclose(default["loss"], mirrored["mirrored"]["loss"], rtol=1e-4,
                             atol=1e-6)
  np.testing.assert_allclose(default["w"], mirrored["mirrored"]["w"], rtol=1e-4, atol=1e-6)


def _doubled_on_host(model, batch, first):
  """A host part: numpy (never compilable) between the two device parts."""
  del model, batch
  out = tf.numpy_function(lambda w: (2 * w).astype(np.float32), [first["weights"]], tf.float32)
  return {"weights": tf.ensure_shape(out, first["weights"].shape)}


STAGED = HostStagedTask(
    device_first=lambda model, batch, training: {
        "weights": 0.5 * tf.cast(batch["masked_weights"], tf.float32)},
    host=_doubled_on_host,
    device_second=lambda model, batch, first, host, training: tasks.realm_pretrain_task(
        model, dict(batch, masked_weights=host["weights"]), training))


@pytest.mark.slow  # kept out of the default run for its time; `make test-slow` runs it
def test_compiled_steps_make_the_uncompiled_update(tmp_path):
  """jit_compile compiles the step, whole or (a HostStagedTask) around its host part, and
  changes no number: the same loss and weights as the uncompiled step."""
  runs = {}
  for name, jit, task in (("plain", False, tasks.realm_pretrain_task),
                          ("whole", True, tasks.realm_pretrain_task), ("staged", True, STAGED)):
    tf_keras.utils.set_random_seed(0)
    model = RealmPretrainer(CONFIG)
    model.build_all()
    trainer = Trainer(model, create_optimizer(1e-3, 1000, 0), task, tf.distribute.get_strategy(),
                      str(tmp_path / name), BATCH, checkpoint_every=1000, log_every=1,
                      jit_compile=jit)
    result = trainer.train(make_dataset, 2)
    runs[name] = (result["loss"], [v.numpy() for v in model.trainable_variables])
  for name in ("whole", "staged"):
    assert runs[name][0] == pytest.approx(runs["plain"][0], rel=1e-5), name
    # Two Adam steps of 1e-3 move a weight by up to 2e-3; Adam magnifies rounding differences in
    # near-zero gradients (measured: 4e-5 at 2 of 35,200 word embeddings).
    for compiled, plain in zip(runs[name][1], runs["plain"][1]):
      np.testing.assert_allclose(compiled, plain, rtol=1e-4, atol=1e-4, err_msg=name)


def test_a_checkpoint_with_flipped_bytes_is_refused_at_restore_naming_its_file(tmp_path):
  """Damage in the optimizer's slots would only be read at the first step (deferred restore):
  restore() reads the whole checkpoint first and refuses it with one line naming the file."""
  model_dir = str(tmp_path / "damaged")
  trainer = make_trainer(model_dir)
  weights = trainer.model.trainable_variables  # one update makes the optimizer's slots
  trainer.optimizer.apply_gradients(zip([tf.zeros_like(w) for w in weights], weights))
  trainer.save(2)
  prefix = trainer.manager.latest_checkpoint
  data = tf.io.gfile.glob(prefix + ".data-*")[0]
  with open(data, "r+b") as f:  # the last bytes: the tensors saved last (optimizer slots)
    f.seek(os.path.getsize(data) - 5)
    byte = f.read(1)
    f.seek(-1, os.SEEK_CUR)
    f.write(bytes([byte[0] ^ 0xFF]))
  with pytest.raises(tf.errors.DataLossError) as e:
    make_trainer(model_dir).restore()
  message = str(e.value)
  assert prefix in message and os.path.basename(data) in message and "\n" not in message, message


def test_a_full_disk_at_a_checkpoint_is_a_disk_full_error_and_keeps_the_last_one(tmp_path):
  from realm_tf.io import atomic  # pylint: disable=g-import-not-at-top
  from realm_tf.testing import small_disk  # pylint: disable=g-import-not-at-top
  small_disk.skip_unless_mountable(str(tmp_path))
  with small_disk.small_tmpfs(str(tmp_path / "disk"), 64 << 20) as disk:
    trainer = make_trainer(disk)
    trainer.step.assign(2)
    trainer.save(2)
    size = sum(os.path.getsize(p) for p in tf.io.gfile.glob(trainer.manager.latest_checkpoint
                                                            + "*"))
    small_disk.fill(disk, size // 2)
    trainer.step.assign(4)
    with pytest.raises(atomic.DiskFullError) as e:
      trainer.save(4)
    assert os.path.join(disk, "checkpoints") in str(e.value) and "Disk full" in str(e.value)
    assert not tf.io.gfile.glob(os.path.join(disk, "checkpoints", "*_temp"))  # space given back
    assert make_trainer(disk).restore() == 2  # the last checkpoint is whole and loads
    small_disk.free(disk)
    trainer.save(4)
    assert make_trainer(disk).restore() == 4


def test_restore_removes_what_a_killed_checkpoint_save_left(tmp_path):
  trainer = make_trainer(str(tmp_path))
  trainer.step.assign(2)
  trainer.save(2)
  # A save of step 3 killed mid-way: TensorFlow's temporary, never renamed into place.
  temp = os.path.join(trainer.manager.directory, "ckpt-3_temp")
  os.makedirs(os.path.join(temp, "part-00000-of-00001"))
  assert make_trainer(str(tmp_path)).restore() == 2
  assert not os.path.exists(temp)
  assert not [n for n in os.listdir(trainer.manager.directory) if n.endswith("_temp")]
