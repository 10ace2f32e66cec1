"""Tests for realm_tf.export.components: answer selection, the block table, publishing, op checks,
and the component exports (query/doc embedder, searcher, reader) reloaded in a fresh process."""
import os

import numpy as np
import pytest
import tensorflow as tf

from realm_tf.export import components
from realm_tf.export import testing as ex_testing
from realm_tf.export import warmup
from realm_tf.text import RealmTokenizer

TEXTS = ["Zürich lies on the Limmat river.", "Paris is the capital of France.",
         "The Danube flows to the Black Sea."]


@pytest.fixture(scope="module")
def tokenizer():
  return RealmTokenizer()


@pytest.fixture(scope="module")
def table(tokenizer):
  ids = tokenizer.tokenize(TEXTS).to_list()
  return components.BlockTable(np.array([30, 10, 20]), ["Zürich", "Paris", "Danube"], TEXTS, ids,
                               tokenizer)


def _pieces(tokenizer, text):
  ids, starts, limits = tokenizer.tokenize_with_offsets([text])
  return (ids.to_list()[0], starts.to_list()[0], limits.to_list()[0])


def test_block_table_maps_ids_and_offsets(table, tokenizer):
  rows = table.rows_for_block_ids(tf.constant([[20, 30], [10, 10]], tf.int64)).numpy()
  np.testing.assert_array_equal(rows, [[2, 0], [1, 1]])
  blocks = table.gather(tf.constant([[0, 2]]))
  ids, starts, limits = _pieces(tokenizer, TEXTS[0])
  n = len(ids)
  assert blocks["body_length"].numpy().tolist() == [[n, len(_pieces(tokenizer, TEXTS[2])[0])]]
  np.testing.assert_array_equal(blocks["body_ids"].numpy()[0, 0, :n], ids)
  np.testing.assert_array_equal(blocks["starts"].numpy()[0, 0, :n], starts)
  np.testing.assert_array_equal(blocks["limits"].numpy()[0, 0, :n], limits)
  assert blocks["texts"].numpy()[0, 1].decode() == TEXTS[2]
  assert blocks["titles"].numpy()[0, 0].decode() == "Zürich"
  assert blocks["block_ids"].numpy().tolist() == [[30, 20]]
  # The ü is two bytes: "lies" starts at byte 7, not character 7.
  assert starts[1] == len("Zürich".encode("utf-8")) + 1 == 8


def test_block_table_rejects_unknown_block_id(table):
  with pytest.raises(tf.errors.InvalidArgumentError, match="not in the exported corpus"):
    table.rows_for_block_ids(tf.constant([10, 99], tf.int64))


def test_block_table_rejects_wordpieces_that_do_not_match_text(tokenizer):
  ids = tokenizer.tokenize(TEXTS).to_list()
  ids[1] = ids[1][:-1]
  with pytest.raises(components.ServingExportError, match="Block 10 .row 1."):
    components.BlockTable(np.array([30, 10, 20]), ["a", "b", "c"], TEXTS, ids, tokenizer)
  with pytest.raises(components.ServingExportError, match="duplicate"):
    components.BlockTable(np.array([1, 1, 2]), ["a", "b", "c"], TEXTS, None, tokenizer)


def test_text_blocks_equal_table_blocks(table, tokenizer):
  from_table = table.gather(tf.constant([[1, 0], [2, 1]]))
  from_text = components.text_blocks(tokenizer, [[TEXTS[1], TEXTS[0]], [TEXTS[2], TEXTS[1]]])
  for key in ("body_ids", "body_length", "starts", "limits", "texts"):
    np.testing.assert_array_equal(from_table[key].numpy(), from_text[key].numpy(), err_msg=key)


def _grid(b, k, t, w, spans):
  """Span logits [b, k, t, w] at -1e9 except `spans` {(b, k, start, end): logit}."""
  logits = np.full([b, k, t, w], components.NEG_INF, np.float32)
  for (i, j, s, e), v in spans.items():
    logits[i, j, s, e - s] = v
  return tf.constant(logits)


