"""Tests for realm_openqa: both variants reloaded in a fresh process answer as the model does.

Slow (a micro model is built, two full open-QA graphs traced and saved, and a second interpreter
loads them); tests/test_serving_e2e.py covers the same exports over gRPC in the default run.
"""
import os

import numpy as np
import pytest
import tensorflow as tf

from realm_tf.export import openqa, versioning, warmup
from realm_tf.testing import export_models as ex_testing

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def system(tmp_path_factory):
  return ex_testing.build_micro_system(str(tmp_path_factory.mktemp("micro")))


@pytest.fixture(scope="module")
def exported(system, tmp_path_factory):
  base = str(tmp_path_factory.mktemp("exports"))
  paths = openqa.export_openqa(system.model, system.tokenizer, base, 1, ("stock", "scann"),
                               bundle=system.bundle, num_answers=3, max_candidates=10)
  return base, paths


def test_openqa_variants_in_fresh_process_equal_in_process_model(system, exported, tmp_path):
  _, paths = exported
  assert sorted(paths) == ["realm_openqa", "realm_openqa_scann"]
  questions = list(ex_testing.QUESTIONS)
  ref = openqa.in_process_answers(system.model, system.tokenizer, questions)
  feeds = {"questions": ex_testing.strings(questions)}
  index = system.model.index
  ids = index.block_ids[[[3, 0], [11, 3]]]
  stock, scann, blocks = ex_testing.run_in_fresh_process(str(tmp_path), [
      (paths["realm_openqa"], "serving_default", feeds, False),
      (paths["realm_openqa_scann"], "serving_default", feeds, True),
      (paths["realm_openqa"], "blocks", {"block_ids": ids}, False)])
  # `blocks`: the titles and texts of block ids, for the part models.
  assert [t.decode() for t in blocks["titles"].ravel()] == index.texts([3, 0, 11, 3])[0]
  assert [t.decode() for t in blocks["texts"].ravel()] == index.texts([3, 0, 11, 3])[1]
  # The stock variant needs nothing beyond TensorFlow + TF.Text; neither has a py_function.
  assert stock["unregistered_ops"].tolist() == [""]
  # Beyond core TF only the tokenizer's TF.Text ops (in tensorflow_model_server since 2.12).
  assert stock["non_core_ops"].tolist() == ["FastBertNormalize",
                                            "FastWordpieceTokenizeWithOffsets", ""]
  assert scann["unregistered_ops"].tolist() == [""]
  stock_ops = versioning.check_saved_model_ops(paths["realm_openqa"], ("Scann",))
  assert {"FastWordpieceTokenizeWithOffsets", "MatMul", "TopKV2"} <= set(stock_ops)
  scann_ops = versioning.check_saved_model_ops(paths["realm_openqa_scann"])
  assert {"Scann>ScannSearchBatched", "Scann>TensorsToScann"} <= set(scann_ops)
  k = system.model.reader_beam_size
  for out in (stock, scann):
    assert out["answers"].shape == (5, 3) and out["evidence_block_ids"].shape == (5, k)
    np.testing.assert_array_equal(out["answers"][:, 0], ref["answer"])
    np.testing.assert_allclose(out["probabilities"][:, 0], ref["probability"], atol=1e-5)
    np.testing.assert_array_equal(out["evidence_block_ids"], ref["evidence_block_ids"])
    np.testing.assert_allclose(out["evidence_scores"], ref["evidence_scores"], atol=1e-4)
    rows = {int(b): i for i, b in enumerate(index.block_ids)}
    for i in range(5):
      for j in range(k):
        r = rows[int(out["evidence_block_ids"][i, j])]
        assert out["evidence_titles"][i, j].decode() == index.texts([r])[0][0]
        assert out["evidence_texts"][i, j].decode() == index.texts([r])[1][0]
      answers = [a for a in out["answers"][i] if a]
      assert len(set(answers)) == len(answers)  # distinct strings
      assert np.all(np.diff(out["probabilities"][i]) <= 1e-7)  # best first
      for a, blk, bid in zip(out["answers"][i], out["answer_block_index"][i],
                             out["answer_block_ids"][i]):
        assert a in out["evidence_texts"][i, blk]  # cut out of its evidence text
        assert bid == out["evidence_block_ids"][i, blk]


def test_openqa_rows_do_not_depend_on_batch(exported):
  """Server-side batching concatenates requests, so a row's answer must not depend on others."""
  _, paths = exported
  fn = tf.saved_model.load(paths["realm_openqa"]).signatures["serving_default"]
  questions = list(ex_testing.QUESTIONS)
  batch = fn(questions=tf.constant(questions))
  for i, q in enumerate(questions[:3]):
    one = fn(questions=tf.constant([q]))
    np.testing.assert_array_equal(one["answers"].numpy()[0], batch["answers"].numpy()[i])
    np.testing.assert_allclose(one["probabilities"].numpy()[0], batch["probabilities"].numpy()[i],
                               atol=1e-5)


def test_blocks_rejects_unknown_block_ids(exported):
  _, paths = exported
  fn = tf.saved_model.load(paths["realm_openqa"]).signatures["blocks"]
  with pytest.raises(tf.errors.InvalidArgumentError, match="not in the exported corpus"):
    fn(block_ids=tf.constant([[123]], tf.int64))


def test_openqa_export_info_and_warmup(exported):
  base, paths = exported
  info = versioning.read_export_info(paths["realm_openqa_scann"])
  assert info["variant"] == "scann" and info["model_name"] == "realm_openqa_scann"
  assert info["num_answers"] == 3 and info["index_version"] >= 1
  reqs = warmup.read_warmup_file(paths["realm_openqa"])
  assert [r.inputs["questions"].tensor_shape.dim[0].size for r in reqs[:2]] == [
      1, len(warmup.DEFAULT_QUESTIONS)]
  assert reqs[2].model_spec.signature_name == "blocks"
  assert versioning.next_version(base, ["realm_openqa"]) == 2
  assert sorted(os.listdir(os.path.join(base, "realm_openqa"))) == ["1"]


def test_empty_questions_are_answered_per_row(system, exported):
  """An empty question gets no answer and status "empty_question"; its batch is answered."""
  _, paths = exported
  questions = list(ex_testing.QUESTIONS)
  batch = [questions[0], "", questions[2], " \t\u200b", questions[1]]
  ref = openqa.in_process_answers(system.model, system.tokenizer, questions[:3])
  fn = tf.saved_model.load(paths["realm_openqa"]).signatures["serving_default"]
  assert fn.structured_outputs["status"].shape.as_list() == [None]
  out = {k: v.numpy() for k, v in fn(questions=tf.constant(batch)).items()}
  assert out["status"].tolist() == [b"ok", b"empty_question", b"ok", b"empty_question", b"ok"]
  for row, i in ((0, 0), (2, 2), (4, 1)):
    assert out["answers"][row, 0] == ref["answer"][i]
    np.testing.assert_allclose(out["probabilities"][row, 0], ref["probability"][i], atol=1e-5)
    np.testing.assert_array_equal(out["evidence_block_ids"][row], ref["evidence_block_ids"][i])
  for row in (1, 3):
    assert out["answers"][row].tolist() == [b""] * 3
    assert np.all(out["probabilities"][row] == 0) and np.all(out["answer_block_ids"][row] == -1)
    assert np.all(out["answer_block_index"][row] == -1)
    assert np.all(out["evidence_block_ids"][row] == -1)
    assert out["evidence_texts"][row].tolist() == [b""] * out["evidence_texts"].shape[1]
    assert np.all(out["evidence_scores"][row] == 0)
