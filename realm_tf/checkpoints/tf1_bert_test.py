"""Tests for the TF1 BERT / REALM / ORQA converter on checkpoints written with the TF1 Saver.

The checkpoints use exactly the original variable names (google-research/bert, language/realm,
language/orqa), written by `tf.compat.v1.train.Saver` in graph mode — the released checkpoints'
format — and are compared value by value and through an independent NumPy forward pass.
"""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from realm_tf.checkpoints import convert
from realm_tf.checkpoints import mapping
from realm_tf.checkpoints import tf1_bert
from realm_tf.checkpoints.mapping import CheckpointMismatchError
from realm_tf.modeling.knowledge_encoder import KnowledgeAugmentedEncoder
from realm_tf.modeling.retriever import Retriever, RetrieverConfig
from realm_tf.testing.bert_checkpoints import (SMALL, SPAN, bert_arrays, layer_norm, numpy_bert,
                                                  numpy_mlm_logits, orqa_arrays, params_from_tf1,
                                                  rand, realm_embedder_arrays, small_inputs,
                                                  write_tf1_checkpoint)


def _features(ids, mask, types):
  return {"input_word_ids": tf.constant(ids), "input_mask": tf.constant(mask),
          "input_type_ids": tf.constant(types)}


def _reference_embedding(arrays, bert_prefix, proj_prefix, ids, mask, types):
  _, pooled = numpy_bert(params_from_tf1(arrays, bert_prefix), ids, mask, types,
                         SMALL.num_attention_heads)
  x = pooled @ arrays[proj_prefix + "dense/kernel"] + arrays[proj_prefix + "dense/bias"]
  return layer_norm(x, arrays[proj_prefix + "LayerNorm/gamma"], arrays[proj_prefix + "LayerNorm/beta"])


def _assert_encoder_equals(encoder, arrays, prefix):
  """Every encoder variable equals its TF1 array (reshaped)."""
  variables = mapping.encoder_variables(encoder)
  p = prefix + "bert/"
  np.testing.assert_array_equal(variables["word_embeddings/embeddings"].numpy(),
                                arrays[p + "embeddings/word_embeddings"])
  q = variables["transformer/layer_1/self_attention/query/kernel"].numpy()
  np.testing.assert_array_equal(q.reshape(q.shape[0], -1),
                                arrays[p + "encoder/layer_1/attention/self/query/kernel"])
  o = variables["transformer/layer_0/self_attention/attention_output/kernel"].numpy()
  np.testing.assert_array_equal(o.reshape(-1, o.shape[-1]),
                                arrays[p + "encoder/layer_0/attention/output/dense/kernel"])
  np.testing.assert_array_equal(variables["transformer/layer_0/output_layer_norm/beta"].numpy(),
                                arrays[p + "encoder/layer_0/output/LayerNorm/beta"])
  np.testing.assert_array_equal(variables["pooler_transform/kernel"].numpy(),
                                arrays[p + "pooler/dense/kernel"])


# ------------------------------------------------------------------------------------------------

def test_bert_checkpoint_into_knowledge_encoder(tmp_path):
  arrays = bert_arrays(SMALL, 1, mlm=True, nsp=True)
  rng = np.random.default_rng(0)
  # Optimizer slots and the step are in training checkpoints; they are skipped.
  arrays["bert/embeddings/word_embeddings/adam_m"] = np.zeros_like(arrays["bert/embeddings/word_embeddings"])
  arrays["bert/pooler/dense/kernel/adam_v"] = rand(rng, SMALL.hidden_size, SMALL.hidden_size)
  arrays["global_step"] = np.array(7, np.int64)
  path = write_tf1_checkpoint(arrays, str(tmp_path / "bert_model.ckpt"))
  assert tf.train.load_checkpoint(path).has_tensor("bert/encoder/layer_1/attention/self/query/kernel")

  assert tf1_bert.infer_encoder_config(path, num_attention_heads=4) == SMALL
  model = KnowledgeAugmentedEncoder(SMALL)
  used = tf1_bert.load_tf1_encoder(path, model.encoder, model.mlm_head)
  assert "cls/predictions/output_bias" in used and "cls/seq_relationship/output_bias" not in used
  _assert_encoder_equals(model.encoder, arrays, "")
  np.testing.assert_array_equal(model.mlm_head.transform.kernel.numpy(),
                                arrays["cls/predictions/transform/dense/kernel"])
  assert model.mlm_head.embedding_table is model.encoder.get_embedding_table()

  ids, mask, types = small_inputs(SMALL)
  positions = np.array([[1, 3], [0, 6], [2, 3]], np.int32)
  logits = model(_features(ids, mask, types), tf.constant(positions)).numpy()
  params = params_from_tf1(arrays, "")
  ref_seq, _ = numpy_bert(params, ids, mask, types, SMALL.num_attention_heads)
  head = {"dense": (arrays["cls/predictions/transform/dense/kernel"],
                    arrays["cls/predictions/transform/dense/bias"]),
          "ln": (arrays["cls/predictions/transform/LayerNorm/gamma"],
                 arrays["cls/predictions/transform/LayerNorm/beta"]),
          "bias": arrays["cls/predictions/output_bias"]}
  ref_logits = numpy_mlm_logits(params, head, np.take_along_axis(ref_seq, positions[..., None], 1))
  np.testing.assert_allclose(logits, ref_logits, atol=2e-4)


