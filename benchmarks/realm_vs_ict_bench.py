r"""The paper's claim in miniature: does REALM pre-training improve the retriever beyond ICT alone?

Same starting point, same number of training steps after it, zero-shot retrieval measured the same
way (recall@5, exact search over the run's final index, no fine-tuning):

  * `init`              — the towers as initialised (no training); the reference point;
  * `ict_warm_start`    — ICT for --warm_start_steps (every REALM run starts here);
  * `ict_only`          — ICT for --warm_start_steps + --steps (the same step budget, ICT alone);
  * `realm_salient`     — warm start, then --steps of REALM with salient-span masking;
  * `realm_random_span` — warm start, then --steps of REALM with random-span masking.

Corpus: the paragraphs of the first --articles articles of the shipped SQuAD v1.1 dev set (so
the benchmark runs in tens of minutes on 2 CPU cores); queries: those articles' SQuAD questions
against their gold paragraph (`squad_question_recall@5`) and held-out salient-masked sentences
against their source block (`masked_sentence_recall@5`).

Default towers: `tiny`, from scratch, mean-pooled. With the [CLS] pooler (the paper's, `--pooling=
cls`) tiny towers from scratch stay at chance for a CPU-sized ICT budget; mean pooling learns
within a few hundred steps. MiniLM-initialised towers (`--preset=minilm --init_from_hf=minilm`) run
≈ 30× slower per step here; all-MiniLM-L6-v2 was also trained on question–passage pairs that
include SQuAD and NQ, so its `init` row would NOT be unsupervised.

  python -m benchmarks.realm_vs_ict_bench                       # ≈ 30 min on 2 CPU cores
  python -m benchmarks.realm_vs_ict_bench --steps=400 --articles=16

Writes benchmarks/results/realm_vs_ict.json.
"""
import os
import shutil
import time
import types

from absl import app, flags, logging

from benchmarks import common

flags.DEFINE_string("work_dir", "runs/realm_vs_ict", "Where corpus, indexes and models go.")
flags.DEFINE_integer("articles", 8, "SQuAD dev articles whose paragraphs form the corpus.")
flags.DEFINE_string("preset", "tiny", "Encoder preset of retriever and reader.")
flags.DEFINE_string("init_from_hf", "", "HF BERT weights for every tower ('' = scratch).")
flags.DEFINE_enum("pooling", "mean", ["cls", "mean"], "Retriever tower pooling.")
flags.DEFINE_integer("warm_start_steps", 150, "ICT warm-start steps shared by the REALM runs.")
flags.DEFINE_integer("steps", 100, "Steps after the warm start, the same for every condition.")
flags.DEFINE_integer("ict_batch_size", 32, "ICT batch size (in-batch negatives).")
flags.DEFINE_integer("batch_size", 4, "REALM batch size (queries).")
flags.DEFINE_integer("num_candidates", 8, "REALM candidates per query (null + retrieved).")
flags.DEFINE_float("learning_rate", 1e-4, "Peak learning rate of ICT and REALM.")
flags.DEFINE_integer("refresh_every_steps", 50, "REALM inline index refresh period.")
flags.DEFINE_integer("eval_queries", 1000, "Queries per recall measurement (each kind).")
flags.DEFINE_list("conditions", ["init", "ict_warm_start", "ict_only", "realm_salient",
                                 "realm_random_span"], "Conditions to run.")
FLAGS = flags.FLAGS


def _job_flags(**overrides):
  """The attribute bag `pretrain_job.run` reads, with this benchmark's settings."""
  base = dict(input=None, preset=FLAGS.preset, retriever_pooling=FLAGS.pooling,
              init_from_hf=FLAGS.init_from_hf or None,
              ict_batch_size=FLAGS.ict_batch_size, ict_steps=FLAGS.warm_start_steps,
              ict_learning_rate=FLAGS.learning_rate, seed=0, min_recall=0.9, eval_queries=8,
              num_train_steps=0, num_candidates=FLAGS.num_candidates, batch_size=FLAGS.batch_size,
              learning_rate=FLAGS.learning_rate, warmup_steps=None, masking="salient",
              refresh="inline", refresh_every_steps=FLAGS.refresh_every_steps,
              export_every_steps=None, checkpoint_every=FLAGS.refresh_every_steps,
              data_service=None, jit_compile=False)
  base.update(overrides)
  return types.SimpleNamespace(**base)