def test_select_answers_text_probability_dedup(table, tokenizer):
  blocks = table.gather(tf.constant([[0, 1]]))
  offset = tf.constant([[3, 3]])  # `[CLS] q q [SEP]`: bodies start at reader position 3
  logits = _grid(1, 2, 20, 4, {
      (0, 1, 3, 3): 5.0,   # block 1, piece 0: "Paris"
      (0, 0, 3, 4): 4.5,   # block 0, pieces 0..1: "Zürich lies" (byte offsets, ü is 2 bytes)
      (0, 1, 6, 6): 3.0,   # block 1, piece 3: "capital"
  })
  out = components.select_answers(logits, offset, blocks, num_answers=4, max_candidates=6)
  _, starts, limits = _pieces(tokenizer, TEXTS[0])
  expected_z = TEXTS[0].encode()[starts[0]:limits[1]].decode()
  assert expected_z.startswith("Zürich")
  answers = [a.decode() for a in out["answers"].numpy()[0]]
  assert answers == ["Paris", expected_z, "capital", ""]
  probs = out["probabilities"].numpy()[0]
  norm = np.log(np.exp(5.0) + np.exp(4.5) + np.exp(3.0))
  np.testing.assert_allclose(probs[:3], np.exp(np.array([5.0, 4.5, 3.0]) - norm), rtol=1e-5)
  assert probs[3] == 0.0
  assert out["answer_block_index"].numpy()[0].tolist() == [1, 0, 1, -1]
  np.testing.assert_allclose(out["answer_scores"].numpy()[0, :3], [5.0, 4.5, 3.0])


def test_select_answers_drops_repeated_strings(table):
  blocks = table.gather(tf.constant([[1, 1]]))  # the same block twice: same spans, same text
  logits = _grid(1, 2, 12, 3, {(0, 0, 3, 3): 2.0, (0, 1, 3, 3): 1.9, (0, 0, 4, 4): 1.0}).numpy()
  out = components.select_answers(tf.constant(logits), tf.constant([[3, 3]]), blocks, 2, 4)
  assert [a.decode() for a in out["answers"].numpy()[0]] == ["Paris", "is"]
  assert out["answer_block_index"].numpy()[0].tolist() == [0, 0]
  with pytest.raises(components.ServingExportError):
    components.select_answers(tf.constant(logits), tf.constant([[3, 3]]), blocks, 5, 4)


def test_select_answers_with_fewer_spans_than_candidates(table):
  blocks = table.gather(tf.constant([[1]]))
  logits = _grid(1, 1, 5, 2, {(0, 0, 3, 4): 0.5})  # 10 cells < 32 candidates
  out = components.select_answers(logits, tf.constant([[3]]), blocks, 3, 32)
  assert [a.decode() for a in out["answers"].numpy()[0]] == ["Paris is", "", ""]
  np.testing.assert_allclose(out["probabilities"].numpy()[0], [1.0, 0.0, 0.0], atol=1e-6)


class _PyFuncModule(tf.Module):

  @tf.function(input_signature=[tf.TensorSpec([None], tf.float32, name="x")])
  def serve(self, x):
    return {"y": tf.py_function(lambda v: v * 2, [x], tf.float32)}


class _PlainModule(tf.Module):

  def __init__(self):
    super().__init__()
    self.w = tf.Variable(3.0)

  @tf.function(input_signature=[tf.TensorSpec([None], tf.float32, name="x")])
  def serve(self, x):
    return {"y": x * self.w}


def test_publish_rejects_py_function_and_leaves_nothing(tmp_path):
  base = str(tmp_path)
  m = _PyFuncModule()
  with pytest.raises(components.ServingExportError, match="EagerPyFunc"):
    components.publish_saved_model(m, base, "pyfunc", 1, {"serving_default": m.serve})
  assert os.listdir(os.path.join(base, "pyfunc")) == []


def test_publish_layout_versions_and_warmup(tmp_path):
  base = str(tmp_path)
  m = _PlainModule()
  req = warmup.requests("plain", [{"x": np.array([1.0, 2.0], np.float32)}])
  path = components.publish_saved_model(m, base, "plain", 3, {"serving_default": m.serve},
                                        warmup_requests=req, info={"note": "x"})
  assert path == os.path.join(base, "plain", "3")
  assert sorted(os.listdir(os.path.join(base, "plain"))) == ["3"]  # no temp dir left
  assert components.read_export_info(path)["note"] == "x"
  assert components.next_version(base, ["plain", "other"]) == 4
  with pytest.raises(components.ServingExportError, match="already exists"):
    components.publish_saved_model(m, base, "plain", 3, {"serving_default": m.serve})
  loaded = tf.saved_model.load(path)
  (out,) = warmup.replay(loaded, warmup.read_warmup_file(path))
  np.testing.assert_allclose(out["y"], [3.0, 6.0])
  ops = components.check_saved_model_ops(path)
  assert "Mul" in ops
  with pytest.raises(components.ServingExportError, match="Mul"):
    components.check_saved_model_ops(path, forbidden_prefixes=("Mul",))


