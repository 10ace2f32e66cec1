r"""Train-step throughput and model FLOP utilisation (MFU) of ICT and REALM pre-training.

  python -m benchmarks.train_step_bench [--presets=tiny,minilm] [--steps=5]

MFU = model FLOPs per second (analytic, forward + backward = 3x forward) over the peak fp32 matmul
FLOP/s measured in the same run; inputs are synthetic featurized batches, so only the model step
is timed. Writes benchmarks/results/train_step.json. Settings: `TrainStepBenchConfig`;
`run(config)`.
"""
import dataclasses
import time
from typing import List

from benchmarks import common
from realm_tf.config_base import ConfigBase


MEASURES = ("realm_tf/modeling/", "realm_tf/training/", "realm_tf/stages/tasks.py")


@dataclasses.dataclass
class TrainStepBenchConfig(ConfigBase):
  """Encoder presets, XLA or not, ICT and REALM batch sizes, and timed steps."""
  presets: List[str] = dataclasses.field(default_factory=lambda: ["tiny", "minilm"])
  steps: int = 5
  batch_size: int = 4
  ict_batch_size: int = 16
  # XLA is opt-in (`--jit_compile=off,on`): on the 2-core, 24 GiB CPU machine XLA's REALM minilm
  # step asked for an 11 GiB buffer and ran out of memory (2026-11-26), failing `make bench`.
  jit_compile: List[str] = dataclasses.field(default_factory=lambda: ["off"])
  allow_dirty: bool = False


HELP = {
    "allow_dirty": common.ALLOW_DIRTY_HELP,
    "presets": "Encoder presets to measure.",
    "steps": "Timed steps per configuration (after 2 warm-up steps).",
    "batch_size": "REALM queries per step.",
    "ict_batch_size": "ICT batch size.",
    "jit_compile": "XLA-compile the step: off, on, or both.",
}


def encoder_flops(cfg, seq_len: int) -> float:
  """Forward FLOPs of one BertEncoderV2 pass over `seq_len` tokens (matmuls only)."""
  h, i, layers = cfg.hidden_size, cfg.intermediate_size, cfg.num_layers
  per_layer = 2 * seq_len * (4 * h * h + 2 * h * i) + 2 * 2 * seq_len * seq_len * h
  return layers * per_layer + 2 * h * h  # + pooler


def realm_flops(cfg, batch: int) -> float:
  """Forward FLOPs of one REALM batch: query tower, C doc towers, C joint passes, MLM head."""
  c, m = cfg.num_candidates, cfg.max_predictions
  from realm_tf.modeling.encoder_config import get_encoder_config  # pylint: disable=g-import-not-at-top
  r, k = get_encoder_config(cfg.retriever_encoder), get_encoder_config(cfg.reader_encoder)
  per_query = (encoder_flops(r, cfg.query_seq_length) + c * encoder_flops(r, cfg.doc_seq_length)
               + c * encoder_flops(k, cfg.joint_seq_length)
               + c * m * (2 * k.hidden_size ** 2 + 2 * k.hidden_size * k.vocab_size))
  return batch * per_query


def run(config: TrainStepBenchConfig) -> dict:
  """Times ICT and REALM train steps for every preset × jit_compile setting of `config`; writes
  benchmarks/results/train_step.json and returns the results (seconds per step, MFU)."""
  provenance = common.Provenance(config.allow_dirty)  # refuses a dirty checkout unless allowed
  import numpy as np  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from realm_tf.modeling.realm_pretrainer import RealmConfig, RealmPretrainer  # pylint: disable=g-import-not-at-top
  from realm_tf.modeling.retriever import Retriever, RetrieverConfig  # pylint: disable=g-import-not-at-top
  from realm_tf.stages import tasks  # pylint: disable=g-import-not-at-top
  from realm_tf.training.optimizer import create_optimizer  # pylint: disable=g-import-not-at-top
  from realm_tf.training.trainer import Trainer  # pylint: disable=g-import-not-at-top
  from realm_tf.modeling.encoder_config import get_encoder_config  # pylint: disable=g-import-not-at-top

  rng = np.random.RandomState(0)
  peak = common.peak_matmul_flops()
  results = {"peak_matmul_flops": peak, "configs": []}

  def timed(trainer, batch, steps):
    batch = dict(batch)
    for _ in range(2):
      trainer._train_step(batch)  # pylint: disable=protected-access
    t = time.perf_counter()
    for _ in range(steps):
      out = trainer._train_step(batch)  # pylint: disable=protected-access
    float(out["loss"][0].numpy())
    return (time.perf_counter() - t) / steps

  def ids(shape):
    return tf.constant(rng.randint(1000, 29000, shape), tf.int32)

  for preset, jit in [(p, j) for p in config.presets for j in config.jit_compile]:
    jit_compile = jit == "on"
    enc = get_encoder_config(preset)
    # ICT.
    b = config.ict_batch_size
    model = Retriever(RetrieverConfig(encoder=preset))
    model.build_towers()
    trainer = Trainer(model, create_optimizer(1e-4, 100, 0), tasks.ict_task,
                      tf.distribute.get_strategy(), "/tmp/bench_ict", b, jit_compile=jit_compile)
    batch = {}
    for prefix, t in (("query", 96), ("block", 288)):
      batch.update({f"{prefix}/input_word_ids": ids([b, t]),
                    f"{prefix}/input_mask": tf.ones([b, t], tf.int32),
                    f"{prefix}/input_type_ids": tf.zeros([b, t], tf.int32)})
    sec = timed(trainer, batch, config.steps)
    flops = 3 * b * (encoder_flops(enc, 96) + encoder_flops(enc, 288))
    results["configs"].append({"task": "ict", "preset": preset, "jit_compile": jit_compile,
                               "batch_size": b,
                               "seconds_per_step": sec, "examples_per_second": b / sec,
                               "model_flops_per_second": flops / sec, "mfu": flops / sec / peak})
    # REALM.
    b = config.batch_size
    cfg = RealmConfig(retriever_encoder=preset, reader_encoder=preset)
    model = RealmPretrainer(cfg)
    model.build_all()
    trainer = Trainer(model, create_optimizer(1e-4, 100, 0), tasks.realm_pretrain_task,
                      tf.distribute.get_strategy(), "/tmp/bench_realm", b, jit_compile=jit_compile)
    c, m = cfg.num_candidates, cfg.max_predictions
    batch = {}
    for prefix, shape in (("query", [b, 96]), ("candidates", [b, c, 288]), ("joint", [b, c, 384])):
      batch.update({f"{prefix}/input_word_ids": ids(shape),
                    f"{prefix}/input_mask": tf.ones(shape, tf.int32),
                    f"{prefix}/input_type_ids": tf.zeros(shape, tf.int32)})
    batch.update(masked_positions=ids([b, m]) % 90 + 1, masked_ids=ids([b, m]),
                 masked_weights=tf.ones([b, m]), candidate_mask=tf.ones([b, c]))
    sec = timed(trainer, batch, config.steps)
    flops = 3 * realm_flops(cfg, b)
    results["configs"].append({"task": "realm", "preset": preset, "jit_compile": jit_compile,
                               "batch_size": b,
                               "num_candidates": c, "seconds_per_step": sec,
                               "examples_per_second": b / sec,
                               "model_flops_per_second": flops / sec, "mfu": flops / sec / peak})
  common.write_result("train_step", results, provenance)
  return results


if __name__ == "__main__":
  from realm_tf.launch import config_program  # pylint: disable=g-import-not-at-top
  config_program.main(TrainStepBenchConfig, HELP, run)
