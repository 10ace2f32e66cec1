"""The refresh stage's one entry point: once, a document update, and the watch loop."""
import os

import numpy as np

from realm_tf.retrieval import bundle as bundle_lib
from realm_tf.retrieval import embedder_export as ee
from realm_tf.retrieval import refresh
from realm_tf.stages import refresh_job
from realm_tf.testing import retrieval_fixtures as testing
from realm_tf.testing.retrieval_fixtures import copy_export


def test_once_then_an_update_then_the_watch_loop(tmp_path):
  model_dir = str(tmp_path / "model")
  ee.export_embedder(testing.make_retriever(seed=3), model_dir, 100)
  corpus_dir, index_dir = str(tmp_path / "corpus"), str(tmp_path / "index")
  base_ids = testing.make_corpus(corpus_dir, (5,), seed=1)
  where = refresh.RefreshConfig(model_dir=model_dir, corpus_dir=corpus_dir, index_dir=index_dir,
                                batch_size=8, grace_seconds=0, keep=10, poll_min_seconds=0.1,
                                poll_max_seconds=0.2)

  first = refresh_job.run(refresh_job.RefreshJobConfig(where, once=True))
  assert first == {"mode": "once", "bundle": bundle_lib.latest(index_dir).path}
  # Up to date: once publishes nothing more.
  assert refresh_job.run(refresh_job.RefreshJobConfig(where, once=True))["bundle"] is None

  new_dir = str(tmp_path / "new")
  new_ids = testing.make_corpus(new_dir, (3,), seed=2, doc_prefix="new")
  ids_file = tmp_path / "remove.txt"
  ids_file.write_text(f"{base_ids[0]}\n")
  update = refresh_job.run(refresh_job.RefreshJobConfig(where, once=True, add=[new_dir],
                                                        remove=str(ids_file)))
  live = bundle_lib.latest(index_dir, load=True)
  assert update == {"mode": "update", "bundle": live.path} and live.version == 2
  np.testing.assert_array_equal(sorted(live.block_ids), sorted(base_ids[1:] + new_ids))

  # The watch loop ends with training (TRAINING_DONE) once the newest export is indexed.
  with open(os.path.join(model_dir, "TRAINING_DONE"), "w") as f:
    f.write("{}")
  assert refresh_job.run(refresh_job.RefreshJobConfig(where)) == {
      "mode": "watch", "published": 0, "staleness_steps": []}
  # The final export: the watch loop indexes it, then stops; it reports how stale each bundle
  # was as it went live (the trainer's newest step is that export's).
  copy_export(ee.export_path(model_dir, 100), model_dir, 130)
  watched = refresh_job.run(refresh_job.RefreshJobConfig(where))
  assert watched == {"mode": "watch", "published": 1, "staleness_steps": [0]}
  assert bundle_lib.latest(index_dir).manifest["staleness"]["export_step"] == 130
