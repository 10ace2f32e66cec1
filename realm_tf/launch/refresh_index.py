r"""Keeps a ScaNN index of the block corpus fresh while the trainer runs (REALM's index refresh).

Examples:
  # Watch the trainer's exports and publish a bundle for each; stop when TRAINING_DONE appears.
  python -m realm_tf.launch.refresh_index --work_dir=runs/mine
  python -m realm_tf.launch.refresh_index --model_dir=/tmp/realm --corpus_dir=/tmp/corpus \
      --index_dir=/tmp/realm/index
  # One refresh, two replicas on logical CPU devices:
  python -m realm_tf.launch.refresh_index ... --once --strategy=mirrored --num_cpu_devices=2
  # Two shard workers: worker 0 declares each refresh round (the export every worker embeds
  # with; finished even when newer exports appear), merges the parts and publishes:
  python -m realm_tf.launch.refresh_index ... --num_shards=2 --shard_index=1 &
  python -m realm_tf.launch.refresh_index ... --num_shards=2 --shard_index=0
  # Add and remove documents without re-embedding the corpus:
  python -m realm_tf.launch.refresh_index ... --add=/tmp/new_blocks --remove=/tmp/gone_ids.txt

--model_dir, --corpus_dir and --index_dir default to <work_dir>/realm, corpus and index.
A bad export or corpus, or too low a recall, ends the run with a one-line `error: ...` naming the
offending file, exit status 2 (realm_tf/utils/command_line.py); no bundle is published then and the
previous one stays live.
"""
import dataclasses

from absl import flags

from realm_tf.utils import command_line

HELP = {
    "work_dir": "The pretrain job's work directory (its realm/, corpus/ and index/).",
    # RefreshConfig
    "model_dir": "Trainer directory holding embedder_exports/ and TRAINING_DONE (default "
                 "<work_dir>/realm).",
    "corpus_dir": "Block corpus (manifest.json + shards; default <work_dir>/corpus).",
    "index_dir": "Where index bundle versions are published (default <work_dir>/index).",
    "num_shards": "Number of independent embedding workers.",
    "shard_index": "This worker (0 declares refresh rounds, merges and publishes).",
    "batch_size": "Blocks per replica per step.",
    "min_recall": "Refuse to publish when ScaNN recall@10 vs exact is lower.",
    "recall_queries": "Query sample size for the recall check.",
    "keep": "Bundle versions to keep.",
    "grace_seconds": "Superseded bundles survive at least this long.",
    "poll_min_seconds": "Shortest sleep between polls for new exports.",
    "poll_max_seconds": "Longest sleep (back-off doubles up to this).",
    "part_wait_timeout": "Worker 0: seconds to wait for other workers.",
    # ScannConfig, by flag name (SCANN_FLAGS)
    "scann_mode": "ScaNN configuration; auto scales it to the corpus size.",
    "scann_brute_force_below": "auto: brute force below this many rows.",
    "scann_tree_above": "auto: tree + AH from this many rows on.",
    "scann_num_leaves": "Tree leaves (default ~sqrt(n)).",
    "scann_leaves_to_search": "Leaves searched per query.",
    "scann_training_sample_size": "Points used to train tree and AH.",
    "scann_dimensions_per_block": "AH dimensions per block.",
    "scann_aq_threshold": "Anisotropic quantization threshold.",
    "scann_reorder": "Candidates re-scored exactly (default 100).",
    # RefreshJobConfig
    "once": "Index the newest export once (if needed) and exit.",
    "add": "Block-corpus directory of documents to add (repeatable).",
    "remove": "File of block ids to remove, one per line.",
}
# RefreshConfig's paths: {flag: work-dir layout stage}, each defaulting to its work-dir folder.
_DIRS = {"model_dir": "realm", "corpus_dir": "corpus", "index_dir": "index"}
# RefreshConfig fields with no flag: the nested ScannConfig (its --scann_* flags, SCANN_FLAGS)
# and a setting the command line does not expose.
_REFRESH_SKIP = ("scann", "exact_tile_size")
_JOB_SKIP = ("refresh",)  # RefreshJobConfig.refresh: the RefreshConfig of the flags above
# ScannConfig field → its flag; the fields not named here are not command-line settings.
SCANN_FLAGS = {
    "mode": "scann_mode",
    "brute_force_below": "scann_brute_force_below",
    "tree_above": "scann_tree_above",
    "num_leaves": "scann_num_leaves",
    "num_leaves_to_search": "scann_leaves_to_search",
    "training_sample_size": "scann_training_sample_size",
    "dimensions_per_block": "scann_dimensions_per_block",
    "anisotropic_quantization_threshold": "scann_aq_threshold",
    "reordering_num_neighbors": "scann_reorder",
}