def test_realm_embedder_into_both_retriever_towers(tmp_path):
  arrays = realm_embedder_arrays()
  path = write_tf1_checkpoint(arrays, str(tmp_path / "embedder" / "variables" / "variables"))
  # A TF-Hub module directory resolves to its variables/variables checkpoint.
  assert tf1_bert.resolve_tf1_checkpoint(str(tmp_path / "embedder")) == path
  retriever = Retriever(RetrieverConfig(encoder=SMALL))
  used = tf1_bert.load_tf1_retriever(str(tmp_path / "embedder"), retriever)
  assert "module/module/LayerNorm/gamma" in used
  assert not any("cls/predictions" in n for n in used)
  ids, mask, types = small_inputs(SMALL)
  ref = _reference_embedding(arrays, "module/module/module/", "module/module/", ids, mask, types)
  feats = _features(ids, mask, types)
  np.testing.assert_allclose(retriever.embed_queries(feats).numpy(), ref, atol=1e-4)
  np.testing.assert_allclose(retriever.embed_documents(feats).numpy(), ref, atol=1e-4)


def test_orqa_checkpoint_reader_and_query_tower(tmp_path):
  embedder = realm_embedder_arrays()
  emb_path = write_tf1_checkpoint(embedder, str(tmp_path / "embedder.ckpt"))
  orqa = orqa_arrays()
  orqa_path = write_tf1_checkpoint(orqa, str(tmp_path / "model.ckpt-12345"))
  (tmp_path / "checkpoint").write_text('model_checkpoint_path: "model.ckpt-12345"\n')
  assert tf1_bert.resolve_tf1_checkpoint(str(tmp_path)) == orqa_path

  # Reader: BERT from reader/module/bert, span MLP split into start | end halves.
  assert tf1_bert.infer_span_hidden_size(orqa_path) == SPAN
  reader = tf1_bert.ReaderWeights(SMALL, span_hidden_size=SPAN)
  used = tf1_bert.load_tf1_reader(orqa_path, reader)
  assert not any(n.startswith("module/") for n in used)
  _assert_encoder_equals(reader.encoder, orqa, "reader/module/")
  head = reader.span_head
  np.testing.assert_array_equal(head.start_dense.kernel.numpy(), orqa["reader/dense/kernel"][:, :SPAN])
  np.testing.assert_array_equal(head.end_dense.kernel.numpy(), orqa["reader/dense/kernel"][:, SPAN:])
  np.testing.assert_array_equal(head.end_dense.bias.numpy(), orqa["reader/dense/bias"][SPAN:])
  np.testing.assert_array_equal(head.score_dense.kernel.numpy(), orqa["reader/dense_1/kernel"])
  # Span scores as ORQA computes them (one dense, tf.split, relu, LayerNorm eps 1e-3, dense_1).
  ids, mask, types = small_inputs(SMALL)
  h = reader.encoder(_features(ids, mask, types))["sequence_output"]
  ours = head.score_dense(head.layer_norm(tf.nn.relu(
      head.start_dense(h[:, 2]) + head.end_dense(h[:, 4])))).numpy()[:, 0]
  ref_seq, _ = numpy_bert(params_from_tf1(orqa, "reader/module/"), ids, mask, types, 4)
  proj = ref_seq @ orqa["reader/dense/kernel"] + orqa["reader/dense/bias"]
  start, end = np.split(proj, 2, axis=-1)
  hid = np.maximum(start[:, 2] + end[:, 4], 0)
  hid = layer_norm(hid, orqa["reader/layer_normalization/gamma"],
                    orqa["reader/layer_normalization/beta"], eps=1e-3)
  ref = (hid @ orqa["reader/dense_1/kernel"] + orqa["reader/dense_1/bias"])[:, 0]
  np.testing.assert_allclose(ours, ref, atol=1e-4)

  # Retriever: fine-tuned query tower from ORQA, frozen document tower from the embedder.
  retriever = Retriever(RetrieverConfig(encoder=SMALL))
  tf1_bert.load_tf1_retriever(orqa_path, retriever, emb_path)
  feats = _features(ids, mask, types)
  np.testing.assert_allclose(
      retriever.embed_queries(feats).numpy(),
      _reference_embedding(orqa, "module/module/module/module/", "module/module/module/", ids, mask,
                           types), atol=1e-4)
  np.testing.assert_allclose(
      retriever.embed_documents(feats).numpy(),
      _reference_embedding(embedder, "module/module/module/", "module/module/", ids, mask, types),
      atol=1e-4)


