r"""ICT warm start: trains the retriever with in-batch negatives, exports the first embedder + bundle.

REALM starts pre-training from an Inverse-Cloze-Task retriever (ORQA): a sentence is the query,
its block (with the sentence removed 90% of the time) the positive, the other blocks of the batch
the negatives. This job trains that retriever on a block corpus, exports the query/document
embedder the refresh job reads, and publishes index bundle v1 so pre-training can start.

  python -m realm_tf.launch.ict --work_dir=runs/mine --num_train_steps=1000 --batch_size=64
  python -m realm_tf.launch.ict ... --retriever_preset=minilm --retriever_init=minilm \
      --retriever_pooling=mean
  python -m realm_tf.launch.ict ... --retriever_preset=minilm --retriever_init=minilm \
      --retriever_pooling=mean --num_train_steps=0  # MiniLM as it is, as a retriever

The corpus, the run and the index are <work_dir>/corpus, <work_dir>/ict and <work_dir>/index
unless --corpus_dir, --model_dir or --index_dir say otherwise; the index gets bundle v1 from the
final export unless a bundle is live there already. Blocks are as long as the corpus's (its
manifest); queries as long as the work dir was built with (its settings.json), else 32.
Re-running a finished job returns its export; a killed job resumes from its last checkpoint.
A missing corpus, a --block_length other than the corpus's, a model_dir holding another config,
too low a recall, ... end the run with a one-line `error: ...` naming the file, exit status 2
(realm_tf/utils/command_line.py).
"""
from absl import flags

from realm_tf.utils import command_line

HELP = {
    # IctConfig
    "batch_size": "Global batch size (in-batch negatives = batch - 1).",
    "num_train_steps": "Training steps.",
    "learning_rate": "Peak learning rate (AdamW, linear warm-up/decay).",
    "warmup_steps": "Warm-up steps (default 10% of the run).",
    "remove_sentence_rate": "How often the query sentence is cut from its block.",
    "seed": "Seed of query-sentence sampling, model initialisation and dropout.",
    "heldout_fraction": "Share of blocks never used as ICT queries.",
    "checkpoint_every": "Steps between checkpoints.",
    # RetrieverConfig
    "retriever_preset": "Retriever encoder preset.",
    "projection_size": "Retrieval embedding size (default 128; with --retriever_init, the "
                       "encoder's width, which keeps a sentence encoder's geometry).",
    "share_towers": "One encoder for queries and blocks (ORQA's ICT module and REALM's "
                    "share_embedders).",
    "retriever_pooling": "Tower pooling: the [CLS] pooler (ORQA/REALM) or the mean of the tokens "
                         "(sentence-transformers).",
    "projection_dropout": "Dropout on the projected embedding (ORQA: 0.1).",
    "query_length": "Query wordpieces (default: the work dir's, else 32).",
    "block_length": "Block wordpieces [CLS] title [SEP] body [SEP] (default: the corpus's; "
                    "another value is refused).",
    # IctJobConfig
    "work_dir": "Work directory: the corpus, the run and the index default to its corpus/, ict/ "
                "and index/.",
    "corpus_dir": "Block corpus (manifest.json + shards; default <work_dir>/corpus).",
    "model_dir": "ICT checkpoints and embedder exports (default <work_dir>/ict).",
    "index_dir": "Publish index bundle v1 here from the final export, unless a bundle is live "
                 "already (default <work_dir>/index).",
    "retriever_init": "Initial tower weights (realm_tf.training.warm_start): an HF BERT dir, a "
                      "TF1/converted checkpoint, an export or a training model_dir; 'minilm' = "
                      "the installed MiniLM weights. Both towers get the same encoder and the "
                      "same projection (identity when square).",
    "min_recall": "Refuse to publish an index whose ScaNN recall@10 is lower.",
}
# Config fields with no flag: the nested configs (their own flags) and settings the command line
# does not expose.
_ICT_SKIP = ("retriever", "shuffle_window", "log_every")
_RETRIEVER_SKIP = ("projection_layer_norm", "projection_scale_init")
_JOB_SKIP = ("ict", "jit_compile", "lock_dir")  # jit_compile: a distribution flag
# Flags named as the main job's (python -m realm_tf.launch.pretrain): the retriever's under a
# retriever_ prefix (RetrieverConfig.encoder is given as a preset name), the lengths as lengths.
_RETRIEVER_NAMES = {"encoder": "retriever_preset", "pooling": "retriever_pooling",
                    "query_seq_length": "query_length", "doc_seq_length": "block_length"}
