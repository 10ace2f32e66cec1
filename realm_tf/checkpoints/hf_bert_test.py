"""Tests for the Hugging Face BERT converter, against an independent NumPy BERT forward pass."""
import json
import os

import numpy as np
import pytest
import tensorflow as tf

from realm_tf.checkpoints import convert
from realm_tf.checkpoints import hf_bert
from realm_tf.checkpoints.mapping import CheckpointMismatchError
from realm_tf.modeling.encoder_config import EncoderConfig, build_encoder
from realm_tf.modeling.layers import MaskedLMHead
from realm_tf.testing.bert_checkpoints import (SMALL, make_hf_arrays, numpy_bert, numpy_mlm_logits,
                                                  params_from_hf, small_inputs, write_hf_dir)
from realm_tf.text import RealmTokenizer, pack_pair, pack_query

SENTENCES = [
    "The Eiffel Tower was completed in 1889 for the World's Fair in Paris.",
    "Marie Curie won Nobel prizes in physics and chemistry.",
    "Café owners in Zürich said the naïve plan failed.",
]


# ------------------------------------------------------------------------------------------------
# Independent NumPy reference (float64). Kernels are [in, out].


def _run(encoder, ids, mask, types):
  out = encoder({"input_word_ids": ids, "input_mask": mask, "input_type_ids": types})
  return out["sequence_output"].numpy(), out["pooled_output"].numpy()


# ------------------------------------------------------------------------------------------------

def test_synthetic_checkpoint_matches_numpy_reference_with_mlm_head():
  arrays = make_hf_arrays(SMALL, prefix="bert.", with_head=True)
  encoder = build_encoder(SMALL)
  head = MaskedLMHead(encoder.get_embedding_table, name="mlm_head")
  result = hf_bert.load_hf_bert_into_encoder(arrays, encoder, head)
  assert result.prefix == "bert."
  assert result.mlm_head_loaded
  ids, mask, types = small_inputs(SMALL)
  seq, pooled = _run(encoder, ids, mask, types)
  params = params_from_hf(arrays, "bert.", SMALL.num_layers)
  ref_seq, ref_pooled = numpy_bert(params, ids, mask, types, SMALL.num_attention_heads)
  valid = mask.astype(bool)
  np.testing.assert_allclose(seq[valid], ref_seq[valid], atol=1e-4)
  np.testing.assert_allclose(pooled, ref_pooled, atol=1e-4)
  head_params = {"dense": (arrays["cls.predictions.transform.dense.weight"].T.astype(np.float64),
                           arrays["cls.predictions.transform.dense.bias"]),
                 "ln": (arrays["cls.predictions.transform.LayerNorm.weight"],
                        arrays["cls.predictions.transform.LayerNorm.bias"]),
                 "bias": arrays["cls.predictions.bias"]}
  logits = head(tf.constant(seq)).numpy()
  ref_logits = numpy_mlm_logits(params, head_params, ref_seq)
  np.testing.assert_allclose(logits[valid], ref_logits[valid], atol=2e-4)
  # The head's output matrix is the encoder's table itself, now holding the loaded embeddings.
  assert head.embedding_table is encoder.get_embedding_table()
  np.testing.assert_array_equal(head.embedding_table.numpy(),
                                arrays["bert.embeddings.word_embeddings.weight"])


def test_bad_inputs_name_the_variable_and_leave_model_untouched():
  arrays = make_hf_arrays(SMALL)
  encoder = build_encoder(SMALL)
  hf_bert.load_hf_bert_into_encoder(arrays, encoder)
  before = [v.numpy().copy() for v in encoder.variables]

  other = make_hf_arrays(SMALL, seed=5)
  missing = dict(other)
  del missing["encoder.layer.1.attention.self.key.bias"]
  with pytest.raises(CheckpointMismatchError, match=r"missing[\s\S]*encoder\.layer\.1\.attention"
                     r"\.self\.key\.bias"):
    hf_bert.load_hf_bert_into_encoder(missing, encoder)

  extra = dict(other)
  extra["encoder.layer.0.attention.self.rotary.weight"] = np.zeros([3, 3], np.float32)
  with pytest.raises(CheckpointMismatchError,
                     match=r"used by no model weight[\s\S]*rotary\.weight \(3, 3\)"):
    hf_bert.load_hf_bert_into_encoder(extra, encoder)

  bad_shape = dict(other)
  bad_shape["encoder.layer.0.intermediate.dense.weight"] = np.zeros([50, 32], np.float32)
  with pytest.raises(CheckpointMismatchError) as info:
    hf_bert.load_hf_bert_into_encoder(bad_shape, encoder)
  msg = str(info.value)
  assert "encoder.layer.0.intermediate.dense.weight" in msg
  assert "(50, 32)" in msg and "(48, 32)" in msg

  # Nothing was assigned by the failed loads.
  for v, old in zip(encoder.variables, before):
    np.testing.assert_array_equal(v.numpy(), old)