def test_searcher_export_stock_is_exact_and_scann_matches(tmp_path):
  rng = np.random.default_rng(0)
  emb = rng.normal(size=(40, 8)).astype(np.float32)
  ids = rng.permutation(1000)[:40].astype(np.int64)
  q = rng.normal(size=(3, 8)).astype(np.float32)
  exact = np.argsort(-(q @ emb.T), axis=1, kind="stable")[:, :5]
  results = {}
  for variant in ("stock", "scann"):
    name = components.variant_model_name(components.SEARCHER, variant)
    m = components.SearcherModule(emb, ids, k=5, variant=variant)
    path = components.publish_saved_model(
        m, str(tmp_path), name, 1, m.signatures(), options=components.save_options(variant),
        warmup_requests=warmup.requests(name, [{"query_embeddings": q[:1]}]))
    ops = components.check_saved_model_ops(path)
    assert any(op.startswith("Scann") for op in ops) == (variant == "scann")
    loaded = tf.saved_model.load(path)
    for key in ("rows", "block_ids", "scores"):  # batch-major, so servers can batch requests
      spec = loaded.signatures["serving_default"].structured_outputs[key]
      assert spec.shape.as_list() == [None, 5], (variant, key)
    out = loaded.signatures["serving_default"](query_embeddings=tf.constant(q))
    results[variant] = out
    np.testing.assert_array_equal(out["rows"].numpy(), exact, err_msg=variant)
    np.testing.assert_array_equal(out["block_ids"].numpy(), ids[exact], err_msg=variant)
    np.testing.assert_allclose(out["scores"].numpy(),
                               np.take_along_axis(q @ emb.T, exact, axis=1), rtol=1e-4)
    out2 = loaded.signatures["search_k"](query_embeddings=tf.constant(q), k=tf.constant(2))
    np.testing.assert_array_equal(out2["rows"].numpy(), exact[:, :2])
    with pytest.raises(tf.errors.InvalidArgumentError, match="k exceeds"):
      loaded.signatures["search_k"](query_embeddings=tf.constant(q), k=tf.constant(41))
  components.check_saved_model_ops(str(tmp_path / "realm_searcher" / "1"),
                                   forbidden_prefixes=("Scann",))
  assert components.variant_model_name("realm_openqa", "scann") == "realm_openqa_scann"


@pytest.fixture(scope="module")
def micro(tmp_path_factory):
  return ex_testing.build_micro_system(str(tmp_path_factory.mktemp("micro")))


@pytest.fixture(scope="module")
def exported(micro, tmp_path_factory):
  base = str(tmp_path_factory.mktemp("exports"))
  return base, components.export_components(micro.model, micro.tokenizer, base, 1,
                                             variants=("stock", "scann"), bundle=micro.bundle,
                                             searcher_k=4, num_answers=3, max_candidates=8)


