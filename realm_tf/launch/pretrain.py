r"""REALM pre-training — and, with no flags, the project's main job on the embedded corpus.

  python -m realm_tf.launch.pretrain                      # the demo: everything, ~10 min on 2 cores
  python -m realm_tf.launch.pretrain --tpu=my-tpu --preset=base --batch_size=512 \
      --num_train_steps=200000 --refresh=async --work_dir=gs://bucket/realm

Steps, each skipped when its output already exists (so a killed job resumes):
  1. build the block corpus (Beam) from --input (default: the shipped SQuAD v1.1 dev paragraphs);
  2. annotate salient spans (Beam + spaCy NER + dates);
  3. ICT warm start of the retriever, first embedder export, first index bundle;
  4. REALM pre-training with index refresh (inline: in-process; async: the refresh_index job);
  5. zero-shot retrieval recall@5 before (ICT) and after (REALM): masked sentences against their
     source block, and SQuAD-dev questions against their gold paragraphs.
"""
import json
import os
import time

from absl import app, flags, logging

from realm_tf.launch import distribution_flags

flags.DEFINE_string("work_dir", "runs/default", "Root of every output of the job.")
flags.DEFINE_list("input", None, "Document files/globs (default: the shipped SQuAD dev set).")
flags.DEFINE_string("corpus_dir", None, "Block corpus (default <work_dir>/corpus; built if absent).")
flags.DEFINE_string("annotations_dir", None, "Annotations (default <work_dir>/annotations).")
flags.DEFINE_string("index_dir", None, "Index bundles (default <work_dir>/index).")
flags.DEFINE_string("model_dir", None, "REALM checkpoints/exports (default <work_dir>/realm).")
flags.DEFINE_string("ict_dir", None, "ICT warm start dir (default <work_dir>/ict).")
flags.DEFINE_string("preset", "tiny", "Encoder preset for retriever and reader: tiny|mini|minilm|base.")
flags.DEFINE_string("init_from_hf", None, "HF BERT dir (config.json, model.safetensors) to "
                    "initialise every tower; 'minilm' = the installed MiniLM weights.")
flags.DEFINE_enum("retriever_pooling", "mean", ["cls", "mean"], "Retriever tower pooling: the "
                  "[CLS] pooler (ORQA/REALM; paper_tpu.flags) or the mean of the tokens (the "
                  "default: tiny towers trained from scratch on CPU stay at chance with [CLS] "
                  "pooling for the demo's step budget; MiniLM was trained mean-pooled).")
flags.DEFINE_integer("batch_size", 4, "Global batch size (queries).")
flags.DEFINE_integer("num_train_steps", 60, "REALM pre-training steps.")
flags.DEFINE_float("learning_rate", 1e-4, "Peak learning rate (BERT's AdamW; the paper: 3e-5).")
flags.DEFINE_integer("warmup_steps", None, "Warm-up steps (default 10% of the run).")
flags.DEFINE_integer("ict_steps", 120, "ICT warm-start steps (0: skip ICT, random retriever).")
flags.DEFINE_integer("ict_batch_size", 32, "ICT batch size (in-batch negatives).")
flags.DEFINE_float("ict_learning_rate", 1e-4, "ICT peak learning rate.")
flags.DEFINE_enum("masking", "salient", ["salient", "random_span", "random_uniform"],
                  "Masking scheme (the paper's ablations).")
flags.DEFINE_enum("refresh", "inline", ["inline", "async", "none"], "Index refresh mode.")
flags.DEFINE_integer("refresh_every_steps", 30, "Steps between index refreshes.")
flags.DEFINE_integer("export_every_steps", None, "Steps between embedder exports "
                     "(default: refresh_every_steps).")
flags.DEFINE_integer("checkpoint_every", 30, "Steps between checkpoints.")
flags.DEFINE_integer("num_candidates", 8, "Candidates per query: null document + retrieved.")
flags.DEFINE_integer("seed", 0, "Seed of masking and ICT sampling.")
flags.DEFINE_string("data_service", None, "grpc://dispatcher:port of a tf.data service that "
                    "runs masking + query embedding + search (featurizing stays here). Start "
                    "the dispatcher with python -m realm_tf.launch.data_service_worker "
                    "--dispatcher_port=P --worker_addresses=W1:Q,W2:Q and on each worker host "
                    "--dispatcher_address=D:P --worker_port=Q --worker_host=W1 (registers the "
                    "TF.Text/ScaNN ops); workers read the index bundle from --index_dir, so it "
                    "must be on shared storage.")
flags.DEFINE_integer("eval_queries", 300, "Queries per recall@5 measurement.")
flags.DEFINE_float("min_recall", 0.9, "Refuse to publish an index whose ScaNN recall@10 is lower.")
FLAGS = flags.FLAGS


def _dirs():
  w = FLAGS.work_dir
  return dict(corpus=FLAGS.corpus_dir or os.path.join(w, "corpus"),
              annotations=FLAGS.annotations_dir or os.path.join(w, "annotations"),
              index=FLAGS.index_dir or os.path.join(w, "index"),
              ict=FLAGS.ict_dir or os.path.join(w, "ict"),
              realm=FLAGS.model_dir or os.path.join(w, "realm"))


def main(argv):
  del argv
  from realm_tf.data import corpus as corpus_lib  # pylint: disable=g-import-not-at-top
  from realm_tf.training import pretrain_job as main_job  # pylint: disable=g-import-not-at-top

  t0 = time.time()
  dirs = _dirs()
  strategy = distribution_flags.strategy_from_flags()
  summary = main_job.run(FLAGS, dirs, strategy)
  summary["wall_seconds"] = round(time.time() - t0, 1)
  path = os.path.join(FLAGS.work_dir, "summary.json")
  corpus_lib.write_json_atomic(path, summary)
  print(main_job.format_summary(summary))
  print(f"Summary written to {path}")


if __name__ == "__main__":
  app.run(main)
