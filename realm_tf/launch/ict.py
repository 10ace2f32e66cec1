r"""ICT warm start: trains the retriever with in-batch negatives, exports the first embedder + bundle.

REALM starts pre-training from an Inverse-Cloze-Task retriever (ORQA): a sentence is the query,
its block (with the sentence removed 90% of the time) the positive, the other blocks of the batch
the negatives. This job trains that retriever on a block corpus, exports the query/document
embedder the refresh job reads, and publishes index bundle v1 so pre-training can start.

  python -m realm_tf.launch.ict --corpus_dir=runs/default/corpus --model_dir=runs/ict \
      --index_dir=runs/default/index --num_train_steps=1000 --batch_size=64
  python -m realm_tf.launch.ict ... --preset=minilm --init_from_hf=minilm --strategy=mirrored

Re-running a finished job returns its export; a killed job resumes from its last checkpoint.
Exit status 1, naming the file, when the corpus is missing or the model_dir holds another config.
"""
import sys

from absl import app, flags, logging

from realm_tf.launch import distribution_flags

flags.DEFINE_string("corpus_dir", None, "Block corpus (manifest.json + shards).")
flags.DEFINE_string("model_dir", None, "ICT checkpoints and embedder exports.")
flags.DEFINE_string("index_dir", None, "Publish index bundle v1 here from the final export "
                    "(skipped when unset or when a bundle is already live).")
flags.DEFINE_string("preset", "tiny", "Retriever encoder preset: tiny|mini|minilm|base.")
flags.DEFINE_string("init_from_hf", None, "HF BERT dir (config.json, model.safetensors) to "
                    "initialise both towers; 'minilm' = the installed MiniLM weights.")
flags.DEFINE_bool("share_towers", False, "One encoder for queries and blocks.")
flags.DEFINE_enum("pooling", "cls", ["cls", "mean"], "Tower pooling: the [CLS] pooler "
                  "(ORQA/REALM) or the mean of the tokens (sentence-transformers).")
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
  from realm_tf.retrieval.refresh import RecallTooLowError  # pylint: disable=g-import-not-at-top
  from realm_tf.training import ict_experiment  # pylint: disable=g-import-not-at-top
  from realm_tf.training.trainer import NonFiniteLossError  # pylint: disable=g-import-not-at-top

  strategy = distribution_flags.strategy_from_flags()
  steps = FLAGS.num_train_steps
  config = ict_experiment.IctConfig(
      retriever=RetrieverConfig(encoder=get_encoder_config(FLAGS.preset),
                                share_towers=FLAGS.share_towers, pooling=FLAGS.pooling),
      batch_size=FLAGS.batch_size, num_train_steps=steps, learning_rate=FLAGS.learning_rate,
      warmup_steps=FLAGS.warmup_steps if FLAGS.warmup_steps is not None else steps // 10,
      remove_sentence_rate=FLAGS.remove_sentence_rate, seed=FLAGS.seed,
      checkpoint_every=FLAGS.checkpoint_every)
  try:
    _run(config, strategy)
  except (ValueError, OSError, RecallTooLowError, NonFiniteLossError) as e:
    logging.error("%s", e)
    print(f"ERROR: {e}", file=sys.stderr)
    sys.exit(1)


def _run(config, strategy):
  """Trains, exports, and publishes the first bundle."""
  from realm_tf.retrieval.refresh import IndexRefresher, RefreshConfig  # pylint: disable=g-import-not-at-top
  from realm_tf.training import ict_experiment  # pylint: disable=g-import-not-at-top
  result = ict_experiment.run_ict(
      config, FLAGS.corpus_dir, FLAGS.model_dir, strategy,
      init_weights=ict_experiment.tower_initializer(
          ict_experiment.hf_initializer(FLAGS.init_from_hf)))
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
    raise ValueError(f"no index bundle was published in {FLAGS.index_dir}")
  print(f"Index bundle live: {live.path}")


if __name__ == "__main__":
  app.run(main)
