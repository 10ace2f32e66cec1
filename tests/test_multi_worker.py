"""The multi-host code path without a TPU: MultiWorkerMirroredStrategy over 2 local worker
processes on CPU (TF_CONFIG, gRPC on free local ports), each with its own input pipeline.

One pair of processes trains with the real Trainer on the training stages' real input code (the
seeded block stream, sharded per worker) and a stand-in task, and is stopped after step 3
(checkpoint at step 2); a second pair resumes it to step 4 and then embeds the corpus with both
workers (`realm_tf.testing.multi_worker`). Checked: the workers read disjoint shares of the
stream that together are its first positions; the chief's checkpoint holds each worker's own
data position and each resumes exactly there; the corpus embedding holds every block once, equal
to one process's embedding.
"""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from realm_tf.data import corpus as corpus_lib
from realm_tf.testing import multi_worker
from realm_tf.testing import worker_cluster
from realm_tf.text import RealmTokenizer

WINDOW = 8
GLOBAL_BATCH = 8  # 4 per worker
SHARD_SIZES = (20, 12, 16)


def _write_corpus(corpus_dir, tokenizer):
  """48 blocks in three shards of uneven size."""
  os.makedirs(corpus_dir)
  docs = [(f"doc{i}", f"title {i}", f"fact {i} is here . fact {i} has two sentences .")
          for i in range(sum(SHARD_SIZES))]
  titles = tokenizer.tokenize([d[1] for d in docs]).to_list()
  bodies = tokenizer.tokenize([d[2] for d in docs]).to_list()
  shards, start = [], 0
  for s, size in enumerate(SHARD_SIZES):
    records = [corpus_lib.block_example(corpus_lib.block_id_for(d, 0), d, t, b, t_ids, b_ids)
               for (d, t, b), t_ids, b_ids in zip(docs[start:start + size],
                                                  titles[start:start + size],
                                                  bodies[start:start + size])]
    path = os.path.join(corpus_dir, corpus_lib.SHARD_PATTERN.format(s, len(SHARD_SIZES)))
    shards.append(corpus_lib.write_shard(path, records))
    start += size
  corpus_lib.write_manifest(corpus_dir, shards, tokenizer.fingerprint, 32)


def _launch(job, tmp_path, name, timeout=300):
  """Runs both workers of `job`; returns ([exit status], [their record])."""
  job = dict(job, out_dir=str(tmp_path / name))
  os.makedirs(job["out_dir"])
  job_path = os.path.join(job["out_dir"], "job.json")
  with open(job_path, "w") as f:
    json.dump(job, f)
  workers = [f"localhost:{p}" for p in worker_cluster.free_ports(2)]
  procs = []
  for index in range(2):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="",
               TF_CONFIG=worker_cluster.tf_config(workers, index))
    procs.append(subprocess.Popen([sys.executable, "-m", "realm_tf.testing.multi_worker",
                                   job_path], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  text=True, env=env))
  statuses, records = [], []
  try:
    for index, proc in enumerate(procs):
      _, stderr = proc.communicate(timeout=timeout)
      with open(os.path.join(job["out_dir"], f"worker-{index}.log"), "w") as f:
        f.write(stderr)
      statuses.append(proc.returncode)
      path = os.path.join(job["out_dir"], f"worker-{index}.json")
      assert os.path.exists(path), f"worker {index}: exit {proc.returncode}\n{stderr[-4000:]}"
      with open(path) as f:
        records.append(json.load(f))
  finally:
    for proc in procs:
      if proc.poll() is None:
        proc.kill()
        proc.wait()
  return statuses, records


def _reference_stream(corpus_dir, n):
  """The whole stream of one process: (stream position, block id) of its first n examples."""
  ds = multi_worker.training_examples(corpus_dir, 1, 0, seed=1, shuffle_window=WINDOW)
  return [(int(b["data_position"][0]) - 1, int(b["block_id"][0])) for b in ds.take(n)]


def _consumed(record, steps, worker):
  """Block ids `worker`'s pipeline fed up to step `steps` (batches prefetched past it dropped)."""
  reached = dict((s, p) for s, p in record["steps"])[steps][worker]
  return [i for position, ids in record["batches"] if position <= reached for i in ids]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
  """The stopped run, the resumed run (with corpus embedding) and the single-process
  references (the stream, the export's embedding of every block)."""
  import tf_keras  # pylint: disable=g-import-not-at-top
  from realm_tf.modeling.retriever import Retriever  # pylint: disable=g-import-not-at-top
  from realm_tf.retrieval import embed_corpus, embedder_export  # pylint: disable=g-import-not-at-top
  tmp = tmp_path_factory.mktemp("multi_worker")
  tokenizer = RealmTokenizer()
  corpus_dir = str(tmp / "corpus")
  _write_corpus(corpus_dir, tokenizer)
  tf_keras.utils.set_random_seed(5)
  retriever = Retriever(multi_worker.micro_retriever_config(), name="retriever").build_towers()
  export = embedder_export.export_embedder(retriever, str(tmp / "export_model"), 1,
                                           tokenizer=tokenizer)
  job = {"corpus_dir": corpus_dir, "model_dir": str(tmp / "model"), "seed": 1,
         "shuffle_window": WINDOW, "global_batch": GLOBAL_BATCH}
  stopped = _launch(dict(job, num_steps=6, kill_at_step=3), tmp, "stopped")
  resumed = _launch(dict(job, num_steps=4, kill_at_step=0, export=export,
                         embed_dir=str(tmp / "embeddings")), tmp, "resumed")
  ids, embeddings = embed_corpus.embed_blocks(embedder_export.load_embedder(export),
                                              corpus_lib.shard_paths(corpus_dir), batch_size=4)
  return {"stopped": stopped, "resumed": resumed, "tmp": tmp, "model_dir": job["model_dir"],
          "stream": _reference_stream(corpus_dir, sum(SHARD_SIZES)),
          "ids": ids, "embeddings": embeddings}