@pytest.mark.parametrize("case", ["missing", "extra", "shape"])
def test_bad_checkpoints_fail_naming_the_variable_and_write_nothing(tmp_path, case):
  arrays = bert_arrays(SMALL, 2, mlm=True)
  victim = "bert/encoder/layer_1/intermediate/dense/kernel"
  if case == "missing":
    del arrays[victim]
    expect = [victim, "missing"]
  elif case == "extra":
    arrays["bert/encoder/layer_0/attention/self/relative_bias"] = np.zeros([4, 5], np.float32)
    expect = ["bert/encoder/layer_0/attention/self/relative_bias (4, 5)", "used by no model weight"]
  else:
    arrays[victim] = np.zeros([SMALL.hidden_size, 50], np.float32)
    expect = [victim, "(32, 50)", "(32, 48)"]
  path = write_tf1_checkpoint(arrays, str(tmp_path / "src" / "bert.ckpt"))
  out = tmp_path / "converted"
  with pytest.raises(CheckpointMismatchError) as info:
    convert.convert_checkpoint("tf1", path, str(out), "knowledge_encoder", preset=None,
                               num_attention_heads=4)
  for text in expect:
    assert text in str(info.value)
  assert sorted(os.listdir(tmp_path)) == ["src"]  # no output, no temporary directory

  # The model-level loader refuses too and leaves the model as it was.
  model = KnowledgeAugmentedEncoder(SMALL)
  mapping.ensure_encoder_built(model.encoder)
  before = model.encoder.get_embedding_table().numpy().copy()
  with pytest.raises(CheckpointMismatchError):
    tf1_bert.load_tf1_encoder(path, model.encoder, model.mlm_head)
  np.testing.assert_array_equal(model.encoder.get_embedding_table().numpy(), before)


def test_ambiguous_checkpoint_needs_a_prefix(tmp_path):
  path = write_tf1_checkpoint(orqa_arrays(), str(tmp_path / "orqa.ckpt"))
  with pytest.raises(CheckpointMismatchError, match="reader/module/"):
    tf1_bert.infer_encoder_config(path, num_attention_heads=4)
  cfg = tf1_bert.infer_encoder_config(path, prefix="reader/module/", num_attention_heads=4)
  assert cfg == SMALL


@pytest.mark.slow  # covered more cheaply elsewhere; make test-slow


def test_cli_converts_tf1_reader_and_restores(tmp_path):
  orqa = orqa_arrays()
  path = write_tf1_checkpoint(orqa, str(tmp_path / "orqa" / "model.ckpt"))
  out = tmp_path / "reader_tf2"
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="")
  proc = subprocess.run(
      [sys.executable, "-m", "realm_tf.launch.convert_checkpoint", "--format=tf1",
       f"--input={path}", f"--output_dir={out}", "--target=reader", "--num_attention_heads=4"],
      capture_output=True, text=True, env=env, timeout=240, check=False)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert "Converted" in proc.stdout
  with open(out / convert.CONFIG_NAME) as f:
    config = json.load(f)
  assert config["span_hidden_size"] == SPAN and config["checkpoint_keys"] == ["reader"]
  assert config["encoder_config"]["num_attention_heads"] == 4

  reader = tf1_bert.ReaderWeights(SMALL, span_hidden_size=SPAN)
  mapping.ensure_encoder_built(reader.encoder)
  tf1_bert.build_span_head(reader.span_head, SMALL.hidden_size)
  tf.train.Checkpoint(reader=reader).read(str(out / "ckpt")).assert_consumed()
  _assert_encoder_equals(reader.encoder, orqa, "reader/module/")
  np.testing.assert_array_equal(reader.span_head.layer_norm.gamma.numpy(),
                                orqa["reader/layer_normalization/gamma"])

  # Same output directory again: refused, the published one is kept.
  with pytest.raises(FileExistsError, match="already exists"):
    convert.convert_checkpoint("tf1", path, str(out), "reader", num_attention_heads=4)
  assert (out / "ckpt.index").exists()


def test_name_map_lists_original_names_for_every_variable():
  reader = tf1_bert.ReaderWeights(SMALL, span_hidden_size=SPAN)
  mapping.ensure_encoder_built(reader.encoder)
  rules = (tf1_bert.bert_rules(reader.encoder, "reader/module/")
           + tf1_bert.span_head_rules(reader.span_head, SMALL.hidden_size))
  names = mapping.name_map(rules)
  assert set(orqa_arrays()) - set(names) == {"global_step"} | {
      n for n in orqa_arrays() if n.startswith(("module/", "reader/module/cls/"))}
  assert [v.name for v in names["reader/dense/kernel"]] == [
      reader.span_head.start_dense.kernel.name, reader.span_head.end_dense.kernel.name]
  q = names["reader/module/bert/encoder/layer_1/attention/self/query/kernel"][0]
  assert q.shape == (SMALL.hidden_size, 4, SMALL.hidden_size // 4)
  covered = {id(v) for vs in names.values() for v in vs}
  assert all(id(v) in covered for v in reader.encoder.variables)
