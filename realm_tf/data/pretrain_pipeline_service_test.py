"""The pre-training pipeline through a real tf.data service: a dispatcher in this process and a
worker in another process (started with `python -m realm_tf.launch.data_service_worker`), on
loopback. The worker reads the index bundle from disk itself; its stream must equal the local one.
"""
import os
import select
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf
import tf_keras

import realm_tf
from realm_tf.data import masking as masking_lib
from realm_tf.data.block_lookup import BlockLookup
from realm_tf.data.pretrain_pipeline import (INPUT_KEYS, DataServiceError, PipelineConfig,
                                             check_data_service, indexed_masked_examples,
                                             make_pretrain_dataset)
from realm_tf.modeling.encoder_config import EncoderConfig
from realm_tf.modeling.retriever import Retriever, RetrieverConfig
from realm_tf.retrieval import bundle as bundle_lib
from realm_tf.retrieval.bundle import bundle_retrieve_fn
from realm_tf.retrieval.embedder_export import export_embedder
from realm_tf.retrieval.refresh import IndexRefresher, RefreshConfig
from realm_tf.testing import retrieval_fixtures
from realm_tf.text import RealmTokenizer

MICRO = EncoderConfig(hidden_size=32, num_layers=1, num_attention_heads=2, intermediate_size=64)
Q_LEN, D_LEN = 32, 48
CFG = PipelineConfig(batch_size=2, num_candidates=4, query_seq_length=Q_LEN, doc_seq_length=D_LEN,
                     joint_seq_length=Q_LEN + D_LEN)
NUM_BATCHES = 2
REPO = os.path.dirname(os.path.dirname(os.path.abspath(realm_tf.__file__)))


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("localhost", 0))
    return s.getsockname()[1]


@pytest.fixture(scope="module")
def service():
  """Dispatcher here (static sharding over one worker), worker in a separate process."""
  worker_port = _free_port()
  dispatcher = tf.data.experimental.service.DispatchServer(
      tf.data.experimental.service.DispatcherConfig(
          port=0, worker_addresses=[f"localhost:{worker_port}"]))
  address = dispatcher.target.split("://")[1]
  worker = subprocess.Popen(
      [sys.executable, "-m", "realm_tf.launch.data_service_worker",
       f"--dispatcher_address={address}", f"--worker_port={worker_port}",
       "--worker_host=localhost"],
      cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
  yield dispatcher, worker
  worker.kill()
  worker.wait()
  dispatcher._stop()  # pylint: disable=protected-access


def _wait_ready(worker, timeout_s=120.0):
  deadline = time.time() + timeout_s
  while time.time() < deadline:
    assert worker.poll() is None, "the data service worker process died"
    ready, _, _ = select.select([worker.stdout], [], [], 1.0)
    if ready and "tf.data service ready" in worker.stdout.readline():
      return
  raise AssertionError("the data service worker did not start in time")


@pytest.fixture(scope="module")
def work(service, tmp_path_factory):
  """A 6-block corpus, its annotations and a published bundle of a micro embedder (ScaNN).

  Depends on `service` so the worker process boots while these are built.
  """
  del service
  root = str(tmp_path_factory.mktemp("service"))
  tok = RealmTokenizer()
  corpus_dir, ann_dir = retrieval_fixtures.write_corpus_and_annotations(root, tok, D_LEN)
  tf_keras.utils.set_random_seed(0)
  retriever = Retriever(RetrieverConfig(encoder=MICRO, query_seq_length=Q_LEN,
                                        doc_seq_length=D_LEN)).build_towers()
  model_dir, index_dir = os.path.join(root, "model"), os.path.join(root, "index")
  export = export_embedder(retriever, model_dir, 1, tokenizer=tok)
  IndexRefresher(RefreshConfig(model_dir=model_dir, corpus_dir=corpus_dir, index_dir=index_dir,
                               min_recall=0.0, recall_queries=6)).refresh(export)
  bundle = bundle_lib.latest(index_dir)
  lookup = BlockLookup.open(corpus_dir)
  masker = masking_lib.Masker(masking_lib.MaskingConfig(query_length=Q_LEN), tok)
  return dict(tok=tok, ann_dir=ann_dir, bundle=bundle, lookup=lookup, masker=masker)


def _pipeline(work, retrieve, data_service=None):
  masked = indexed_masked_examples(work["ann_dir"], work["masker"], start_position=0)
  return make_pretrain_dataset(masked, retrieve, work["lookup"], CFG, work["tok"].cls_id,
                               work["tok"].sep_id, data_service=data_service)


def _top_level_ops(ds):
  graph = tf.compat.v1.GraphDef.FromString(ds._as_serialized_graph(  # pylint: disable=protected-access
      external_state_policy=tf.data.experimental.ExternalStatePolicy.WARN).numpy())
  library_ops = {n.op for f in graph.library.function for n in f.node_def}
  return [n.op for n in graph.node], library_ops


def test_worker_loaded_retrieval_ships_no_weights_in_the_graph(work):
  """Capturing the bundle serializes every variable into the graph; loading on the worker none."""
  def service_part(retrieve):
    masked = indexed_masked_examples(work["ann_dir"], work["masker"]).batch(2)
    return masked.map(lambda b: retrieve({k: b[k] for k in INPUT_KEYS}))

  captured_ops, _ = _top_level_ops(service_part(bundle_retrieve_fn(work["bundle"], 4)))
  loaded_ops, library = _top_level_ops(
      service_part(bundle_retrieve_fn(work["bundle"], 4, load_on_worker=True)))
  # The micro embedder's weights and the ScaNN state are variables, each shipped as a value.
  assert captured_ops.count("VarHandleOp") >= 20
  assert "VarHandleOp" not in loaded_ops and "RestoreV2" in library


def test_service_stream_equals_local_stream(service, work):
  """Same examples, same order: one worker, static sharding (1 shard) keeps the batch order."""
  dispatcher, worker = service
  local = list(_pipeline(work, bundle_retrieve_fn(work["bundle"], 4)).take(NUM_BATCHES))
  _wait_ready(worker)
  remote_retrieve = bundle_retrieve_fn(work["bundle"], 4, load_on_worker=True)
  remote = list(_pipeline(work, remote_retrieve, data_service=dispatcher.target)
                .take(NUM_BATCHES))
  assert len(remote) == NUM_BATCHES
  for want, got in zip(local, remote):
    assert sorted(want) == sorted(got)
    for key in want:
      np.testing.assert_array_equal(want[key].numpy(), got[key].numpy(), err_msg=key)
  # The stream is real: retrieval found blocks and the own block was dropped from candidates.
  ids = np.stack([b["retrieved_block_ids"].numpy() for b in remote])
  own = np.stack([b["block_id"].numpy() for b in remote])
  assert (ids != -1).all() and not (ids == own[..., None]).any()
  positions = [int(b["data_position"].numpy()[0]) for b in remote]
  assert positions == sorted(positions) and positions[0] >= CFG.batch_size
  assert remote[0]["candidates/input_word_ids"].shape == [2, 4, D_LEN]


def test_bad_address_is_a_clear_error(work):
  retrieve = bundle_retrieve_fn(work["bundle"], 4, load_on_worker=True)
  with pytest.raises(DataServiceError, match="grpc://host:port"):
    _pipeline(work, retrieve, data_service="localhost:5050")
  closed = f"grpc://localhost:{_free_port()}"
  start = time.time()
  with pytest.raises(DataServiceError, match=f"No tf.data service dispatcher answers at {closed}"):
    check_data_service(closed, timeout_s=1.0)
  assert time.time() - start < 10
