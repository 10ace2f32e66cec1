r"""ICT warm start: trains the retriever with in-batch negatives, exports the first embedder + bundle.

REALM starts pre-training from an Inverse-Cloze-Task retriever (ORQA): a sentence is the query,
its block (with the sentence removed 90% of the time) the positive, the other blocks of the batch
the negatives. This job trains that retriever on a block corpus, exports the query/document
embedder the refresh job reads, and publishes index bundle v1 so pre-training can start.

  python -m realm_tf.launch.ict --corpus_dir=runs/default/corpus --model_dir=runs/ict \
      --index_dir=runs/default/index --num_train_steps=1000 --batch_size=64
  python -m realm_tf.launch.ict ... --preset=minilm --init=minilm --pooling=mean
  python -m realm_tf.launch.ict ... --preset=minilm --init=minilm --pooling=mean \
      --num_train_steps=0     # MiniLM as it is, as a retriever (both towers, shared projection)

Re-running a finished job returns its export; a killed job resumes from its last checkpoint.
A missing corpus, a model_dir holding another config, too low a recall, ... end the run with a
one-line `error: ...` naming the file, exit status 2 (realm_tf/launch/cli.py).
"""
from absl import flags

from realm_tf.launch import cli
from realm_tf.launch import distribution_flags

flags.DEFINE_string("corpus_dir", None, "Block corpus (manifest.json + shards).")
flags.DEFINE_string("model_dir", None, "ICT checkpoints and embedder exports.")
flags.DEFINE_string("index_dir", None, "Publish index bundle v1 here from the final export "
                    "(skipped when unset or when a bundle is already live).")
flags.DEFINE_string("preset", "tiny", "Retriever encoder preset: tiny|mini|minilm|base.")
flags.DEFINE_string("init", None, "Initial tower weights (realm_tf.training.warm_start): an HF "
                    "BERT dir, a TF1/converted checkpoint, an export or a training model_dir; "
                    "'minilm' = the installed MiniLM weights. Both towers get the same encoder "
                    "and the same projection (identity when square).")
flags.DEFINE_alias("init_from_hf", "init")
flags.DEFINE_bool("share_towers", True, "One encoder for queries and blocks (ORQA's ICT module "
                  "and REALM's share_embedders).")
flags.DEFINE_enum("pooling", "cls", ["cls", "mean"], "Tower pooling: the [CLS] pooler "
                  "(ORQA/REALM) or the mean of the tokens (sentence-transformers).")
flags.DEFINE_integer("projection_size", None, "Retrieval embedding size (default 128; with "
                     "--init, the encoder's width, which keeps a sentence encoder's geometry).")
flags.DEFINE_float("projection_dropout", 0.1, "Dropout on the projected embedding (ORQA: 0.1).")
flags.DEFINE_integer("query_seq_length", 96, "Query wordpieces.")
flags.DEFINE_integer("doc_seq_length", 288, "Block wordpieces ([CLS] title [SEP] body [SEP]).")
flags.DEFINE_float("heldout_fraction", 0.0, "Share of blocks never used as ICT queries.")
flags.DEFINE_integer("batch_size", 32, "Global batch size (in-batch negatives = batch - 1).")
flags.DEFINE_integer("num_train_steps", 1000, "Training steps.")
flags.DEFINE_float("learning_rate", 1e-4, "Peak learning rate (AdamW, linear warm-up/decay).")
flags.DEFINE_integer("warmup_steps", None, "Warm-up steps (default 10% of the run).")
flags.DEFINE_float("remove_sentence_rate", 0.9, "How often the query sentence is cut from its block.")
flags.DEFINE_integer("checkpoint_every", 200, "Steps between checkpoints.")
flags.DEFINE_integer("seed", 0, "Seed of query-sentence sampling.")
flags.DEFINE_float("min_recall", 0.9, "Refuse to publish an index whose ScaNN recall@10 is lower.")
flags.mark_flags_as_required(["corpus_dir", "model_dir"])
FLAGS = flags.FLAGS


def main(argv):
  del argv
  from realm_tf.modeling.encoder_config import get_encoder_config  # pylint: disable=g-import-not-at-top
  from realm_tf.modeling.retriever import RetrieverConfig  # pylint: disable=g-import-not-at-top
  from realm_tf.training import ict_experiment  # pylint: disable=g-import-not-at-top

  strategy = distribution_flags.strategy_from_flags()
  steps = FLAGS.num_train_steps
  encoder = get_encoder_config(FLAGS.preset)
  size = FLAGS.projection_size or (encoder.hidden_size if FLAGS.init else 128)
  config = ict_experiment.IctConfig(
      retriever=RetrieverConfig(encoder=encoder, projection_size=size,
                                share_towers=FLAGS.share_towers, pooling=FLAGS.pooling,
                                projection_dropout=FLAGS.projection_dropout,
                                query_seq_length=FLAGS.query_seq_length,
                                doc_seq_length=FLAGS.doc_seq_length),
      heldout_fraction=FLAGS.heldout_fraction,
      batch_size=FLAGS.batch_size, num_train_steps=steps, learning_rate=FLAGS.learning_rate,
      warmup_steps=FLAGS.warmup_steps if FLAGS.warmup_steps is not None else steps // 10,
      remove_sentence_rate=FLAGS.remove_sentence_rate, seed=FLAGS.seed,
      checkpoint_every=FLAGS.checkpoint_every)
  _run(config, strategy)


def _run(config, strategy):
  """Trains, exports, and publishes the first bundle."""
  from realm_tf.retrieval.bundle import BundleNotFoundError  # pylint: disable=g-import-not-at-top
  from realm_tf.retrieval.refresh import IndexRefresher, RefreshConfig  # pylint: disable=g-import-not-at-top
  from realm_tf.training import ict_experiment  # pylint: disable=g-import-not-at-top
  result = ict_experiment.run_ict(config, FLAGS.corpus_dir, FLAGS.model_dir, strategy,
                                  init=FLAGS.init)
  print(f"ICT: {config.num_train_steps} steps, loss={float(result.get('loss', 'nan')):.4f}, "
        f"accuracy={float(result.get('accuracy', 'nan')):.4f}")
  print(f"Embedder exported to {result['export']}")
  if not FLAGS.index_dir:
    return
  refresher = IndexRefresher(RefreshConfig(model_dir=FLAGS.model_dir, corpus_dir=FLAGS.corpus_dir,
                                           index_dir=FLAGS.index_dir, min_recall=FLAGS.min_recall),
                             strategy=strategy)
  live = refresher.live_bundle() or refresher.refresh(result["export"])
  if live is None:
    raise BundleNotFoundError(f"No index bundle was published in {FLAGS.index_dir}.")
  print(f"Index bundle live: {live.path}")


if __name__ == "__main__":
  cli.run(main)
