"""Tests for realm_tf.export.components: the component list, up-front refusals, and (slow) the
part exports (query/doc embedder, searcher, reader) of a micro model reloaded in a fresh process."""
import os

import numpy as np
import pytest
import tensorflow as tf

from realm_tf.export import components
from realm_tf.testing import export_models as ex_testing
from realm_tf.export import versioning, warmup

PARTS = ("query_embedder", "doc_embedder", "searcher", "reader")


def test_parse_components():
  assert components.parse_components(["all"]) == components.COMPONENTS
  assert components.parse_components([]) == components.COMPONENTS
  assert components.parse_components(["reader", " openqa", "reader"]) == ("reader", "openqa")
  with pytest.raises(ValueError, match="unknown .'readr'."):
    components.parse_components(["readr"])


def test_model_names_per_variant():
  assert components.model_names(components.COMPONENTS, ("stock", "scann")) == [
      "realm_openqa", "realm_openqa_scann", "realm_query_embedder", "realm_doc_embedder",
      "realm_searcher", "realm_searcher_scann", "realm_reader"]
  assert components.model_names(("searcher", "reader"), ("scann",)) == [
      "realm_searcher_scann", "realm_reader"]


def test_export_refuses_before_writing_anything(tmp_path):
  """Bad requests fail before the model is touched (None here) or anything is written."""
  base = str(tmp_path)
  with pytest.raises(versioning.ServingExportError, match="Unknown components"):
    components.export_components(None, None, base, 1, ["readr"])
  with pytest.raises(versioning.ServingExportError, match="Unknown variant"):
    components.export_components(None, None, base, 1, ["searcher"], ("fast",))
  with pytest.raises(versioning.ServingExportError, match="max_candidates=2 must be >="):
    components.export_components(None, None, base, 1, ["reader"], num_answers=3,
                                 max_candidates=2)
  with pytest.raises(versioning.ServingExportError, match="doc_embedder needs the index bundle"):
    components.export_components(None, None, base, 1, ["doc_embedder"])
  os.makedirs(os.path.join(base, "realm_searcher_scann", "2"))
  with pytest.raises(FileExistsError, match="realm_searcher_scann/2 already exists"):
    components.export_components(None, None, base, 2, ["openqa", "searcher"], ("stock", "scann"))
  assert os.listdir(base) == ["realm_searcher_scann"]


@pytest.fixture(scope="module")
def micro(tmp_path_factory):
  return ex_testing.build_micro_system(str(tmp_path_factory.mktemp("micro")))


@pytest.fixture(scope="module")
def exported(micro, tmp_path_factory):
  base = str(tmp_path_factory.mktemp("exports"))
  return base, components.export_components(micro.model, micro.tokenizer, base, 1, PARTS,
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
  scores = np.array([[2.0, 1.0, 0.5], [0.1, 0.2, 0.3], [0.0, -1.0, 1.0]], np.float32)
  texts = np.array([[index.texts([r])[1][0].encode() for r in row] for row in rows], dtype=object)
  titles = ex_testing.strings(index.texts(range(4))[0])
  bodies = ex_testing.strings(index.texts(range(4))[1])
  calls = [
      (paths["realm_query_embedder"], "serving_default", {"questions": questions}, False),
      (paths["realm_doc_embedder"], "serving_default", {"titles": titles, "bodies": bodies}, False),
      (paths["realm_searcher"], "serving_default", {"query_embeddings": q_emb.numpy()}, False),
      (paths["realm_searcher"], "search_k", {"query_embeddings": q_emb.numpy(),
                                             "k": np.array(2, np.int32)}, False),
      (paths["realm_reader"], "read_scored", {"questions": questions, "block_texts": texts,
                                              "retrieval_scores": scores}, False),
      (paths["realm_reader"], "serving_default", {"questions": questions, "block_texts": texts},
       False),
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
    versioning.check_saved_model_ops(path)
  assert any(op.startswith("Scann") for op in
             versioning.check_saved_model_ops(paths["realm_searcher_scann"]))
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
  # Reader of the blocks' texts (with scores) = the model's predict_spans on the same rows.
  ref = _reference_spans(micro, rows, scores)
  np.testing.assert_array_equal(out[4]["answers"][:, 0], ref["answer"])
  np.testing.assert_allclose(out[4]["probabilities"][:, 0], ref["probability"], atol=1e-5)
  np.testing.assert_array_equal(out[4]["answer_block_index"][:, 0], ref["block_index"])
  # Without scores = the same blocks read with zero retrieval scores.
  ref0 = _reference_spans(micro, rows, np.zeros_like(scores))
  np.testing.assert_array_equal(out[5]["answers"][:, 0], ref0["answer"])
  np.testing.assert_allclose(out[5]["probabilities"][:, 0], ref0["probability"], atol=1e-5)


def _query_features(micro):
  from realm_tf.modeling import openqa_features as features_lib  # pylint: disable=g-import-not-at-top
  featurizer = features_lib.QuestionFeaturizer(micro.model.config.feature_config, micro.tokenizer)
  feats = featurizer.featurize([features_lib.OpenQAExample(str(i), q, ())
                                for i, q in enumerate(ex_testing.QUESTIONS[:3])])
  return {k[len("query/"):]: v for k, v in feats.items() if k.startswith("query/")}


def _reference_spans(micro, rows, scores):
  from realm_tf.modeling import openqa_features as features_lib  # pylint: disable=g-import-not-at-top
  model = micro.model
  featurizer = features_lib.QuestionFeaturizer(model.config.feature_config, micro.tokenizer)
  feats = featurizer.featurize([features_lib.OpenQAExample(str(i), q, ())
                                for i, q in enumerate(ex_testing.QUESTIONS[:3])])
  feats = {k: tf.constant(v) for k, v in feats.items()}
  pred = model.predict_spans(feats, rows=tf.constant(rows, tf.int32),
                             retrieval_scores=tf.constant(scores))
  block = pred["block_index"].numpy()
  chosen = rows[np.arange(len(rows)), block]
  texts = [model.index.texts([r])[1][0] for r in chosen]
  answer = features_lib.span_text(micro.tokenizer, tf.constant(texts), pred["start_piece"],
                                  pred["end_piece"]).numpy()
  return {"answer": answer, "probability": pred["probability"].numpy(), "block_index": block}


@pytest.mark.slow
def test_only_realm_openqa_holds_the_corpus(micro, exported, tmp_path):
  """The part models hold no block text: exporting every component keeps one corpus copy."""
  _, paths = exported
  openqa_path = components.export_components(
      micro.model, micro.tokenizer, str(tmp_path), 1, ["openqa"])["realm_openqa"]
  text = micro.model.index.texts(range(micro.model.index.size))[1][0].encode()
  for name, path in dict(paths, realm_openqa=openqa_path).items():
    data = b""
    for f in os.listdir(os.path.join(path, "variables")):
      with open(os.path.join(path, "variables", f), "rb") as fh:
        data += fh.read()
    assert (text in data) == (name == "realm_openqa"), name


@pytest.mark.slow
def test_component_warmup_requests_replay(exported):
  _, paths = exported
  for name, path in paths.items():
    reqs = warmup.read_warmup_file(path)
    assert reqs, name
    outs = warmup.replay(tf.saved_model.load(path), reqs)
    assert all(outs), name