_JOB_NAMES = {"init": "retriever_init"}
# Flag defaults that differ from the fields': None = derived in `config_from_flags` (10% of the
# run; the encoder's width with --retriever_init, else 128; the lengths from the work dir); ICT
# shares its towers unless told otherwise.
_ICT_DEFAULTS = {"warmup_steps": None}
_RETRIEVER_DEFAULTS = {"projection_size": None, "share_towers": True, "query_seq_length": None,
                       "doc_seq_length": None}
# Flags renamed: {old name: new name}; the old names still work and print a deprecation notice.
RENAMED = {"preset": "retriever_preset", "pooling": "retriever_pooling",
           "init": "retriever_init", "init_from_hf": "retriever_init",
           "query_seq_length": "query_length", "doc_seq_length": "block_length"}
# The path flags that default to the work dir's folders: {flag: layout stage}.
_PATHS = {"corpus_dir": "corpus", "model_dir": "ict", "index_dir": "index"}


def define_flags(flag_values=flags.FLAGS):
  """Defines the ICT flags: one per IctConfig / RetrieverConfig setting, one per IctJobConfig
  field (the run's inputs and outputs, the warm start), and the distribution flags.

  Called from `__main__` only (and by tests on a fresh FlagValues), so importing this module
  defines no flag.
  """
  from realm_tf.io import work_dir  # pylint: disable=g-import-not-at-top
  from realm_tf.launch import config_flags  # pylint: disable=g-import-not-at-top
  from realm_tf.launch import distribution_flags  # pylint: disable=g-import-not-at-top
  from realm_tf.launch import validators  # pylint: disable=g-import-not-at-top
  from realm_tf.modeling import encoder_config  # pylint: disable=g-import-not-at-top
  from realm_tf.modeling import retriever  # pylint: disable=g-import-not-at-top
  from realm_tf.stages import ict_experiment  # pylint: disable=g-import-not-at-top
  fv = flag_values
  config_flags.define_config_flags(ict_experiment.IctConfig, HELP, skip=_ICT_SKIP,
                                   defaults=_ICT_DEFAULTS, flag_values=fv)
  config_flags.define_config_flags(
      retriever.RetrieverConfig, HELP, skip=_RETRIEVER_SKIP, names=_RETRIEVER_NAMES,
      defaults=_RETRIEVER_DEFAULTS, flag_values=fv,
      choices={"pooling": retriever.POOLINGS, "encoder": sorted(encoder_config.PRESETS)})
  flags.DEFINE_string("work_dir", work_dir.DEFAULT_ROOT, HELP["work_dir"], flag_values=fv)
  config_flags.define_config_flags(ict_experiment.IctJobConfig, HELP, skip=_JOB_SKIP,
                                   names=_JOB_NAMES, defaults={name: None for name in _PATHS},
                                   flag_values=fv)
  distribution_flags.define_flags(fv, batch_flags=("batch_size",))
  config_flags.define_deprecated_aliases(RENAMED, fv)
  validators.register(fv, retriever_init=validators.warm_start("--retriever_init"))
  validators.register_ranges(fv)
  for length in ("query_length", "block_length"):  # each fits the retriever's positions
    validators.register_fits_encoder(fv, [length], "retriever_preset", "retriever_init")


