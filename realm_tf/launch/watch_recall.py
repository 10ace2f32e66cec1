r"""The evaluator of the local launcher: measures zero-shot recall@5 of every new index bundle.

  python -m realm_tf.launch.watch_recall --work_dir=runs/local

Polls `<work_dir>/index` with back-off, evaluates each new bundle once (masked sentences against
their source block; SQuAD questions against gold paragraphs when the corpus is the default one),
appends a line to `<work_dir>/recall.jsonl`, writes TensorBoard scalars, and exits after the
trainer's done-marker appears and the last bundle has been evaluated.
"""
import json
import os
import time

from absl import app, flags, logging

flags.DEFINE_string("work_dir", "runs/local", "The pretrain job's work directory.")
flags.DEFINE_integer("eval_queries", 300, "Queries per measurement.")
flags.DEFINE_bool("squad", True, "Also measure SQuAD-question recall (default corpus only).")
flags.DEFINE_float("max_poll_seconds", 60.0, "Longest sleep between polls.")
FLAGS = flags.FLAGS


def main(argv):
  del argv
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from realm_tf.retrieval import bundle as bundle_lib  # pylint: disable=g-import-not-at-top
  from realm_tf.training.pretrain_job import measure_recall  # pylint: disable=g-import-not-at-top
  from realm_tf.training.trainer import DONE_MARKER  # pylint: disable=g-import-not-at-top

  w = FLAGS.work_dir
  index_dir, done = os.path.join(w, "index"), os.path.join(w, "realm", DONE_MARKER)
  writer = tf.summary.create_file_writer(os.path.join(w, "realm", "summaries", "recall"))
  seen, sleep = set(), 1.0
  while True:
    finished = tf.io.gfile.exists(done)
    try:
      bundle = bundle_lib.latest(index_dir)
    except bundle_lib.BundleNotFoundError:
      bundle = None
    if bundle is not None and bundle.version not in seen:
      seen.add(bundle.version)
      r = measure_recall(bundle, os.path.join(w, "annotations"), os.path.join(w, "corpus"),
                         FLAGS.eval_queries, FLAGS.squad)
      r.update(step=bundle.step, time=time.time())
      logging.info("Recall of bundle v%d (step %d): %s", bundle.version, bundle.step, r)
      with tf.io.gfile.GFile(os.path.join(w, "recall.jsonl"), "a") as f:
        f.write(json.dumps(r) + "\n")
      with writer.as_default(step=bundle.step):
        for k, v in r.items():
          if k.endswith("@5"):
            tf.summary.scalar(f"recall/{k}", v)
      writer.flush()
      sleep = 1.0
      continue
    if finished:
      return
    time.sleep(sleep)
    sleep = min(sleep * 2, FLAGS.max_poll_seconds)


if __name__ == "__main__":
  app.run(main)
