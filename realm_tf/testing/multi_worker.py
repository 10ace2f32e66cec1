"""One worker of a MultiWorkerMirroredStrategy run on local processes (tests/test_multi_worker.py).

    python -m realm_tf.testing.multi_worker <job.json>     (with TF_CONFIG naming this worker)

Trains a micro ICT retriever with the real Trainer on the real ICT input pipeline
(`ict_experiment.ict_examples` over `corpus.positioned_stream`), one input pipeline per worker,
then optionally embeds the corpus with `embed_corpus.embed_shards`. It records what its pipeline
fed, and writes `<out_dir>/worker-<index>.json`:

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


def micro_retriever_config():
  """The micro ICT retriever both the workers and the test's reference export use."""
  from realm_tf.modeling.encoder_config import EncoderConfig  # pylint: disable=g-import-not-at-top
  from realm_tf.modeling.retriever import RetrieverConfig  # pylint: disable=g-import-not-at-top
  enc = EncoderConfig(hidden_size=16, num_layers=1, num_attention_heads=2, intermediate_size=32,
                      dropout_rate=0.0, attention_dropout_rate=0.0)
  return RetrieverConfig(encoder=enc, projection_size=8, query_seq_length=16,
                         doc_seq_length=32, projection_dropout=0.0)


def ict_builder(tokenizer):
  """The ICT example builder of the test's micro retriever."""
  from realm_tf.data import ict as ict_lib  # pylint: disable=g-import-not-at-top
  return ict_lib.ICTExampleBuilder(ict_lib.IctExampleConfig(query_length=16, block_length=32),
                                   tokenizer)


def _run(job, index, record):
  import numpy as np  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  tf.config.threading.set_intra_op_parallelism_threads(1)
  tf.config.threading.set_inter_op_parallelism_threads(2)
  strategy = tf.distribute.MultiWorkerMirroredStrategy()
  from realm_tf.data import corpus as corpus_lib  # pylint: disable=g-import-not-at-top
  from realm_tf.modeling.retriever import Retriever  # pylint: disable=g-import-not-at-top
  from realm_tf.retrieval import embed_corpus, embedder_export  # pylint: disable=g-import-not-at-top
  from realm_tf.stages import tasks  # pylint: disable=g-import-not-at-top
  from realm_tf.stages.ict_experiment import ict_examples  # pylint: disable=g-import-not-at-top
  from realm_tf.text import RealmTokenizer  # pylint: disable=g-import-not-at-top
  from realm_tf.training.optimizer import create_optimizer  # pylint: disable=g-import-not-at-top
  from realm_tf.training.trainer import Trainer  # pylint: disable=g-import-not-at-top

  tf.random.set_seed(job["seed"])
  with strategy.scope():
    retriever = Retriever(micro_retriever_config(), name="retriever").build_towers()
    optimizer = create_optimizer(1e-3, 100, 0)
  trainer = Trainer(retriever, optimizer, tasks.ict_task, strategy, job["model_dir"],
                    job["global_batch"], checkpoint_every=2, log_every=1, name="ict")
  builder = ict_builder(RealmTokenizer())

  def note(block_ids, position):
    record["batches"].append([int(position.numpy().max()), block_ids.numpy().tolist()])
    return np.int64(0)

  def make_dataset(position, shard):
    record["built"].append([position, shard.index, shard.count, shard.batch_size])
    ds = ict_examples(job["corpus_dir"], builder, shard.batch_size, position, job["seed"],
                      job["shuffle_window"], num_shards=shard.count, shard_index=shard.index)

    def tap(batch):
      done = tf.py_function(note, [batch["block_id"], batch["data_position"]], tf.int64)
      return dict(batch, data_position=batch["data_position"] + 0 * done)
    return ds.map(tap)

  def hook(step):
    record["steps"].append([step, trainer.data_position.numpy().tolist()])
    if step == job["kill_at_step"]:
      raise KeyboardInterrupt(f"worker {index} stops after step {step}")
    return False

  trainer.train(make_dataset, job["num_steps"], hooks=[hook])
  if job.get("export"):
    with strategy.scope():
      embedder = embedder_export.load_embedder(job["export"])
    stats = embed_corpus.embed_shards(embedder, job["corpus_dir"], job["embed_dir"], strategy,
                                      batch_size=4)
    record["embedded"] = stats.embedded
    if index == 0:
      ids, embeddings = embed_corpus.merge_parts(
          job["embed_dir"], corpus_lib.load_manifest(job["corpus_dir"]),
          embedder.embedding_dim)
      np.savez(os.path.join(job["out_dir"], "merged.npz"), ids=ids, embeddings=embeddings)


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
