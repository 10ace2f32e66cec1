r"""The evaluator of the local launcher: measures zero-shot recall@5 of every new index bundle.

  python -m realm_tf.launch.watch_recall --work_dir=runs/local
  python -m realm_tf.launch.watch_recall --work_dir=runs/local --wait_pid=12345  # the refresher

Polls `<index_dir>` with back-off, evaluates each new bundle once (SQuAD-open dev questions
against their gold paragraphs when the corpus is the default one; and own-block recall of masked
sentences, ICT's task, which is not REALM's progress: the trainer itself logs the held-out
retrieval utility at every bundle it switches to),
appends a line to `<work_dir>/recall.jsonl`, and writes TensorBoard scalars. Bundles already
recorded in `recall.jsonl` are not measured again, so a restarted evaluator resumes.

It exits (status 0) once the trainer's `<model_dir>/TRAINING_DONE` exists and either
  * the newest bundle was built from the trainer's final embedder export (and is evaluated), or
  * the process `--wait_pid` (the index-refresh job) has exited, so no bundle can follow, or
  * `--final_wait_seconds` have passed since TRAINING_DONE appeared without the final bundle.
"""
import json
import os
import time

from absl import flags, logging

from realm_tf.evaluation.recall_log import (RECALL_LOG, bundle_key, is_final_bundle, load_seen,
                                            norm_path, pid_alive)
from realm_tf.launch import cli

flags.DEFINE_string("work_dir", "runs/local", "The pretrain job's work directory.")
flags.DEFINE_string("model_dir", None, "Trainer directory (default <work_dir>/realm).")
flags.DEFINE_string("index_dir", None, "Index bundles (default <work_dir>/index).")
flags.DEFINE_string("corpus_dir", None, "Block corpus (default <work_dir>/corpus).")
flags.DEFINE_string("annotations_dir", None, "Annotations (default <work_dir>/annotations).")
flags.DEFINE_integer("eval_queries", 300, "Queries per measurement.")
flags.DEFINE_bool("squad", True, "Also measure SQuAD-question recall (default corpus only).")
flags.DEFINE_float("min_poll_seconds", 1.0, "Shortest sleep between polls.")
flags.DEFINE_float("max_poll_seconds", 60.0, "Longest sleep between polls.")
flags.DEFINE_integer("wait_pid", None, "Process id of the index-refresh job: once training is "
                     "done and it has exited, no new bundle can appear and the evaluator stops.")
flags.DEFINE_float("final_wait_seconds", 1800.0, "After TRAINING_DONE, stop waiting for the "
                   "bundle of the final export after this long.")
FLAGS = flags.FLAGS

def main(argv):
  del argv
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from realm_tf.retrieval import bundle as bundle_lib  # pylint: disable=g-import-not-at-top
  from realm_tf.retrieval import embedder_export  # pylint: disable=g-import-not-at-top
  from realm_tf.evaluation.recall import measure_bundle_recall  # pylint: disable=g-import-not-at-top

  w = FLAGS.work_dir
  model_dir = FLAGS.model_dir or os.path.join(w, "realm")
  index_dir = FLAGS.index_dir or os.path.join(w, "index")
  corpus_dir = FLAGS.corpus_dir or os.path.join(w, "corpus")
  annotations_dir = FLAGS.annotations_dir or os.path.join(w, "annotations")
  log_path = os.path.join(w, RECALL_LOG)
  exports_dir = norm_path(embedder_export.exports_dir(model_dir))
  writer = tf.summary.create_file_writer(os.path.join(model_dir, "summaries", "recall"))
  seen = load_seen(log_path)
  if seen:
    logging.info("%d bundle(s) already evaluated in %s.", len(seen), log_path)
  sleep, done_since, last = FLAGS.min_poll_seconds, None, None
  while True:
    # Read the stop conditions before the bundle: a bundle published just before they turn true
    # is still seen (and evaluated) on this pass.
    refresher_alive = pid_alive(FLAGS.wait_pid) if FLAGS.wait_pid else None
    finished = embedder_export.training_done(model_dir)
    try:
      bundle = bundle_lib.latest(index_dir)
    except bundle_lib.BundleNotFoundError:
      bundle = None
    if bundle is not None and bundle_key(bundle) not in seen:
      seen.add(bundle_key(bundle))
      try:
        r = measure_bundle_recall(bundle, annotations_dir, corpus_dir, FLAGS.eval_queries,
                                  FLAGS.squad)
      except (bundle_lib.BundleError, tf.errors.NotFoundError) as e:
        # Superseded and pruned while being read: the next bundle will be measured instead.
        logging.warning("Could not evaluate bundle v%d: %s", bundle.version, e)
        continue
      source = str(bundle.manifest.get("source_export", ""))
      from_trainer = os.path.dirname(norm_path(source)) == exports_dir if source else False
      r.update(step=bundle.step, source_export=source, from_trainer=from_trainer,
               bundle_path=bundle.path, time=time.time())
      logging.info("Recall of bundle v%d (step %d%s): %s", bundle.version, bundle.step,
                   "" if from_trainer else ", warm start", r)
      with tf.io.gfile.GFile(log_path, "a") as f:
        f.write(json.dumps(r) + "\n")
      # TensorBoard x-axis: the REALM training step (0 for the warm-start index).
      with writer.as_default(step=bundle.step if from_trainer else 0):
        for k, v in r.items():
          if "@" in k:
            tf.summary.scalar(f"recall/{k}", v)
      writer.flush()
      last = bundle
      sleep = FLAGS.min_poll_seconds
      continue
    if finished:
      done_since = done_since or time.time()
      final_export = embedder_export.latest_export(model_dir)
      if is_final_bundle(bundle, final_export):
        logging.info("Training done and the bundle of its final export (v%d) is evaluated; "
                     "the evaluator stops.", bundle.version)
        return
      if refresher_alive is False:
        logging.warning("Training done and the index-refresh job (pid %d) has exited without a "
                        "bundle of the final export %s; last evaluated: %s. Stopping.",
                        FLAGS.wait_pid, final_export, last)
        return
      if time.time() - done_since > FLAGS.final_wait_seconds:
        logging.warning("No bundle of the final export %s %.0fs after TRAINING_DONE; stopping.",
                        final_export, FLAGS.final_wait_seconds)
        return
      sleep = min(sleep, 5.0)
    time.sleep(sleep)
    sleep = min(sleep * 2, FLAGS.max_poll_seconds)


if __name__ == "__main__":
  cli.run(main)