def test_untied_decoder_is_rejected():
  arrays = make_hf_arrays(SMALL, prefix="bert.", with_head=True)
  arrays["cls.predictions.decoder.weight"] = arrays["cls.predictions.decoder.weight"] + 1.0
  encoder = build_encoder(SMALL)
  head = MaskedLMHead(encoder.get_embedding_table)
  with pytest.raises(CheckpointMismatchError, match="decoder.weight"):
    hf_bert.load_hf_bert_into_encoder(arrays, encoder, head)


def test_load_hf_config_reads_bert_fields(tmp_path):
  (tmp_path / "config.json").write_text(json.dumps({
      "model_type": "bert", "vocab_size": 97, "hidden_size": 32, "num_hidden_layers": 2,
      "num_attention_heads": 4, "intermediate_size": 48, "hidden_act": "gelu",
      "max_position_embeddings": 40, "type_vocab_size": 2, "hidden_dropout_prob": 0.0}))
  cfg = hf_bert.load_hf_config(str(tmp_path))
  assert cfg == EncoderConfig(vocab_size=97, hidden_size=32, num_layers=2, num_attention_heads=4,
                              intermediate_size=48, max_position_embeddings=40, dropout_rate=0.0)
  (tmp_path / "config.json").write_text(json.dumps({"model_type": "roberta"}))
  with pytest.raises(ValueError, match="roberta"):
    hf_bert.load_hf_config(str(tmp_path))


def test_convert_cli_function_hf_to_retriever_and_encoder(tmp_path):
  arrays = make_hf_arrays(SMALL, prefix="bert.", with_head=True)
  src = str(tmp_path / "hf")
  write_hf_dir(src, SMALL, arrays)
  out = str(tmp_path / "out_encoder")
  result = convert.convert_checkpoint("hf", src, out, "encoder")
  assert result.config["checkpoint_keys"] == ["encoder", "mlm_head"]
  assert sorted(os.listdir(out)) == ["ckpt.data-00000-of-00001", "ckpt.index",
                                     convert.CONFIG_NAME, "vocab.txt"]
  with open(os.path.join(out, convert.CONFIG_NAME)) as f:
    saved = json.load(f)
  assert EncoderConfig.from_dict(saved["encoder_config"]) == SMALL
  # Restore into fresh objects and compare with the source arrays.
  encoder = build_encoder(SMALL)
  head = MaskedLMHead(encoder.get_embedding_table)
  from realm_tf.checkpoints import mapping  # pylint: disable=g-import-not-at-top
  mapping.ensure_encoder_built(encoder)
  mapping.ensure_mlm_head_built(head)
  tf.train.Checkpoint(encoder=encoder, mlm_head=head).read(result.checkpoint_path).assert_consumed()
  np.testing.assert_array_equal(head.output_bias.numpy(), arrays["cls.predictions.bias"])
  ids, mask, types = small_inputs(SMALL)
  seq, _ = _run(encoder, ids, mask, types)
  ref_seq, _ = numpy_bert(params_from_hf(arrays, "bert.", 2), ids, mask, types, 4)
  np.testing.assert_allclose(seq[mask.astype(bool)], ref_seq[mask.astype(bool)], atol=1e-4)

  # Retriever: both towers get the BERT, the projections are fresh and reported as such.
  out_r = str(tmp_path / "out_retriever")
  result = convert.convert_checkpoint("hf", src, out_r, "retriever")
  assert result.config["fresh"] == ["retriever.query_projection", "retriever.doc_projection"]

  # An existing output directory is never replaced without overwrite.
  with pytest.raises(FileExistsError):
    convert.convert_checkpoint("hf", src, out_r, "retriever")


def test_failed_conversion_writes_nothing(tmp_path):
  arrays = make_hf_arrays(SMALL)
  arrays["pooler.dense.weight"] = np.zeros([32, 31], np.float32)
  src = str(tmp_path / "hf")
  write_hf_dir(src, SMALL, arrays)
  out = tmp_path / "out"
  with pytest.raises(CheckpointMismatchError, match=r"pooler\.dense\.weight.*\(32, 31\).*\(32, 32\)"):
    convert.convert_checkpoint("hf", src, str(out), "encoder")
  assert sorted(os.listdir(tmp_path)) == ["hf"]


# ------------------------------------------------------------------------------------------------
# Real weights: all-MiniLM-L6-v2 (installed by `make install`).

MINILM = hf_bert.default_minilm_dir()
needs_minilm = pytest.mark.skipif(
    not os.path.exists(os.path.join(MINILM, "model.safetensors")),
    reason=f"MiniLM weights not installed at {MINILM} (run `make install`)")


@needs_minilm
def test_minilm_config():
  cfg = hf_bert.load_hf_config(MINILM)
  assert (cfg.num_layers, cfg.hidden_size, cfg.num_attention_heads, cfg.intermediate_size,
          cfg.vocab_size) == (6, 384, 12, 1536, 30522)