def _own_stream(runs, worker):
  """The reference stream's block ids in `worker`'s windows (every 2nd window from its own)."""
  return [b for p, b in runs["stream"] if (p // WINDOW) % 2 == worker]


def test_two_workers_read_disjoint_shares_that_together_are_the_stream(runs):
  statuses, records = runs["stopped"]
  assert statuses == [3, 3]  # both stopped by the hook after step 3
  fed = [_consumed(r, 2, w) for w, r in enumerate(records)]
  assert [r["built"][0] for r in records] == [[0, 0, 2, 4], [0, 1, 2, 4]]
  assert len(fed[0]) == len(fed[1]) == 2 * GLOBAL_BATCH // 2
  assert not set(fed[0]) & set(fed[1])
  # Worker w reads windows w, w + 2, ...: its share of the one-process stream, in its order.
  for worker in (0, 1):
    assert fed[worker] == _own_stream(runs, worker)[:len(fed[worker])]
  # Together: the first two windows of the stream, every position once.
  assert sorted(fed[0] + fed[1]) == sorted(b for _, b in runs["stream"][:2 * WINDOW])


def test_a_stopped_pair_resumes_each_worker_at_its_own_position(runs):
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  _, stopped = runs["stopped"]
  statuses, resumed = runs["resumed"]
  assert statuses == [0, 0]
  # Step 2's checkpoint (the chief's) holds both workers' positions: window 0 read to its end
  # (8) by worker 0, window 1 (to 16) by worker 1; step 3 (windows 2 and 3) was read but not
  # checkpointed. Between checkpoints each worker knows only its own position.
  assert [dict(r["steps"])[2] for r in stopped] == [[8, 16], [8, 16]]
  assert [dict(r["steps"])[3] for r in stopped] == [[20, 16], [8, 28]]
  reader = tf.train.load_checkpoint(os.path.join(runs["model_dir"], "checkpoints", "ckpt-2"))
  assert reader.get_tensor("data_position/.ATTRIBUTES/VARIABLE_VALUE").tolist() == [8, 16]
  assert [r["built"][0][0] for r in resumed] == [8, 16]
  for worker in (0, 1):
    again = _consumed(resumed[worker], 4, worker)
    own = _own_stream(runs, worker)
    # Steps 3-4 read the examples after the worker's own step-2 position: step 3's batch again.
    assert again == own[GLOBAL_BATCH:2 * GLOBAL_BATCH]
    assert again[:GLOBAL_BATCH // 2] == _consumed(stopped[worker], 3, worker)[GLOBAL_BATCH:]
  assert [dict(r["steps"])[4] for r in resumed] == [[24, 32], [24, 32]]  # gathered at the save
  assert not [d for d in os.listdir(runs["model_dir"]) if d.startswith(".checkpoints-worker")]


def test_two_workers_embed_each_block_once(runs):
  _, resumed = runs["resumed"]
  # Worker 0 embeds corpus shards 0 and 2, worker 1 shard 1 (uneven: 36 and 12 blocks).
  assert [r["embedded"] for r in resumed] == [[0, 2], [1]]
  merged = np.load(os.path.join(runs["tmp"], "resumed", "merged.npz"))
  assert len(merged["ids"]) == sum(SHARD_SIZES) == len(set(merged["ids"].tolist()))
  np.testing.assert_array_equal(merged["ids"], runs["ids"])
  np.testing.assert_allclose(merged["embeddings"], runs["embeddings"], atol=1e-5)


def test_a_checkpoint_of_two_input_pipelines_is_refused_by_one(runs):
  """Each host resumes its own position: a run on another number of hosts is refused, naming
  the shapes, rather than resuming some pipeline from another's position."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from realm_tf.training.optimizer import create_optimizer  # pylint: disable=g-import-not-at-top
  from realm_tf.training.trainer import ConfigMismatchError, Trainer  # pylint: disable=g-import-not-at-top
  trainer = Trainer(multi_worker.stand_in_model(), create_optimizer(1e-2, 100, 0),
                    multi_worker.stand_in_task, tf.distribute.get_strategy(), runs["model_dir"],
                    GLOBAL_BATCH)
  with pytest.raises(ConfigMismatchError, match=r"shape \[2\]; this run has 1 input pipeline"):
    trainer.restore()
