r"""Open-QA quality on the shipped SQuAD-open default: EM and recall@5, dense vs BM25 retrieval.

SQuAD-open here = the shipped SQuAD v1.1 dev set: its 2,067 paragraphs are the corpus (blocked
into ≤ 288-wordpiece blocks), its questions are split by article into train (≈80%) and dev.

For each starting point the benchmark fine-tunes the open-QA model (ORQA recipe: trainable query
tower over the frozen index, reader over the top 5 blocks) on the train questions, then evaluates
on dev questions:
  * `dense`: the fine-tuned query tower retrieves (exact MIPS), the reader reads its top 5;
  * `bm25`: the same fine-tuned reader reads the top 5 blocks of a BM25 retriever (rank_bm25,
    Okapi, lower-cased word tokens over title + body; `realm_tf.openqa.bm25`, the evaluate
    CLI's `--retriever=bm25`); span scores without a retrieval logit.
Starting points: `random` (tiny towers from scratch: an index from an untrained retriever) and,
with --realm_dir/--realm_index_dir, `realm` (the REALM pre-training run's index, query tower and
knowledge-augmented encoder → reader) — before/after REALM pre-training.

  python -m benchmarks.openqa_quality                                    # random init only
  python -m benchmarks.openqa_quality --realm_dir=runs/default/realm \
      --realm_index_dir=runs/default/index --corpus_dir=runs/default/corpus

Writes benchmarks/results/openqa_quality.json. Not part of CI; numbers from tiny CPU models are
tiny and reported as measured.
"""
import os
import time

from absl import app, flags, logging

flags.DEFINE_string("work_dir", "runs/openqa_bench", "Where corpus, index and models go.")
flags.DEFINE_string("corpus_dir", None, "Block corpus of the SQuAD dev paragraphs (built if "
                    "absent, in <work_dir>/corpus).")
flags.DEFINE_string("realm_dir", None, "REALM pre-training model_dir (the 'after' starting point).")
flags.DEFINE_string("realm_index_dir", None, "Index bundles of that REALM run.")
flags.DEFINE_string("preset", "tiny", "Encoder preset of the random-init towers.")
flags.DEFINE_integer("steps", 60, "Fine-tuning steps per starting point.")
flags.DEFINE_integer("batch_size", 8, "Fine-tuning batch size.")
flags.DEFINE_float("learning_rate", 1e-4, "Fine-tuning peak learning rate.")
flags.DEFINE_integer("retriever_beam_size", 256, "Retriever beam (capped at the corpus size; "
                     "ORQA uses 5000, too slow for a CPU benchmark).")
flags.DEFINE_enum("reader_positives", "beam", ["beam", "gold", "none"], "What the reader reads "
                  "when none of its blocks bears an answer (none = ORQA's rule).")
flags.DEFINE_integer("eval_questions", 200, "Dev questions evaluated.")
flags.DEFINE_integer("seed", 0, "Seed.")
FLAGS = flags.FLAGS


def ensure_corpus(corpus_dir):
  from realm_tf.data import build_corpus  # pylint: disable=g-import-not-at-top
  from realm_tf.data import corpus as corpus_lib  # pylint: disable=g-import-not-at-top
  from realm_tf.data.documents import default_corpus_path  # pylint: disable=g-import-not-at-top
  if os.path.exists(os.path.join(corpus_dir, corpus_lib.MANIFEST)):
    return corpus_lib.load_manifest(corpus_dir)
  logging.info("Building the SQuAD-open block corpus in %s.", corpus_dir)
  return build_corpus.build_corpus(build_corpus.BuildCorpusConfig(
      inputs=[default_corpus_path()], output_dir=corpus_dir, fmt="squad", num_shards=2))["manifest"]


