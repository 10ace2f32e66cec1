"""Tests for the host query embedder's precision rule and the query tower rebuilt in a dtype."""
import numpy as np
import pytest
import tensorflow as tf

from realm_tf.retrieval import host_precision as hp
from realm_tf.testing import retrieval_fixtures as testing

BF16_HOST = frozenset({"avx2", "avx512f", "avx512_bf16"})
AMX_HOST = frozenset({"avx2", "avx512f", "amx_bf16", "amx_tile"})
PLAIN_HOST = frozenset({"avx2", "avx512f", "fma"})


@pytest.mark.parametrize("requested,trainer,flags,onednn,expected", [
    ("auto", "bfloat16", BF16_HOST, True, "bfloat16"),
    ("auto", "bfloat16", AMX_HOST, True, "bfloat16"),
    ("auto", "bfloat16", PLAIN_HOST, True, "float32"),     # emulated bf16: slower
    ("auto", "bfloat16", BF16_HOST, False, "float32"),     # oneDNN off: Eigen's bf16, far slower
    ("auto", "float32", BF16_HOST, True, "float32"),       # an fp32 trainer stays exact
    ("auto", "float16", BF16_HOST, True, "float32"),
    ("float32", "bfloat16", BF16_HOST, True, "float32"),
    ("bfloat16", "float32", PLAIN_HOST, False, "bfloat16"),
])
def test_resolve_query_dtype(requested, trainer, flags, onednn, expected):
  assert hp.resolve_query_dtype(requested, trainer, flags, onednn) == expected


def test_resolve_rejects_an_unknown_dtype():
  with pytest.raises(ValueError, match="query_dtype must be one of .*'half'"):
    hp.resolve_query_dtype("half", "float32")


def test_cpu_flags_and_onednn(tmp_path, monkeypatch):
  info = tmp_path / "cpuinfo"
  info.write_text("processor\t: 0\nflags\t\t: fpu avx2 avx512_bf16\n\nprocessor\t: 1\n"
                  "flags\t\t: fpu\n")
  assert hp.cpu_flags(str(info)) == {"fpu", "avx2", "avx512_bf16"}
  assert hp.cpu_flags(str(tmp_path / "missing")) == frozenset()
  monkeypatch.delenv("TF_ENABLE_ONEDNN_OPTS", raising=False)
  monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "avx512_core")  # oneDNN held below its bf16 code
  assert not hp.native_bf16(BF16_HOST)
  monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX512_CORE_BF16")
  assert hp.native_bf16(BF16_HOST) == hp.onednn_enabled()
  monkeypatch.setenv("TF_ENABLE_ONEDNN_OPTS", "0")
  assert not hp.onednn_enabled()
  assert not hp.native_bf16(BF16_HOST)


def test_query_tower_in_copies_the_weights_in_the_asked_dtype():
  with hp.keras_policy("mixed_bfloat16"):
    trained = testing.make_retriever(seed=3)
  assert hp.compute_dtype(trained) == "bfloat16"
  assert hp.query_tower_in(trained, "bfloat16") is trained
  fp32 = hp.query_tower_in(trained, "float32")
  assert hp.compute_dtype(fp32) == "float32" and not fp32.doc_encoder.built
  for a, b in zip(hp.query_variables(trained), hp.query_variables(fp32)):
    np.testing.assert_array_equal(a.numpy(), b.numpy())
  ids = tf.random.stateless_uniform([4, testing.QUERY_LEN], [5, 0], 1000, 30000, tf.int32)
  feats = {"input_word_ids": ids, "input_mask": tf.ones_like(ids),
           "input_type_ids": tf.zeros_like(ids)}
  out32 = fp32.embed_queries(feats)
  out16 = trained.embed_queries(feats)
  assert (out32.dtype, out16.dtype) == (tf.float32, tf.bfloat16)
  # The same tower: bfloat16 rounding apart (embeddings are LayerNorm'ed, entries of order 1).
  np.testing.assert_allclose(out32.numpy(), tf.cast(out16, tf.float32).numpy(), atol=0.1)
  with pytest.raises(ValueError, match="dtype must be one of"):
    hp.query_tower_in(trained, "int8")