def _scann_skip():
  """ScannConfig fields without a flag: those SCANN_FLAGS does not name."""
  from realm_tf.retrieval.scann_searcher import ScannConfig  # pylint: disable=g-import-not-at-top
  return tuple(f.name for f in dataclasses.fields(ScannConfig) if f.name not in SCANN_FLAGS)


def define_flags(flag_values=flags.FLAGS):
  """Defines the refresh job's flags: one per RefreshConfig and (as --scann_*) ScannConfig
  setting, one per RefreshJobConfig field (--once and the document updates), and the
  distribution flags without --mixed_precision / --jit_compile (the job runs the exported
  embedder as it was saved: it could not honour them).

  Called from `__main__` only (and by tests on a fresh FlagValues), so importing this module
  defines no flag.
  """
  from realm_tf.io import work_dir  # pylint: disable=g-import-not-at-top
  from realm_tf.launch import config_flags  # pylint: disable=g-import-not-at-top
  from realm_tf.launch import distribution_flags  # pylint: disable=g-import-not-at-top
  from realm_tf.retrieval import refresh  # pylint: disable=g-import-not-at-top
  from realm_tf.retrieval import scann_searcher  # pylint: disable=g-import-not-at-top
  from realm_tf.stages import refresh_job  # pylint: disable=g-import-not-at-top
  fv = flag_values
  flags.DEFINE_string("work_dir", work_dir.DEFAULT_ROOT, HELP["work_dir"], flag_values=fv)
  config_flags.define_config_flags(refresh.RefreshConfig, HELP, skip=_REFRESH_SKIP,
                                   defaults={name: None for name in _DIRS}, flag_values=fv)
  config_flags.define_config_flags(scann_searcher.ScannConfig, HELP, skip=_scann_skip(),
                                   names=SCANN_FLAGS, choices={"mode": scann_searcher.MODES},
                                   flag_values=fv)
  config_flags.define_config_flags(refresh_job.RefreshJobConfig, HELP, skip=_JOB_SKIP,
                                   multi=("add",), flag_values=fv)
  distribution_flags.define_flags(fv, precision=False)
  from realm_tf.launch import validators  # pylint: disable=g-import-not-at-top
  validators.register_ranges(fv)
  for small, large, strict in (("shard_index", "num_shards", True),
                               ("poll_min_seconds", "poll_max_seconds", False),
                               ("scann_leaves_to_search", "scann_num_leaves", False),
                               ("scann_brute_force_below", "scann_tree_above", False)):
    validators.register_multi(fv, [small, large], validators.at_most(small, large, strict))


def config_from_flags(flag_values=flags.FLAGS):
  """The RefreshConfig (with its ScannConfig) the parsed flags describe; the folders not given
  are the work dir's."""
  from realm_tf.io import work_dir  # pylint: disable=g-import-not-at-top
  from realm_tf.launch import config_flags  # pylint: disable=g-import-not-at-top
  from realm_tf.retrieval import refresh  # pylint: disable=g-import-not-at-top
  from realm_tf.retrieval.scann_searcher import ScannConfig  # pylint: disable=g-import-not-at-top
  fv = flag_values
  scann = config_flags.config_from_flags(ScannConfig, fv, skip=_scann_skip(), names=SCANN_FLAGS)
  dirs = work_dir.derive(fv.work_dir, {name: (stage, fv[name].value)
                                       for name, stage in _DIRS.items()})
  return config_flags.config_from_flags(refresh.RefreshConfig, fv, skip=_REFRESH_SKIP,
                                        scann=scann, **dirs)


def job_from_flags(flag_values=flags.FLAGS):
  """The RefreshJobConfig the parsed flags describe: `config_from_flags` and what to do."""
  from realm_tf.launch import config_flags  # pylint: disable=g-import-not-at-top
  from realm_tf.stages import refresh_job  # pylint: disable=g-import-not-at-top
  return config_flags.config_from_flags(refresh_job.RefreshJobConfig, flag_values,
                                        refresh=config_from_flags(flag_values))


def main(argv):
  """Refreshes the index as the flags say: once, a document update, or until training ends."""
  del argv
  # The strategy first: splitting the CPU into logical devices must precede TF's initialisation.
  from realm_tf.launch import distribution_flags  # pylint: disable=g-import-not-at-top
  strategy = distribution_flags.strategy_from_flags()
  from realm_tf.stages import refresh_job  # pylint: disable=g-import-not-at-top
  result = refresh_job.run(job_from_flags(), strategy)
  if result["mode"] == "update":
    print(f"Published {result['bundle']}" if result["bundle"] else
          "Embedded this worker's shards.")
  elif result["mode"] == "once":
    print(f"Published {result['bundle']}" if result["bundle"] else "Nothing to publish.")
  else:
    stale = result["staleness_steps"]
    print(f"Training done; published {result['published']} bundle(s)."
          + (f" Staleness as they went live: {min(stale)}-{max(stale)} steps." if stale else ""))


if __name__ == "__main__":
  define_flags()
  command_line.run(main)