def ensure_random_index(work_dir, corpus_dir, preset, seed):
  """An index built by an untrained retriever of `preset` (exact search)."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  import tf_keras  # pylint: disable=g-import-not-at-top
  from realm_tf.data.block_store import BlockStore  # pylint: disable=g-import-not-at-top
  from realm_tf.data import corpus as corpus_lib  # pylint: disable=g-import-not-at-top
  from realm_tf.modeling.retriever import Retriever, RetrieverConfig  # pylint: disable=g-import-not-at-top
  from realm_tf.retrieval import bundle as bundle_lib  # pylint: disable=g-import-not-at-top
  from realm_tf.retrieval import embedder_export  # pylint: disable=g-import-not-at-top
  from realm_tf.retrieval.brute_force import BruteForceSearcher  # pylint: disable=g-import-not-at-top
  index_dir = os.path.join(work_dir, f"index_random_{preset}")
  if bundle_lib.latest_version(index_dir) is not None:
    return index_dir
  tf_keras.utils.set_random_seed(seed)
  retriever = Retriever(RetrieverConfig(encoder=preset)).build_towers()
  export = embedder_export.export_embedder(retriever, os.path.join(work_dir, f"retriever_{preset}"),
                                           step=0)
  store = BlockStore([corpus_dir])
  embed = tf.function(lambda d: retriever.embed_documents(d))
  parts = []
  for s in range(0, store.size, 64):
    rows = tf.range(s, min(s + 64, store.size), dtype=tf.int64)
    parts.append(embed(store.documents(rows)).numpy())
  emb = np.concatenate(parts)
  bundle_lib.publish(index_dir, export_dir=export, searcher=BruteForceSearcher(emb),
                     embeddings=emb, block_ids=store.block_ids,
                     manifest={"source_export": export, "step": 0,
                               "corpus_dir": os.path.abspath(corpus_dir),
                               "corpus_fingerprint": corpus_lib.load_manifest(corpus_dir)[
                                   "fingerprint"]})
  return index_dir


def run_variant(name, index_dir, corpus_dir, init_checkpoint, train, dev):
  import tf_keras  # pylint: disable=g-import-not-at-top
  from realm_tf.modeling.reader import ReaderConfig  # pylint: disable=g-import-not-at-top
  from realm_tf.openqa import evaluate as evaluate_lib  # pylint: disable=g-import-not-at-top
  from realm_tf.openqa import finetune  # pylint: disable=g-import-not-at-top
  from realm_tf.openqa.model import OpenQAConfig  # pylint: disable=g-import-not-at-top
  model_dir = os.path.join(FLAGS.work_dir, f"finetune_{name}_{FLAGS.steps}")
  config = finetune.FinetuneConfig(
      model=OpenQAConfig(reader=ReaderConfig(encoder=FLAGS.preset),
                         retriever_beam_size=FLAGS.retriever_beam_size),
      dataset="squad_open", batch_size=FLAGS.batch_size, num_train_steps=FLAGS.steps,
      learning_rate=FLAGS.learning_rate, seed=FLAGS.seed, checkpoint_every=FLAGS.steps,
      log_every=10, reader_positives=FLAGS.reader_positives)
  tf_keras.utils.set_random_seed(FLAGS.seed)
  t0 = time.time()
  train_result = finetune.run_finetune(config, index_dir, corpus_dir, model_dir,
                                       init_checkpoint=init_checkpoint, examples=train)
  train_seconds = time.time() - t0
  model, _, bundle = finetune.load_finetuned(model_dir)
  out = {"index_bundle": bundle.path, "init_checkpoint": init_checkpoint,
         "train_seconds": round(train_seconds, 1),
         "final_train_scalars": {k: v for k, v in train_result.items()
                                 if isinstance(v, float)}}
  t0 = time.time()
  dense = evaluate_lib.evaluate(model, dev, batch_size=8, recall_ks=(1, 5, 20))
  out["dense"] = {k: dense[k] for k in ("exact_match", "recall@1", "recall@5", "recall@20")}
  out["dense"]["eval_seconds"] = round(time.time() - t0, 1)
  t0 = time.time()
  # The evaluate CLI's --retriever=bm25 path: the same fine-tuned reader behind BM25.
  sparse = evaluate_lib.evaluate(model, dev, batch_size=8, recall_ks=(1, 5, 20), retriever="bm25")
  out["bm25"] = {k: sparse[k] for k in ("exact_match", "recall@1", "recall@5", "recall@20")}
  out["bm25"]["eval_seconds"] = round(time.time() - t0, 1)
  return out


def main(argv):
  del argv
  import numpy as np  # pylint: disable=g-import-not-at-top
  from benchmarks.common import write_result  # pylint: disable=g-import-not-at-top
  from realm_tf.openqa import datasets  # pylint: disable=g-import-not-at-top
  t_start = time.time()
  os.makedirs(FLAGS.work_dir, exist_ok=True)
  corpus_dir = FLAGS.corpus_dir or os.path.join(FLAGS.work_dir, "corpus")
  manifest = ensure_corpus(corpus_dir)
  train = datasets.load_squad_open("train")
  dev = datasets.load_squad_open("dev")
  rng = np.random.default_rng(FLAGS.seed)
  dev_eval = [dev[i] for i in sorted(rng.choice(len(dev), min(FLAGS.eval_questions, len(dev)),
                                                replace=False))]
  results = {}
  index_dir = ensure_random_index(FLAGS.work_dir, corpus_dir, FLAGS.preset, FLAGS.seed)
  results["random_init"] = run_variant("random", index_dir, corpus_dir, None, train, dev_eval)
  if FLAGS.realm_dir:
    if not FLAGS.realm_index_dir:
      raise app.UsageError("--realm_dir needs --realm_index_dir (the run's index bundles).")
    results["realm_pretrained"] = run_variant("realm", FLAGS.realm_index_dir, corpus_dir,
                                              FLAGS.realm_dir, train, dev_eval)
  notes = [
      "Tiny CPU models (preset %s) trained for %d steps of batch %d (%d of %d train questions "
      "seen); the reader BERT starts from scratch unless a REALM run is given, so EM is close "
      "to zero by construction — this measures the pipeline, not REALM's quality." % (
          FLAGS.preset, FLAGS.steps, FLAGS.batch_size, min(FLAGS.steps * FLAGS.batch_size,
                                                           len(train)), len(train)),
      "recall@k: an answer string (DPR has_answer rule) occurs in one of the top k blocks.",
      "bm25 uses the same fine-tuned reader; only the retriever differs.",
  ]
  if not FLAGS.realm_dir:
    notes.append("No --realm_dir given: the before/after REALM pre-training comparison was not "
                 "run.")
  write_result("openqa_quality", {
      "settings": {"preset": FLAGS.preset, "steps": FLAGS.steps, "batch_size": FLAGS.batch_size,
                   "learning_rate": FLAGS.learning_rate, "reader_beam_size": 5,
                   "retriever_beam_size": FLAGS.retriever_beam_size,
                   "reader_positives": FLAGS.reader_positives,
                   "train_questions": len(train), "dev_questions": len(dev),
                   "dev_questions_evaluated": len(dev_eval),
                   "corpus_blocks": manifest["num_blocks"], "corpus_dir": corpus_dir},
      "results": results, "notes": notes, "wall_seconds": round(time.time() - t_start, 1)})


if __name__ == "__main__":
  app.run(main)