def paths_from_flags(flag_values=flags.FLAGS):
  """{corpus_dir, model_dir, index_dir}: each flag's value, else its <work_dir> folder."""
  from realm_tf.io import work_dir  # pylint: disable=g-import-not-at-top
  return work_dir.derive(flag_values.work_dir,
                         {name: (stage, flag_values[name].value) for name, stage in _PATHS.items()})


def config_from_flags(flag_values=flags.FLAGS):
  """The IctConfig (with its RetrieverConfig) the parsed flags describe; the block length is the
  corpus's (WorkDirMismatchError for another --block_length), the query length the work dir's."""
  from realm_tf.io import work_dir  # pylint: disable=g-import-not-at-top
  from realm_tf.launch import config_flags  # pylint: disable=g-import-not-at-top
  from realm_tf.modeling.encoder_config import get_encoder_config  # pylint: disable=g-import-not-at-top
  from realm_tf.modeling.retriever import RetrieverConfig  # pylint: disable=g-import-not-at-top
  from realm_tf.stages import ict_experiment  # pylint: disable=g-import-not-at-top
  fv = flag_values
  encoder = get_encoder_config(fv.retriever_preset)
  recorded = work_dir.recorded_settings(work_dir.WorkDir(fv.work_dir))
  block_length = work_dir.block_length_of(paths_from_flags(fv)["corpus_dir"], fv.block_length)
  retriever = config_flags.config_from_flags(
      RetrieverConfig, fv, skip=_RETRIEVER_SKIP, names=_RETRIEVER_NAMES, encoder=encoder,
      projection_size=fv.projection_size or (encoder.hidden_size if fv.retriever_init else 128),
      doc_seq_length=block_length or recorded.get("block_length") or
      work_dir.DEFAULT_BLOCK_LENGTH,
      query_seq_length=fv.query_length or recorded.get("query_length") or
      work_dir.DEFAULT_QUERY_LENGTH)
  steps = fv.num_train_steps
  return config_flags.config_from_flags(
      ict_experiment.IctConfig, fv, skip=_ICT_SKIP, retriever=retriever,
      warmup_steps=fv.warmup_steps if fv.warmup_steps is not None else steps // 10)


def job_from_flags(flag_values=flags.FLAGS):
  """The IctJobConfig the parsed flags describe: `config_from_flags` and where to run it. The
  run holds the work dir's writer lock (`pretrain`'s), or the model dir's when --model_dir alone
  names where it goes."""
  from realm_tf.launch import config_flags  # pylint: disable=g-import-not-at-top
  from realm_tf.stages import ict_experiment  # pylint: disable=g-import-not-at-top
  paths = paths_from_flags(flag_values)
  return config_flags.config_from_flags(
      ict_experiment.IctJobConfig, flag_values, names=_JOB_NAMES,
      ict=config_from_flags(flag_values), jit_compile=flag_values.jit_compile,
      lock_dir=config_flags.lock_dir(flag_values, "model_dir", paths["model_dir"]), **paths)


def main(argv):
  """Trains the ICT retriever the flags describe, exports it, publishes the first bundle."""
  del argv
  from realm_tf.launch import distribution_flags  # pylint: disable=g-import-not-at-top
  strategy = distribution_flags.strategy_from_flags(batch_flags=("batch_size",))
  from realm_tf.stages import ict_experiment  # pylint: disable=g-import-not-at-top
  job = job_from_flags()
  config = job.ict
  result = ict_experiment.run(job, strategy)
  print(f"ICT: {config.num_train_steps} steps, loss={float(result.get('loss', 'nan')):.4f}, "
        f"accuracy={float(result.get('accuracy', 'nan')):.4f}")
  print(f"Embedder exported to {result['export']}")
  if "bundle" in result:
    print(f"Index bundle live: {result['bundle']}")


if __name__ == "__main__":
  define_flags()
  command_line.run(main)
