r"""Exports a fine-tuned open-QA model as TF Serving SavedModels (`<base>/<model>/<version>/`).

Examples:
  # Everything, both open-QA variants, next free version:
  python -m realm_tf.launch.export --model_dir=/tmp/realm/finetune \
      --export_base=/tmp/realm/serving --variant=both
  # A model_dir fine-tuned on another index version, served with the newest bundle:
  python -m realm_tf.launch.export --model_dir=... --index_dir=/tmp/realm/index \
      --corpus_dir=/tmp/realm/corpus --export_base=... --version=7
  # Warm-start weights instead of a fine-tuning run (a REALM pre-training model_dir, an embedder
  # export or a converted checkpoint), only the stock open-QA model and the searcher:
  python -m realm_tf.launch.export --init_checkpoint=/tmp/realm/pretrain \
      --index_dir=... --corpus_dir=... --export_base=... --components=openqa,searcher

Models written (see docs/SERVING_SIGNATURES.md): realm_openqa (stock ops; servable by an
unmodified tensorflow_model_server), realm_openqa_scann (ScaNN ops; `python -m serving.server`),
realm_query_embedder, realm_doc_embedder, realm_searcher[_scann], realm_reader. Each version is
published by an atomic rename, so a running server picks it up whole. Prints a JSON summary of
the exported paths; bad input ends the run with a one-line `error: ...` naming the cause, exit
status 2 (realm_tf/launch/cli.py).
"""
import json
import os

from absl import app
from absl import flags

from realm_tf.launch import cli

FLAGS = flags.FLAGS
flags.DEFINE_string("model_dir", None, "Fine-tuning model_dir (config.json + checkpoints/).")
flags.DEFINE_string("init_checkpoint", None,
                    "Instead of --model_dir: weights for the query tower / reader (a fine-tuning "
                    "model_dir, REALM pre-training model_dir, embedder export or converted "
                    "checkpoint); the query tower's shape follows the index bundle.")
flags.DEFINE_string("reader_init_checkpoint", None,
                    "With --init_checkpoint: where the reader encoder comes from, if elsewhere.")
flags.DEFINE_string("index_dir", None,
                    "Index bundle directory (newest version used). Default: the bundle the "
                    "model_dir was fine-tuned with.")
flags.DEFINE_string("corpus_dir", None,
                    "Block corpus of the index. Default: the one recorded in the model_dir.")
flags.DEFINE_string("export_base", None, "TF Serving base directory for <model>/<version>/.")
flags.DEFINE_integer("version", None, "Version number (default: one more than the newest "
                     "version of any exported model).")
flags.DEFINE_enum("variant", "both", ["stock", "scann", "both"],
                  "MIPS variant of realm_openqa / realm_searcher.")
flags.DEFINE_list("components", ["all"], "Which models: openqa, query_embedder, doc_embedder, "
                  "searcher, reader, or all.")
flags.DEFINE_integer("num_answers", 5, "Answers returned per question (A).")
flags.DEFINE_integer("max_candidates", 20, "Best spans considered before dropping repeated "
                     "answer strings (>= num_answers).")
flags.DEFINE_integer("reader_beam_size", None, "Blocks read per question (default: the model's).")
flags.DEFINE_integer("searcher_k", 10, "Neighbours returned by realm_searcher's serving_default.")
flags.DEFINE_enum("scann_mode", "auto", ["auto", "brute_force", "ah", "tree_ah"],
                  "ScaNN configuration of the ScaNN variants (auto: by corpus size).")
flags.DEFINE_multi_string("warmup_question", None, "Questions for the warm-up requests "
                          "(repeatable; default: a few generic questions).")

ALL = ("openqa", "query_embedder", "doc_embedder", "searcher", "reader")


def parse_components(values):
  """--components → a tuple from ALL (order kept); ValueError naming an unknown entry."""
  names = [v.strip() for v in values if v.strip()]
  if not names or "all" in names:
    return ALL
  unknown = [n for n in names if n not in ALL]
  if unknown:
    raise ValueError(f"--components: unknown {unknown}; choose from {list(ALL)} or all.")
  return tuple(dict.fromkeys(names))