@pytest.mark.slow
def test_component_exports_reload_in_fresh_process(micro, exported, tmp_path):
  _, paths = exported
  assert sorted(paths) == ["realm_doc_embedder", "realm_query_embedder", "realm_reader",
                           "realm_searcher", "realm_searcher_scann"]
  model, index = micro.model, micro.model.index
  questions = ex_testing.strings(ex_testing.QUESTIONS[:3])
  q_emb = model.embed_questions({f"query/{k}": v for k, v in _query_features(micro).items()})
  rows = np.array([[0, 5, 7], [3, 2, 1], [11, 4, 6]])
  block_ids = index.block_ids[rows]
  scores = np.array([[2.0, 1.0, 0.5], [0.1, 0.2, 0.3], [0.0, -1.0, 1.0]], np.float32)
  texts = np.array([[index.bodies[r].encode() for r in row] for row in rows], dtype=object)
  titles = ex_testing.strings([str(t) for t in index.titles[:4]])
  bodies = ex_testing.strings([str(t) for t in index.bodies[:4]])
  calls = [
      (paths["realm_query_embedder"], "serving_default", {"questions": questions}, False),
      (paths["realm_doc_embedder"], "serving_default", {"titles": titles, "bodies": bodies}, False),
      (paths["realm_searcher"], "serving_default", {"query_embeddings": q_emb.numpy()}, False),
      (paths["realm_searcher"], "search_k", {"query_embeddings": q_emb.numpy(),
                                             "k": np.array(2, np.int32)}, False),
      (paths["realm_reader"], "read_scored", {"questions": questions, "block_ids": block_ids,
                                              "retrieval_scores": scores}, False),
      (paths["realm_reader"], "read_texts", {"questions": questions, "block_texts": texts}, False),
      (paths["realm_searcher_scann"], "serving_default", {"query_embeddings": q_emb.numpy()},
       True),
  ]
  out = ex_testing.run_in_fresh_process(str(tmp_path), calls)
  # Stock components need only TF + TF.Text ops; nothing is a py_function.
  for i in range(6):
    assert out[i]["unregistered_ops"].tolist() == [""], calls[i][0]
    assert set(out[i]["non_core_ops"]) <= {"FastBertNormalize", "FastWordpieceTokenizeWithOffsets",
                                           ""}, calls[i][0]
  for path in paths.values():
    components.check_saved_model_ops(path)
  assert any(op.startswith("Scann") for op in
             components.check_saved_model_ops(paths["realm_searcher_scann"]))
  # Query embedder = the model's query tower on host-side features.
  np.testing.assert_allclose(out[0]["embeddings"], q_emb.numpy(), atol=1e-5)
  # Doc embedder = the index's own document embeddings (built by the bundle's tower).
  np.testing.assert_allclose(out[1]["embeddings"], index.embeddings_np[:4], atol=1e-4)
  # Searcher = exact MIPS; ScaNN (brute force at this size) agrees.
  exact_rows = np.argsort(-(q_emb.numpy() @ index.embeddings_np.T), axis=1, kind="stable")[:, :4]
  np.testing.assert_array_equal(out[2]["rows"], exact_rows)
  np.testing.assert_array_equal(out[2]["block_ids"], index.block_ids[exact_rows])
  np.testing.assert_array_equal(out[3]["rows"], exact_rows[:, :2])
  np.testing.assert_array_equal(out[6]["block_ids"], out[2]["block_ids"])
  np.testing.assert_allclose(out[6]["scores"], out[2]["scores"], atol=1e-4)
  # Reader by ids (with scores) = the model's predict_spans on the same rows.
  ref = _reference_spans(micro, rows, scores)
  np.testing.assert_array_equal(out[4]["answers"][:, 0], ref["answer"])
  np.testing.assert_allclose(out[4]["probabilities"][:, 0], ref["probability"], atol=1e-5)
  np.testing.assert_array_equal(out[4]["answer_block_index"][:, 0], ref["block_index"])
  # Reading texts = reading the same blocks by id with zero retrieval scores.
  ref0 = _reference_spans(micro, rows, np.zeros_like(scores))
  np.testing.assert_array_equal(out[5]["answers"][:, 0], ref0["answer"])
  np.testing.assert_allclose(out[5]["probabilities"][:, 0], ref0["probability"], atol=1e-5)


def _query_features(micro):
  from realm_tf.openqa import features as features_lib  # pylint: disable=g-import-not-at-top
  featurizer = features_lib.QuestionFeaturizer(micro.model.config.feature_config, micro.tokenizer)
  feats = featurizer.featurize([features_lib.OpenQAExample(str(i), q, ())
                                for i, q in enumerate(ex_testing.QUESTIONS[:3])])
  return {k[len("query/"):]: v for k, v in feats.items() if k.startswith("query/")}


def _reference_spans(micro, rows, scores):
  from realm_tf.openqa import features as features_lib  # pylint: disable=g-import-not-at-top
  model = micro.model
  featurizer = features_lib.QuestionFeaturizer(model.config.feature_config, micro.tokenizer)
  feats = featurizer.featurize([features_lib.OpenQAExample(str(i), q, ())
                                for i, q in enumerate(ex_testing.QUESTIONS[:3])])
  feats = {k: tf.constant(v) for k, v in feats.items()}
  pred = model.predict_spans(feats, rows=tf.constant(rows, tf.int32),
                             retrieval_scores=tf.constant(scores))
  block = pred["block_index"].numpy()
  chosen = rows[np.arange(len(rows)), block]
  texts = [model.index.bodies[r] for r in chosen]
  answer = features_lib.span_text(micro.tokenizer, tf.constant(texts), pred["start_piece"],
                                  pred["end_piece"]).numpy()
  return {"answer": answer, "probability": pred["probability"].numpy(), "block_index": block}


@pytest.mark.slow
def test_reader_rejects_unknown_block_ids(exported):
  base, _ = exported
  loaded = tf.saved_model.load(os.path.join(base, "realm_reader", "1"))
  with pytest.raises(tf.errors.InvalidArgumentError, match="not in the exported corpus"):
    loaded.signatures["serving_default"](questions=tf.constant(["who?"]),
                                         block_ids=tf.constant([[123]], tf.int64))


@pytest.mark.slow
def test_component_warmup_requests_replay(exported):
  _, paths = exported
  for name, path in paths.items():
    reqs = warmup.read_warmup_file(path)
    assert reqs, name
    outs = warmup.replay(tf.saved_model.load(path), reqs)
    assert all(outs), name
