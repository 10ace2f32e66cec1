"""One worker of a MultiWorkerMirroredStrategy run on local processes (tests/test_multi_worker.py).

    python -m realm_tf.testing.multi_worker <job.json>     (with TF_CONFIG naming this worker)

Trains with the real Trainer on the training stages' real input code (`corpus.training_blocks`
over `corpus.positioned_stream`, `corpus.numbered_examples`, `corpus.batch_with_data_position`),
one input pipeline per worker, with a stand-in task (a bag-of-wordpieces regression: a REALM or
ICT model's first step would spend most of the test's time tracing), then optionally embeds the
corpus with `embed_corpus.embed_shards`. It records what its pipeline fed, and writes
`<out_dir>/worker-<index>.json`:

* `built`: [position, shard index, shard count, batch size] each time the trainer built its input;
* `batches`: [data_position, block ids] of every batch the pipeline made (a few past the last
  step are prefetched: the caller keeps those at or below the step's position);
* `steps`: [step, the trainer's data positions] after each step;
* `embedded`: the corpus shards this worker embedded.

`job.json`: corpus_dir, model_dir, out_dir, num_steps, kill_at_step (0: none; the hook raises
after that step, as a killed worker stops), seed, shuffle_window, global_batch, and optionally
export + embed_dir (embed after training; the chief merges the parts into `<out_dir>/merged.npz`).
The process leaves with os._exit (status 0, or 3 when killed) so no peer waits on its shutdown.
"""
import json
import os
import sys
import time

_START = time.time()
TOKENS = 16  # wordpieces of a block the stand-in model reads


def _log(index, what):
  print(f"[worker {index}] {time.time() - _START:.1f} s: {what}", file=sys.stderr, flush=True)


def micro_retriever_config():
  """The micro retriever whose export the workers embed the corpus with."""
  from realm_tf.modeling.encoder_config import EncoderConfig  # pylint: disable=g-import-not-at-top
  from realm_tf.modeling.retriever import RetrieverConfig  # pylint: disable=g-import-not-at-top
  enc = EncoderConfig(hidden_size=16, num_layers=1, num_attention_heads=2, intermediate_size=32,
                      dropout_rate=0.0, attention_dropout_rate=0.0)
  return RetrieverConfig(encoder=enc, projection_size=8, query_seq_length=16,
                         doc_seq_length=32, projection_dropout=0.0)


def training_examples(corpus_dir, batch_size, start_position, seed, shuffle_window,
                      num_shards=1, shard_index=0):
  """Batches of the stand-in task from the training stages' stream: each block's first TOKENS
  body wordpieces and its id, with `data_position` (as ICT and the reader warm-up batch)."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from realm_tf.data import corpus as corpus_lib  # pylint: disable=g-import-not-at-top
  blocks, keep = corpus_lib.training_blocks(corpus_dir, seed, shuffle_window, start_position, 0.0,
                                            num_shards=num_shards, shard_index=shard_index)

  def build(index, block):
    del index
    body = block["body_ids"][:TOKENS]
    tokens = tf.pad(body, [[0, TOKENS - tf.shape(body)[0]]])
    return {"tokens": tf.ensure_shape(tokens, [TOKENS]), "block_id": block["block_id"],
            "valid": tf.constant(True)}

  examples = corpus_lib.numbered_examples(blocks, build, None, keep_index=True, keep=keep)
  return corpus_lib.batch_with_data_position(examples, batch_size)


def stand_in_model():
  """The stand-in task's model: mean of the wordpieces' embeddings → one number."""
  import tf_keras  # pylint: disable=g-import-not-at-top
  model = tf_keras.Sequential([tf_keras.layers.Embedding(30522, 8),
                               tf_keras.layers.GlobalAveragePooling1D(),
                               tf_keras.layers.Dense(1)])
  model.build([None, TOKENS])
  return model


def stand_in_task(model, batch, training):
  """Regresses a function of each block's id from its wordpieces (per-example squared error)."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  target = tf.cast(batch["block_id"] % 7, tf.float32) / 7.0
  prediction = model(batch["tokens"], training=training)[:, 0]
  loss = tf.square(prediction - target)
  return loss, {"mse": (tf.reduce_sum(loss), tf.cast(tf.size(loss), tf.float32))}