def main(argv):
  del argv
  logging.set_verbosity(logging.INFO)
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from realm_tf.modeling.encoder_config import get_encoder_config  # pylint: disable=g-import-not-at-top
  from realm_tf.modeling.retriever import RetrieverConfig  # pylint: disable=g-import-not-at-top
  from realm_tf.retrieval import bundle as bundle_lib  # pylint: disable=g-import-not-at-top
  from realm_tf.training import ict_experiment, pretrain_job  # pylint: disable=g-import-not-at-top

  t_start = time.time()
  w = FLAGS.work_dir
  os.makedirs(w, exist_ok=True)
  squad = os.path.join(w, "squad-dev-subset.json")
  data_facts = common.squad_subset(squad, FLAGS.articles)
  corpus, annotations = os.path.join(w, "corpus"), os.path.join(w, "annotations")
  manifest = pretrain_job.ensure_corpus([squad], corpus)
  pretrain_job.ensure_annotations(corpus, annotations)
  data_facts["blocks"] = manifest["num_blocks"]
  data_facts["eval_squad_questions"] = min(FLAGS.eval_queries, data_facts["questions"])
  strategy = tf.distribute.get_strategy()

  def measure(index_dir):
    bundle = bundle_lib.latest(index_dir)
    return pretrain_job.measure_recall(bundle, annotations, corpus, FLAGS.eval_queries,
                                       with_squad=True, squad_path=squad)

  def dirs_for(name, ict_dir):
    d = os.path.join(w, name)
    return dict(corpus=corpus, annotations=annotations, ict=ict_dir,
                index=os.path.join(d, "index"), realm=os.path.join(d, "realm"))

  results = {}
  for name in FLAGS.conditions:
    t0 = time.time()
    logging.info("=== condition %s ===", name)
    if name == "init":
      d = dirs_for(name, None)
      with strategy.scope():
        common.index_of_untrained_towers(
            os.path.join(w, name, "model"), corpus, d["index"],
            RetrieverConfig(encoder=get_encoder_config(FLAGS.preset), pooling=FLAGS.pooling),
            ict_experiment.tower_initializer(ict_experiment.hf_initializer(
                FLAGS.init_from_hf or None)), strategy)
      train = {}
    elif name in ("ict_warm_start", "ict_only"):
      steps = FLAGS.warm_start_steps + (FLAGS.steps if name == "ict_only" else 0)
      d = dirs_for(name, os.path.join(w, name, "ict"))
      summary = pretrain_job.run(_job_flags(ict_steps=steps), d, strategy)
      train = {"ict_steps": steps}
    elif name.startswith("realm_"):
      masking = name[len("realm_"):]
      warm = dirs_for("ict_warm_start", os.path.join(w, "ict_warm_start", "ict"))
      if not tf.io.gfile.exists(warm["index"]):
        pretrain_job.run(_job_flags(), warm, strategy)
      d = dirs_for(name, warm["ict"])
      if not tf.io.gfile.exists(d["index"]):
        shutil.copytree(warm["index"], d["index"])  # start from the warm-start bundle
      summary = pretrain_job.run(_job_flags(num_train_steps=FLAGS.steps, masking=masking), d,
                                 strategy)
      train = dict(summary.get("train", {}), ict_steps=FLAGS.warm_start_steps,
                   realm_steps=FLAGS.steps)
    else:
      raise ValueError(f"Unknown condition {name!r}")
    recall = measure(d["index"])
    results[name] = {"recall": recall, "train": train, "seconds": round(time.time() - t0, 1)}
    logging.info("%s: %s", name, recall)

  def delta(a, b, key):
    if a in results and b in results:
      return round(results[a]["recall"][key] - results[b]["recall"][key], 4)
    return None

  comparisons = {}
  for key in ("squad_question_recall@5", "masked_sentence_recall@5"):
    comparisons[key] = {
        "realm_salient_minus_ict_only": delta("realm_salient", "ict_only", key),
        "realm_salient_minus_realm_random_span": delta("realm_salient", "realm_random_span", key),
        "ict_only_minus_init": delta("ict_only", "init", key),
        "realm_salient_minus_ict_warm_start": delta("realm_salient", "ict_warm_start", key)}
  common.write_result("realm_vs_ict", {
      "settings": {k: FLAGS[k].value for k in (
          "articles", "preset", "init_from_hf", "pooling", "warm_start_steps", "steps",
          "ict_batch_size",
          "batch_size", "num_candidates", "learning_rate", "refresh_every_steps", "eval_queries")},
      "data": {k: v for k, v in data_facts.items() if k != "titles"},
      "conditions": results, "comparisons": comparisons,
      "note": ("Zero-shot recall@5, exact search over each run's final index (chance = 5 / "
               "blocks). ICT steps use --ict_batch_size, REALM steps --batch_size queries x "
               "--num_candidates. With MiniLM-initialised towers 'init' is a supervised starting "
               "point (trained on SQuAD/NQ pairs). A difference of a few points is within noise "
               "at this number of queries (see data.eval_squad_questions)."),
      "seconds": round(time.time() - t_start, 1)})


if __name__ == "__main__":
  app.run(main)
