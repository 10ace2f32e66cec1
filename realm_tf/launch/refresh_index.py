r"""Keeps a ScaNN index of the block corpus fresh while the trainer runs (REALM's index refresh).

Examples:
  # Watch the trainer's exports and publish a bundle for each; stop when TRAINING_DONE appears.
  python -m realm_tf.launch.refresh_index --model_dir=/tmp/realm --corpus_dir=/tmp/corpus \
      --index_dir=/tmp/realm/index
  # One refresh, two replicas on logical CPU devices:
  python -m realm_tf.launch.refresh_index ... --once --strategy=mirrored --num_cpu_devices=2
  # Two independent workers (worker 0 merges and publishes):
  python -m realm_tf.launch.refresh_index ... --num_shards=2 --shard_index=1 &
  python -m realm_tf.launch.refresh_index ... --num_shards=2 --shard_index=0
  # Add and remove documents without re-embedding the corpus:
  python -m realm_tf.launch.refresh_index ... --add=/tmp/new_blocks --remove=/tmp/gone_ids.txt

A bad export or corpus, or too low a recall, ends the run with a one-line `error: ...` naming the
offending file, exit status 2 (realm_tf/launch/cli.py); no bundle is published then and the
previous one stays live.
"""
from absl import flags

from realm_tf.launch import cli
from realm_tf.launch import distribution_flags  # pylint: disable=unused-import  (--tpu, --strategy, ...)

FLAGS = flags.FLAGS
flags.DEFINE_string("model_dir", None, "Trainer directory holding embedder_exports/ and "
                    "TRAINING_DONE.")
flags.DEFINE_string("corpus_dir", None, "Block corpus (manifest.json + shards).")
flags.DEFINE_string("index_dir", None, "Where index bundle versions are published.")
flags.DEFINE_integer("num_shards", 1, "Number of independent embedding workers.")
flags.DEFINE_integer("shard_index", 0, "This worker (0 merges and publishes).")
flags.DEFINE_integer("batch_size", 32, "Blocks per replica per step.")
flags.DEFINE_bool("once", False, "Index the newest export once (if needed) and exit.")
flags.DEFINE_multi_string("add", [], "Block-corpus directory of documents to add (repeatable).")
flags.DEFINE_string("remove", None, "File of block ids to remove, one per line.")
flags.DEFINE_float("min_recall", 0.9, "Refuse to publish when ScaNN recall@10 vs exact is lower.")
flags.DEFINE_integer("recall_queries", 1000, "Query sample size for the recall check.")
flags.DEFINE_integer("keep", 3, "Bundle versions to keep.")
flags.DEFINE_float("grace_seconds", 120.0, "Superseded bundles survive at least this long.")
flags.DEFINE_float("poll_min_seconds", 5.0, "Shortest sleep between polls for new exports.")
flags.DEFINE_float("poll_max_seconds", 300.0, "Longest sleep (back-off doubles up to this).")
flags.DEFINE_float("part_wait_timeout", None, "Worker 0: seconds to wait for other workers.")
flags.DEFINE_enum("scann_mode", "auto", ["auto", "brute_force", "ah", "tree_ah"],
                  "ScaNN configuration; auto scales it to the corpus size.")
flags.DEFINE_integer("scann_brute_force_below", 20_000, "auto: brute force below this many rows.")
flags.DEFINE_integer("scann_tree_above", 100_000, "auto: tree + AH from this many rows on.")
flags.DEFINE_integer("scann_num_leaves", None, "Tree leaves (default ~sqrt(n)).")
flags.DEFINE_integer("scann_leaves_to_search", None, "Leaves searched per query.")
flags.DEFINE_integer("scann_training_sample_size", None, "Points used to train tree and AH.")
flags.DEFINE_integer("scann_dimensions_per_block", 2, "AH dimensions per block.")
flags.DEFINE_float("scann_aq_threshold", 0.2, "Anisotropic quantization threshold.")
flags.DEFINE_integer("scann_reorder", None, "Candidates re-scored exactly (default 100).")
flags.mark_flags_as_required(["model_dir", "corpus_dir", "index_dir"])


def scann_config_from_flags():
  """ScannConfig from the --scann_* flags."""
  from realm_tf.retrieval.scann_searcher import ScannConfig  # pylint: disable=g-import-not-at-top
  return ScannConfig(
      mode=FLAGS.scann_mode, brute_force_below=FLAGS.scann_brute_force_below,
      tree_above=FLAGS.scann_tree_above, num_leaves=FLAGS.scann_num_leaves,
      num_leaves_to_search=FLAGS.scann_leaves_to_search,
      training_sample_size=FLAGS.scann_training_sample_size,
      dimensions_per_block=FLAGS.scann_dimensions_per_block,
      anisotropic_quantization_threshold=FLAGS.scann_aq_threshold,
      reordering_num_neighbors=FLAGS.scann_reorder)


def main(argv):
  del argv
  # The strategy first: splitting the CPU into logical devices must precede TF's initialisation.
  from realm_tf.training.strategy import get_strategy  # pylint: disable=g-import-not-at-top
  strategy = get_strategy(tpu=FLAGS.tpu, strategy=FLAGS.strategy,
                          num_cpu_devices=FLAGS.num_cpu_devices)
  from realm_tf.retrieval import refresh  # pylint: disable=g-import-not-at-top
  config = refresh.RefreshConfig(
      model_dir=FLAGS.model_dir, corpus_dir=FLAGS.corpus_dir, index_dir=FLAGS.index_dir,
      num_shards=FLAGS.num_shards, shard_index=FLAGS.shard_index, batch_size=FLAGS.batch_size,
      min_recall=FLAGS.min_recall, recall_queries=FLAGS.recall_queries, keep=FLAGS.keep,
      grace_seconds=FLAGS.grace_seconds, poll_min_seconds=FLAGS.poll_min_seconds,
      poll_max_seconds=FLAGS.poll_max_seconds, part_wait_timeout=FLAGS.part_wait_timeout,
      scann=scann_config_from_flags())
  refresher = refresh.IndexRefresher(config, strategy)
  if FLAGS.add or FLAGS.remove:
    bundle = refresher.update_documents(add_dirs=FLAGS.add, remove_file=FLAGS.remove)
    print(f"Published {bundle.path}" if bundle else "Embedded this worker's shards.")
  elif FLAGS.once:
    bundle = refresher.run_once()
    print(f"Published {bundle.path}" if bundle else "Nothing to publish.")
  else:
    count = refresher.run()
    print(f"Training done; published {count} bundle(s).")


if __name__ == "__main__":
  cli.run(main)
