"""Every stage's train step compiles with XLA, and every dataset it reads is what a TPU step takes.

On toy towers over a 16-block code book, each stage runs one step with `jit_compile`: ICT (which
publishes the first index), the reader warm-up, REALM pre-training, open-QA fine-tuning, and the
corpus embedding of an index refresh. For each Trainer the test asserts that

  * every feature of the dataset it fed to `strategy.run` (all but `data_position`, which the
    trainer reads on the host) has a fully defined shape and a dtype in DEVICE_DTYPES (no int64
    ids, no strings);
  * the step's forward, backward and optimizer apply sit in XLA-compiled functions: the whole
    replica step in one, or for fine-tuning (a HostStagedTask: the retrieved blocks are read from
    the host's block lookup between retrieval and the losses) its two device parts, their
    gradients and the apply, with only the host's lookup outside.
"""
import os
from typing import List

import numpy as np
import pytest
import tensorflow as tf
import tf_keras

from realm_tf.data import corpus as corpus_lib
from realm_tf.modeling.encoder_config import EncoderConfig
from realm_tf.modeling.realm_pretrainer import RealmConfig
from realm_tf.modeling.retriever import INPUT_KEYS, RetrieverConfig
from realm_tf.modeling.openqa_features import OpenQAExample
from realm_tf.modeling.openqa_model import OpenQAConfig
from realm_tf.retrieval import embed_corpus
from realm_tf.retrieval import embedder_export
from realm_tf.stages import finetune, ict_experiment, reader_warmup
from realm_tf.stages.realm_experiment import PretrainConfig, RealmExperiment
from realm_tf.testing import openqa_models
from realm_tf.testing import synthetic
from realm_tf.text import RealmTokenizer
from realm_tf.training import trainer as trainer_lib

MICRO = EncoderConfig(hidden_size=32, num_layers=1, num_attention_heads=2, intermediate_size=64)
QUERY, DOC = 12, 24
BATCH = 4


@pytest.fixture(scope="module")
def trainers():
  """Every Trainer that trains in this module, in order (the real Trainer, observed)."""
  seen = []
  original = trainer_lib.Trainer.train

  def train(self, *args, **kwargs):
    seen.append(self)
    return original(self, *args, **kwargs)

  trainer_lib.Trainer.train = train
  yield seen
  trainer_lib.Trainer.train = original


@pytest.fixture(scope="module")
def world(tmp_path_factory, trainers):
  """The code book, and ICT (one compiled step) with the index bundle it publishes."""
  root = str(tmp_path_factory.mktemp("xla"))
  tok = RealmTokenizer()
  book = synthetic.code_book(os.path.join(root, "book"), tok, num_entities=16,
                             max_block_length=DOC)
  retriever = RetrieverConfig(encoder=MICRO, query_seq_length=QUERY, doc_seq_length=DOC,
                              pooling="mean")
  ict = ict_experiment.run(ict_experiment.IctJobConfig(
      ict_experiment.IctConfig(retriever=retriever, batch_size=BATCH, num_train_steps=1,
                               warmup_steps=0, shuffle_window=16, checkpoint_every=1),
      corpus_dir=book.corpus_dir, model_dir=os.path.join(root, "ict"),
      index_dir=os.path.join(root, "index"), min_recall=0.0, jit_compile=True))
  return {"root": root, "book": book, "ict": ict, "ict_trainer": trainers[-1],
          "index": os.path.join(root, "index")}


def _compiled(fn, *args) -> List[str]:
  """Names of the XLA-compiled functions in `fn`'s traced graph for `args`."""
  library = fn.get_concrete_function(*args).graph.as_graph_def().library
  return [f.signature.name for f in library.function
          if "_XlaMustCompile" in f.attr and f.attr["_XlaMustCompile"].b]


def _step_spec(trainer):
  """The element spec of the batches `strategy.run` received (data_position popped)."""
  return {k: v for k, v in trainer.input_element_spec.items() if k != "data_position"}


def _assert_device_inputs(trainer):
  spec = _step_spec(trainer)
  assert spec
  for key, s in spec.items():
    assert s.shape.is_fully_defined(), (trainer.name, key, s)
    assert s.dtype in trainer_lib.DEVICE_DTYPES, (trainer.name, key, s)
    assert s.shape[0] == BATCH, (trainer.name, key, s)


def _assert_whole_step_compiled(trainer):
  assert trainer.jit_compile
  names = _compiled(trainer._train_step, _step_spec(trainer))  # pylint: disable=protected-access
  assert any("_replica_step" in n for n in names), names


def test_the_check_names_every_feature_a_tpu_step_cannot_take():
  spec = {"ok": tf.TensorSpec([4, 3], tf.int32), "ids": tf.TensorSpec([4], tf.int64),
          "text": tf.TensorSpec([4], tf.string), "ragged": tf.TensorSpec([None, 3], tf.float32),
          "data_position": tf.TensorSpec([4], tf.int64)}
  with pytest.raises(ValueError) as e:
    trainer_lib.check_device_inputs(spec, "[x] The input", host_keys=("data_position",))
  message = str(e.value)
  assert "ids: int64" in message and "text: string" in message and "ragged: float32" in message
  assert "ok:" not in message and "data_position" not in message
  trainer_lib.check_device_inputs({"ok": spec["ok"]}, "[x] The input")