def load_model(model_dir=None, init_checkpoint=None, reader_init_checkpoint=None, index_dir=None,
               corpus_dir=None, reader_beam_size=None):
  """Rebuilds the open-QA model to export; returns (model, tokenizer, bundle).

  From a fine-tuning `model_dir` (its config and newest checkpoint), or from `init_checkpoint`
  warm-start weights (then `index_dir` and `corpus_dir` are required).
  """
  import dataclasses  # pylint: disable=g-import-not-at-top
  from realm_tf.openqa import finetune  # pylint: disable=g-import-not-at-top
  from realm_tf.openqa.model import OpenQAConfig  # pylint: disable=g-import-not-at-top
  from realm_tf.modeling.reader import ReaderConfig  # pylint: disable=g-import-not-at-top
  from realm_tf.text import RealmTokenizer  # pylint: disable=g-import-not-at-top
  if bool(model_dir) == bool(init_checkpoint):
    raise ValueError("Give exactly one of --model_dir and --init_checkpoint.")
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  if model_dir and not tf.io.gfile.exists(os.path.join(model_dir, "config.json")):
    raise FileNotFoundError(f"--model_dir {model_dir} has no config.json (not a fine-tuning "
                            "model_dir).")
  tokenizer = RealmTokenizer()
  if model_dir:
    model, _, bundle = finetune.load_finetuned(model_dir, index_dir, corpus_dir)
  else:
    if not index_dir or not corpus_dir:
      raise ValueError("--init_checkpoint needs --index_dir and --corpus_dir.")
    from realm_tf.training import warm_start  # pylint: disable=g-import-not-at-top
    if warm_start.source_kind(init_checkpoint) == "trainer" and \
        warm_start.trainer_run_kind(init_checkpoint) == "openqa":
      model, _, bundle = finetune.load_finetuned(init_checkpoint, index_dir, corpus_dir)
    else:
      bundle, index = finetune.load_index(index_dir, corpus_dir, tokenizer)
      reader_enc = (warm_start.encoder_config_of(reader_init_checkpoint) or
                    warm_start.encoder_config_of(init_checkpoint))
      reader = ReaderConfig(encoder=reader_enc) if reader_enc is not None else ReaderConfig()
      config = OpenQAConfig(retriever=finetune.index_retriever_config(bundle), reader=reader)
      model = finetune.build_model(config, index, tokenizer)
      warm_start.init_openqa(model, init_checkpoint, reader_init_checkpoint)
  if reader_beam_size:
    model.config = dataclasses.replace(model.config, reader_beam_size=int(reader_beam_size))
  return model, tokenizer, bundle


def run_export(model, tokenizer, bundle, export_base, version=None, variant="both",
               components=ALL, num_answers=5, max_candidates=20, searcher_k=10,
               scann_mode="auto", warmup_questions=None):
  """Exports the chosen models; returns {model name: path} (all with the same version)."""
  from realm_tf.export import components as comp  # pylint: disable=g-import-not-at-top
  from realm_tf.export import openqa  # pylint: disable=g-import-not-at-top
  from realm_tf.retrieval.scann_searcher import ScannConfig  # pylint: disable=g-import-not-at-top
  variants = ("stock", "scann") if variant == "both" else (variant,)
  if max_candidates < num_answers:
    raise ValueError(f"--max_candidates={max_candidates} must be >= --num_answers={num_answers}.")
  names = []
  for c in components:
    if c == "openqa":
      names += [comp.variant_model_name(openqa.OPENQA, v) for v in variants]
    elif c == "searcher":
      names += [comp.variant_model_name(comp.SEARCHER, v) for v in variants]
    else:
      names.append({"query_embedder": comp.QUERY_EMBEDDER, "doc_embedder": comp.DOC_EMBEDDER,
                    "reader": comp.READER}[c])
  if version is None:
    version = comp.next_version(export_base, names)
  for name in names:
    path = os.path.join(export_base, name, str(version))
    if os.path.exists(path):
      raise FileExistsError(f"{path} already exists; choose another --version.")
  scann_config = ScannConfig(mode=scann_mode)
  table = None
  if "openqa" in components or "reader" in components:
    table = comp.BlockTable.from_index(model.index, tokenizer)
  out = {}
  if "openqa" in components:
    out.update(openqa.export_openqa(model, tokenizer, export_base, version, variants, table=table,
                                    bundle=bundle, num_answers=num_answers,
                                    max_candidates=max_candidates, scann_config=scann_config,
                                    warmup_questions=warmup_questions))
  parts = [c for c in components if c != "openqa"]
  if parts:
    out.update(comp.export_components(model, tokenizer, export_base, version, parts, variants,
                                      bundle=bundle, table=table, searcher_k=searcher_k,
                                      num_answers=num_answers, max_candidates=max_candidates,
                                      scann_config=scann_config,
                                      warmup_questions=warmup_questions))
  return out


def main(argv):
  """Exports the models the flags name and prints their paths (JSON); raises on bad input."""
  del argv
  if not FLAGS.export_base:
    raise app.UsageError("--export_base is required.")
  components = parse_components(FLAGS.components)
  model, tokenizer, bundle = load_model(FLAGS.model_dir, FLAGS.init_checkpoint,
                                        FLAGS.reader_init_checkpoint, FLAGS.index_dir,
                                        FLAGS.corpus_dir, FLAGS.reader_beam_size)
  paths = run_export(model, tokenizer, bundle, FLAGS.export_base, FLAGS.version, FLAGS.variant,
                     components, FLAGS.num_answers, FLAGS.max_candidates, FLAGS.searcher_k,
                     FLAGS.scann_mode, FLAGS.warmup_question)
  print(json.dumps({"export_base": os.path.abspath(FLAGS.export_base), "models": paths},
                   indent=2, sort_keys=True))


def user_errors():
  """Export's bad-input errors beyond cli.USER_ERRORS: its own ValueErrors (flag combinations,
  --components, --max_candidates) and checkpoints whose shapes do not fit the model."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  return (ValueError, tf.errors.InvalidArgumentError)


if __name__ == "__main__":
  cli.run(main, user_errors=user_errors())