def _run(job, index, record):
  import numpy as np  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  tf.config.threading.set_intra_op_parallelism_threads(1)
  tf.config.threading.set_inter_op_parallelism_threads(2)
  strategy = tf.distribute.MultiWorkerMirroredStrategy()
  from realm_tf.data import corpus as corpus_lib  # pylint: disable=g-import-not-at-top
  from realm_tf.retrieval import embed_corpus, embedder_export  # pylint: disable=g-import-not-at-top
  from realm_tf.training.optimizer import create_optimizer  # pylint: disable=g-import-not-at-top
  from realm_tf.training.trainer import Trainer  # pylint: disable=g-import-not-at-top

  _log(index, "TensorFlow and the strategy are up")
  tf.random.set_seed(job["seed"])
  with strategy.scope():
    model = stand_in_model()
    optimizer = create_optimizer(1e-2, 100, 0)
  trainer = Trainer(model, optimizer, stand_in_task, strategy, job["model_dir"],
                    job["global_batch"], checkpoint_every=2, log_every=1, name="stand_in")
  _log(index, "model and trainer built")

  def note(block_ids, position):
    if not record["batches"]:
      _log(index, "first batch made")
    record["batches"].append([int(position.numpy().max()), block_ids.numpy().tolist()])
    return np.int64(0)

  def make_dataset(position, shard):
    record["built"].append([position, shard.index, shard.count, shard.batch_size])
    ds = training_examples(job["corpus_dir"], shard.batch_size, position, job["seed"],
                           job["shuffle_window"], shard.count, shard.index)

    def tap(batch):
      done = tf.py_function(note, [batch["block_id"], batch["data_position"]], tf.int64)
      return dict(batch, data_position=batch["data_position"] + 0 * done)
    return ds.map(tap)

  def hook(step):
    _log(index, f"step {step}")
    record["steps"].append([step, trainer.data_position.numpy().tolist()])
    if step == job["kill_at_step"]:
      raise KeyboardInterrupt(f"worker {index} stops after step {step}")
    return False

  trainer.train(make_dataset, job["num_steps"], hooks=[hook])
  if job.get("export"):
    with strategy.scope():
      embedder = embedder_export.load_embedder(job["export"])
    _log(index, "embedder loaded")
    stats = embed_corpus.embed_shards(embedder, job["corpus_dir"], job["embed_dir"], strategy,
                                      batch_size=4)
    record["embedded"] = stats.embedded
    if index == 0:
      ids, embeddings = embed_corpus.merge_parts(
          job["embed_dir"], corpus_lib.load_manifest(job["corpus_dir"]),
          embedder.embedding_dim)
      np.savez(os.path.join(job["out_dir"], "merged.npz"), ids=ids, embeddings=embeddings)
  _log(index, "done")


def main(argv):
  """Runs the job of `argv[1]` as the worker TF_CONFIG names; see the module docstring."""
  with open(argv[1]) as f:
    job = json.load(f)
  index = json.loads(os.environ["TF_CONFIG"])["task"]["index"]
  record = {"built": [], "batches": [], "steps": [], "embedded": []}
  status = 0
  try:
    _run(job, index, record)
  except KeyboardInterrupt:
    status = 3
  finally:
    with open(os.path.join(job["out_dir"], f"worker-{index}.json"), "w") as f:
      json.dump(record, f)
    sys.stdout.flush()
    sys.stderr.flush()
  os._exit(status)  # pylint: disable=protected-access


if __name__ == "__main__":
  main(sys.argv)