def test_ict_step_compiles_whole_on_static_int32_inputs(world):
  trainer = world["ict_trainer"]
  assert trainer.name == "ict" and np.isfinite(world["ict"]["loss"])
  _assert_device_inputs(trainer)
  assert "block_id" not in trainer.input_element_spec
  _assert_whole_step_compiled(trainer)


def test_reader_warmup_step_compiles_whole(world, trainers):
  result = reader_warmup.run(reader_warmup.ReaderWarmupJobConfig(
      reader_warmup.ReaderWarmupConfig(knowledge_encoder=MICRO, query_length=QUERY,
                                       seq_length=QUERY + DOC, max_predictions=4,
                                       batch_size=BATCH, num_train_steps=1, warmup_steps=0,
                                       shuffle_window=16, checkpoint_every=1),
      corpus_dir=world["book"].corpus_dir, model_dir=os.path.join(world["root"], "warmup"),
      jit_compile=True))
  trainer = trainers[-1]
  assert trainer.name == "reader_warmup" and np.isfinite(result["loss"])
  _assert_device_inputs(trainer)
  _assert_whole_step_compiled(trainer)


def test_realm_step_compiles_whole_without_the_int64_block_ids(world, trainers):
  book = world["book"]
  config = PretrainConfig(
      model=RealmConfig(retriever_encoder=MICRO, reader_encoder=MICRO, query_seq_length=QUERY,
                        doc_seq_length=DOC, joint_seq_length=QUERY + DOC, num_candidates=3,
                        max_predictions=2, retriever_pooling="mean"),
      batch_size=BATCH, num_train_steps=1, warmup_steps=0, refresh="none", checkpoint_every=1,
      shuffle_window=16)
  experiment = RealmExperiment(config, book.corpus_dir, book.annotations_dir, world["index"],
                               os.path.join(world["root"], "realm"), jit_compile=True)
  result = experiment.train(retriever_init=world["ict"]["export"])
  trainer = trainers[-1]
  assert trainer.name == "realm" and np.isfinite(result["loss"])
  _assert_device_inputs(trainer)
  assert not {"block_id", "retrieved_block_ids"} & set(trainer.input_element_spec)
  _assert_whole_step_compiled(trainer)


def test_finetuning_compiles_its_device_parts_around_the_host_lookup(world, trainers):
  book = world["book"]
  examples = [OpenQAExample(f"q{i}", f"what is the code of {name} ?", (value,),
                            doc_id=f"fact/{i}")
              for i, (name, value) in enumerate(zip(book.names, book.values))]
  config = finetune.FinetuneConfig(
      model=OpenQAConfig(reader=openqa_models.micro_reader_config(), reader_beam_size=3),
      batch_size=BATCH, num_train_steps=1, warmup_steps=0, checkpoint_every=1,
      reader_positives="gold")
  tf_keras.utils.set_random_seed(0)
  result = finetune.run(finetune.FinetuneJobConfig(
      config, index_dir=world["index"], corpus_dir=book.corpus_dir,
      model_dir=os.path.join(world["root"], "finetune"), jit_compile=True), examples=examples)
  trainer = trainers[-1]
  assert trainer.name == "finetune" and np.isfinite(result["loss"])
  _assert_device_inputs(trainer)
  assert isinstance(trainer.task, trainer_lib.HostStagedTask)
  names = _compiled(trainer._train_step, _step_spec(trainer))  # pylint: disable=protected-access
  for part in ("device_first", "device_second", "_apply"):
    assert any(part in n and "backward" not in n for n in names), (part, names)
  for part in ("device_first", "device_second"):  # their gradients
    assert any("backward" in n and part in n for n in names), (part, names)
  # Nothing but the host's lookup stays outside: the step is not compiled as one function.
  assert not any("_replica_step" in n for n in names), names


def test_corpus_embedding_step_compiles_and_matches_the_uncompiled_one(world):
  book = world["book"]
  embedder = embedder_export.load_embedder(world["ict"]["export"])
  paths = corpus_lib.shard_paths(book.corpus_dir)
  ids, plain = embed_corpus.embed_blocks(embedder, paths, batch_size=BATCH)
  jit_ids, compiled = embed_corpus.embed_blocks(embedder, paths, batch_size=BATCH,
                                                jit_compile=True)
  np.testing.assert_array_equal(jit_ids, ids)
  np.testing.assert_allclose(compiled, plain, rtol=1e-4, atol=1e-5)
  assert len(ids) == 16
  step = embed_corpus._distributed_step(  # pylint: disable=protected-access
      embedder, tf.distribute.get_strategy(), jit_compile=True)
  spec = {k: tf.TensorSpec([BATCH, DOC], tf.int32) for k in INPUT_KEYS}
  assert any("embed_documents" in n for n in _compiled(step, spec))