@needs_minilm
def test_minilm_parity_with_numpy_reference_on_real_sentences():
  cfg = hf_bert.load_hf_config(MINILM)
  encoder = build_encoder(cfg)
  arrays = hf_bert.read_hf_arrays(MINILM)
  result = hf_bert.load_hf_bert_into_encoder(MINILM, encoder)
  assert result.prefix == "" and not result.mlm_head_loaded
  assert len(result.used) == len(arrays) - 1  # all but the position_ids buffer

  tok = RealmTokenizer(os.path.join(MINILM, "vocab.txt"))
  ids = tok.tokenize(SENTENCES)
  packed = pack_query(ids, 24, tok.cls_id, tok.sep_id)
  pair = pack_pair(ids[:1], ids[1:2], 24, tok.cls_id, tok.sep_id)  # exercises segment ids
  inputs = {k: np.concatenate([packed[k].numpy(), pair[k].numpy()]) for k in packed}
  mask = inputs["input_mask"]
  assert mask.sum(1).min() < 24 <= mask.sum(1).max()  # some padding, some full rows
  assert inputs["input_type_ids"].max() == 1
  seq, pooled = _run(encoder, inputs["input_word_ids"], mask, inputs["input_type_ids"])
  params = params_from_hf(arrays, "", cfg.num_layers)
  ref_seq, ref_pooled = numpy_bert(params, inputs["input_word_ids"], mask,
                                   inputs["input_type_ids"], cfg.num_attention_heads)
  valid = mask.astype(bool)
  assert np.abs(seq[valid] - ref_seq[valid]).max() < 1e-4
  assert np.abs(pooled - ref_pooled).max() < 1e-4
  # Sanity: the sentences differ, so do their pooled vectors.
  assert np.abs(pooled[0] - pooled[1]).max() > 1e-2


def test_convert_hf_without_head_to_knowledge_encoder_and_reader(tmp_path):
  arrays = make_hf_arrays(SMALL)  # a plain BertModel: no cls.predictions
  src = str(tmp_path / "hf")
  write_hf_dir(src, SMALL, arrays)
  ke = convert.convert_checkpoint("hf", src, str(tmp_path / "ke"), "knowledge_encoder")
  assert ke.config["fresh"] == ["knowledge_encoder.mlm_head"]
  assert ke.config["checkpoint_keys"] == ["knowledge_encoder"]
  reader = convert.convert_checkpoint("hf", src, str(tmp_path / "reader"), "reader",
                                      span_hidden_size=8)
  assert reader.config["fresh"] == ["reader.span_head"] and reader.config["span_hidden_size"] == 8
  variables = dict(tf.train.list_variables(reader.checkpoint_path))
  key = ("reader/encoder/_embedding_layer/embeddings/.ATTRIBUTES/VARIABLE_VALUE")
  assert variables[key] == [SMALL.vocab_size, SMALL.hidden_size]
  assert variables["reader/span_head/start_dense/kernel/.ATTRIBUTES/VARIABLE_VALUE"] == [32, 8]
  np.testing.assert_array_equal(tf.train.load_variable(reader.checkpoint_path, key),
                                arrays["embeddings.word_embeddings.weight"])


def test_convert_from_and_to_an_object_store(tmp_path):
  # ram:// (TF's in-memory filesystem) stands in for gs://: no open()/os.path call reaches it.
  from realm_tf.io import paths  # pylint: disable=g-import-not-at-top
  arrays = make_hf_arrays(SMALL, prefix="bert.", with_head=True)
  write_hf_dir(str(tmp_path / "hf"), SMALL, arrays)
  root = f"ram://{tmp_path.name}"
  paths.copy_tree(str(tmp_path / "hf"), f"{root}/hf")
  assert hf_bert.load_hf_config(f"{root}/hf") == SMALL
  assert hf_bert.read_hf_tensor_names(f"{root}/hf") == sorted(arrays)  # from the header alone
  result = convert.convert_checkpoint("hf", f"{root}/hf", f"{root}/out", "encoder")
  assert result.output_dir == f"{root}/out" and result.config["input"] == f"{root}/hf"
  assert sorted(tf.io.gfile.listdir(f"{root}/out")) == [
      "ckpt.data-00000-of-00001", "ckpt.index", convert.CONFIG_NAME, "vocab.txt"]
  key = "mlm_head/output_bias/.ATTRIBUTES/VARIABLE_VALUE"
  np.testing.assert_array_equal(paths.checkpoint_reader(result.checkpoint_path).get_tensor(key),
                                arrays["cls.predictions.bias"])
  with pytest.raises(FileExistsError):
    convert.convert_checkpoint("hf", f"{root}/hf", f"{root}/out", "encoder")
  tf.io.gfile.rmtree(root)


def test_tensor_names_of_a_file_that_is_no_safetensors_name_it(tmp_path):
  (tmp_path / "model.safetensors").write_bytes(b"\x05\x00\x00\x00\x00\x00\x00\x00{oops")
  with pytest.raises(ValueError, match="Cannot read safetensors file .*model.safetensors"):
    hf_bert.read_hf_tensor_names(str(tmp_path))
