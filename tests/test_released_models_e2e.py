"""End to end: Google's released ORQA/REALM models, as released → import → convert → evaluate →
export → serve, against ORQA's predict written in NumPy (realm_tf/testing/orqa_reference.py).

One module fixture builds the whole chain over a tiny release written under the released names
(BERT-tiny shapes, 20 blocks; realm_tf/testing/orqa_release_models.py): H1's import (ScaNN as
ORQA) into a work dir, `convert_checkpoint --target=openqa` into `<work_dir>/finetune`, the
model loaded once from that model dir (`finetune.load_finetuned`, as the evaluation and export
stages load it) and scored by the evaluation library on the questions, then both serving exports
(`realm_openqa`: exact search; `realm_openqa_scann`: ScaNN) behind one `python -m serving.server`
process, started first so that its start-up overlaps the chain. The CLIs of these stages have their own
tests (launch/*_test.py); here they are called as libraries to keep to one TensorFlow process
beside the server.

Tolerances: retrieval logits (inner products near 100, float32 here, float64 in the reference)
to 2e-3; every discrete choice (the 5 rows, the block read, the span's wordpieces) exactly: the
reference's best span beats its runner-up by more than 0.02 for every question (checked), far
above float32 noise. Answers are ORQA's strings (the span's original tokens joined by spaces,
whole words: realm_tf/openqa/answer_text.py), compared exactly; the release's answers include a
punctuated span ("north - east") and a span starting inside a word, where ORQA's string differs
from the text between the span's wordpieces.

The tiny release makes the two classic featurisation defects visible: without the retriever
logit, or with the title read before the body, the reference's own answers change, and
realm_tf's answers are the reference's and not the defective reference's
(`test_realm_tf_answers_as_orqa_not_as_orqa_with_a_featurisation_defect`); realm_tf run without
the retriever logit answers as the reference without it.

ScaNN: the `realm_openqa_scann` export of an imported release serves the import's own
searcher (ORQA's settings), recorded in its realm_export.json and saved whole (codebook, hashing
codes); `evaluate`'s ScaNN search is the same searcher. At 20 rows (one leaf) ScaNN's answers
equal exact search's; the slow test at 2,000 rows (125 leaves, 100 searched) checks that the
served top 5 equals the bundle searcher's for every question while it differs from exact search
for some.
"""
import json
import os
import sys

import numpy as np
import pytest

from realm_tf.testing import orqa_reference as reference
from realm_tf.testing import orqa_release_models as release

MODELS = ("realm_openqa", "realm_openqa_scann")
LOGIT_ATOL = 2e-3
_SERVER_MAIN = ("import tensorflow_text, runpy; "
                "runpy.run_module('serving.server', run_name='__main__', alter_sys=True)")


def _start_server(work: str, base: str):
  """One model server process for both exports, started before they exist: it imports
  TensorFlow while the chain runs and loads each export when its version directory appears
  (published by rename, polled every 0.5 s). Not waited for."""
  from serving import subprocess_server
  config = os.path.join(work, "models.config")
  with open(config, "w", encoding="utf-8") as f:
    f.write("model_config_list {\n" + "".join(
        f'  config {{ name: "{m}" base_path: "{os.path.join(base, m)}" '
        'model_platform: "tensorflow" }\n' for m in MODELS) + "}\n")
  port = subprocess_server.free_port()
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="")
  env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
  return subprocess_server.ServerProcess(
      [sys.executable, "-c", _SERVER_MAIN, f"--port={port}", f"--model_config_file={config}",
       "--file_system_poll_wait_seconds=0.5", "--max_num_load_retries=0"], port,
      os.path.join(work, "server.log"), env=env)


@pytest.fixture(scope="module")
def chain(tmp_path_factory):
  """The tiny release, imported, converted, evaluated and exported, the model server started;
  the reference's answers."""
  root = str(tmp_path_factory.mktemp("released"))
  work = os.path.join(root, "work")
  base = os.path.join(work, "serving")
  os.makedirs(work)
  server = _start_server(work, base)
  try:
    yield _build_chain(root, work, base, server)
  finally:
    server.stop()


def _build_chain(root: str, work: str, base: str, server):
  """`chain`'s steps (see the module docstring)."""
  from realm_tf.checkpoints import convert
  from realm_tf.modeling.openqa_features import OpenQAExample
  from realm_tf.release import importer
  from realm_tf.release import orqa_model
  from realm_tf.stages import evaluate as evaluate_lib
  from realm_tf.stages import export_job
  from realm_tf.stages import finetune
  from realm_tf.text import RealmTokenizer
  from realm_tf.text.tokenizer import default_vocab_path
  rel = release.write_release(os.path.join(root, "release"))
  importer.run(importer.ImportConfig(
      blocks=os.path.join(rel.blocks_dir, "blocks.tfr"),
      titles=os.path.join(rel.blocks_dir, "titles.tfr"), embedder=rel.embedder_dir,
      work_dir=work, searcher="scann", num_attention_heads=release.HEADS))
  model_dir = os.path.join(work, "finetune")
  converted = orqa_model.run(convert.ConvertConfig(
      format="tf1", input=rel.finetuned_checkpoint, output_dir=model_dir, target="openqa",
      work_dir=work))
  tok = reference.WordpieceTokenizer(default_vocab_path())
  refs = [reference.predict(rel.finetuned_weights, rel.block_emb, rel.bodies, tok, q,
                            release.HEADS) for q in release.QUESTIONS]
  model, _, bundle = finetune.load_finetuned(model_dir)
  # Gold answers: ORQA's own strings, so EM 1.0 needs realm_tf's answers to normalise to them.
  examples = [OpenQAExample(f"q{i}", q, (refs[i].answer,))
              for i, q in enumerate(release.QUESTIONS)]
  predictions_path = os.path.join(root, "eval.jsonl")
  metrics = evaluate_lib.evaluate(model, examples, recall_ks=[5],
                                  predictions_path=predictions_path)
  with open(predictions_path, encoding="utf-8") as f:
    predictions = [json.loads(line) for line in f]
  exported = export_job.run_export(model, RealmTokenizer(), bundle, base, components=["openqa"],
                                   variant="both", num_answers=1, max_candidates=5)
  return {"release": rel, "work": work, "model_dir": model_dir, "converted": converted,
          "refs": refs, "tokenizer": tok, "metrics": metrics, "predictions": predictions,
          "exported": exported, "model": model, "block_ids": bundle.block_ids, "server": server}


def test_conversion_records_orqa_featurization_and_skips_optimizer(chain):
  with open(os.path.join(chain["model_dir"], "config.json"), encoding="utf-8") as f:
    config = json.load(f)
  model = config["model"]
  assert model["featurization"] == "orqa"
  assert model["reader"]["seq_length"] == 320 and model["reader"]["query_length"] == 320
  assert model["reader"]["max_span_width"] == 10 and model["reader_beam_size"] == 5
  assert model["reader"]["encoder"]["hidden_act"] == "gelu_approximate"
  assert model["retriever"]["encoder"]["hidden_act"] == "gelu_approximate"
  assert config["converted_from"]["global_step"] == release.GLOBAL_STEP
  # Every weight of both BERTs, both projections and the span head; no slot, no global_step.
  n_weights = len(chain["release"].finetuned_weights) - sum(
      "/cls/" in n for n in chain["release"].finetuned_weights)
  assert chain["converted"].config["num_source_variables_used"] == n_weights
  assert os.path.basename(chain["converted"].checkpoint_path) == f"ckpt-{release.GLOBAL_STEP}"
  assert sorted(chain["exported"]) == sorted(MODELS)


def test_imported_query_tower_embeds_as_the_released_embedder(chain):
  """The import's query tower is REALM's embedder as Google's TF1 BERT computes it (tanh GELU):
  its embeddings equal the reference's to 1e-5 (exact GELU is ~1e-3 off)."""
  import tensorflow as tf
  from realm_tf.retrieval import bundle as bundle_lib
  from realm_tf.text import RealmTokenizer, pack_query
  rel, tok = chain["release"], chain["tokenizer"]
  embedder = bundle_lib.latest(os.path.join(chain["work"], "index")).query_embedder
  realm_tok = RealmTokenizer()
  packed = pack_query(realm_tok.tokenize(list(release.QUESTIONS)), embedder.query_seq_length,
                      realm_tok.cls_id, realm_tok.sep_id)
  got = embedder.embed_queries({k: tf.cast(v, tf.int32) for k, v in packed.items()}).numpy()
  for question, row in zip(release.QUESTIONS, got):
    ids = [tok.cls_id] + tok.tokenize(question)["ids"] + [tok.sep_id]
    want = reference.embed(rel.embedder_weights, "module/module/module/", "module/module/", [ids],
                           [[1] * len(ids)], [[0] * len(ids)], release.HEADS)[0]
    np.testing.assert_allclose(row, want, atol=1e-5, err_msg=question)


def _realm_tf_spans(model, retrieval_scores=None):
  """realm_tf's choices for the release's questions, in process: [(row read, start piece, end
  piece)], the rows retrieved [Q, 5], and (given `retrieval_scores` [Q, 5] for those rows) the
  same read with those retrieval logits instead of the model's."""
  import tensorflow as tf
  from realm_tf.modeling.openqa_features import OpenQAExample
  from realm_tf.stages.evaluate import Predictor
  feats = Predictor(model, num_retrieved=5).featurizer.featurize(
      [OpenQAExample(f"q{i}", q, ()) for i, q in enumerate(release.QUESTIONS)])
  feats = {k: tf.constant(v) for k, v in feats.items()
           if k.startswith("query/") or k.startswith("question_")}
  out = model.predict_spans(feats)
  rows = out["rows"].numpy()[:, :5]
  if retrieval_scores is not None:
    out = model.predict_spans(feats, rows=tf.constant(rows, tf.int32),
                              retrieval_scores=tf.constant(retrieval_scores, tf.float32))
  block = out["block_index"].numpy()
  spans = [(int(r[b]), int(s), int(e)) for r, b, s, e in zip(
      rows, block, out["start_piece"].numpy(), out["end_piece"].numpy())]
  return spans, rows


def test_realm_tf_answers_as_orqa_not_as_orqa_with_a_featurisation_defect(chain):
  """realm_tf's chosen block and span equal ORQA's for every question, and differ from ORQA's
  with either classic defect (the retriever logit left out, the title read before the body) for
  at least half of them: a realm_tf with either defect fails here. realm_tf made to read without
  the retriever logit answers exactly as ORQA does without it."""
  rel, tok = chain["release"], chain["tokenizer"]
  for ref in chain["refs"]:  # every choice is far from a tie
    assert ref.span_logit - ref.runner_up_logit > 0.02
    assert np.all(np.diff(ref.retrieval_logits) < -0.1)
  want = [(int(r.rows[r.block_index]), r.start_piece, r.end_piece) for r in chain["refs"]]
  got, rows = _realm_tf_spans(chain["model"])
  assert got == want
  args = (rel.finetuned_weights, rel.block_emb, rel.bodies, tok)
  for defect in ({"add_retriever_logit": False}, {"titles": rel.titles}):
    broken = [reference.predict(*args, q, release.HEADS, **defect) for q in release.QUESTIONS]
    broken = [(int(b.rows[b.block_index]), b.start_piece, b.end_piece) for b in broken]
    assert sum(g != b for g, b in zip(got, broken)) >= len(got) // 2, defect
    if "add_retriever_logit" in defect:
      no_logit, _ = _realm_tf_spans(chain["model"], np.zeros(rows.shape, np.float32))
      assert no_logit == broken


def test_the_answers_exercise_orqa_answer_rule(chain):
  rel, tok = chain["release"], chain["tokenizer"]
  punctuated = mid_word = 0
  for ref in chain["refs"]:
    pieces = tok.tokenize(rel.bodies[ref.rows[ref.block_index]])["pieces"]
    if ref.answer != ref.span_text and ref.answer.replace(" ", "") == ref.span_text.replace(
        " ", ""):
      punctuated += 1  # "north - east" where the text says "north-east"
    if pieces[ref.start_piece].startswith("##"):
      mid_word += 1    # the span starts inside a word: ORQA answers the whole word
      assert ref.answer != ref.span_text and ref.span_text.replace(" ", "") in \
          ref.answer.replace(" ", "")
  assert punctuated >= 1 and mid_word >= 1


def test_evaluate_matches_orqa_reference(chain):
  import tensorflow as tf
  from realm_tf.modeling.openqa_features import OpenQAExample
  from realm_tf.stages.evaluate import Predictor
  block_ids, refs, preds = chain["block_ids"], chain["refs"], chain["predictions"]
  assert len(preds) == len(refs)
  for ref, pred in zip(refs, preds):
    read = [e for e in pred["evidence"] if e["read"]]
    assert [e["block_id"] for e in read] == block_ids[ref.rows].tolist(), pred["question"]
    np.testing.assert_allclose([e["retrieval_score"] for e in read], ref.retrieval_logits,
                               atol=LOGIT_ATOL)
    assert pred["answer_block_rank"] == ref.block_index, pred["question"]
    assert pred["prediction"] == ref.answer, pred["question"]
  assert chain["metrics"]["exact_match"] == 1.0
  # The span's wordpieces and logit, in process.
  model = chain["model"]
  feats = Predictor(model, num_retrieved=5).featurizer.featurize(
      [OpenQAExample(f"q{i}", q, ()) for i, q in enumerate(release.QUESTIONS)])
  out = model.predict_spans({k: tf.constant(v) for k, v in feats.items()
                             if k.startswith("query/") or k.startswith("question_")})
  np.testing.assert_array_equal(out["start_piece"].numpy(), [r.start_piece for r in refs])
  np.testing.assert_array_equal(out["end_piece"].numpy(), [r.end_piece for r in refs])
  np.testing.assert_allclose(out["span_logit"].numpy(), [r.span_logit for r in refs],
                             atol=LOGIT_ATOL)


@pytest.mark.parametrize("model_name", MODELS)
def test_served_answers_match_orqa_reference(chain, model_name):
  from serving import client
  server, block_ids, refs = chain["server"], chain["block_ids"], chain["refs"]
  server.wait_ready(list(MODELS), timeout=240)
  with client.PredictClient(server.address, model_name, timeout=60) as c:
    out = c.predict({"questions": np.array([q.encode() for q in release.QUESTIONS],
                                            dtype=object)})
  np.testing.assert_array_equal(out["evidence_block_ids"],
                                np.stack([block_ids[r.rows] for r in refs]))
  np.testing.assert_allclose(out["evidence_scores"], np.stack([r.retrieval_logits for r in refs]),
                             atol=LOGIT_ATOL)
  assert [a.decode() for a in out["answers"][:, 0]] == [r.answer for r in refs]
  assert out["answer_block_index"][:, 0].tolist() == [r.block_index for r in refs]


def _variable_shapes(saved_model_dir: str):
  """{checkpoint key: shape} of a SavedModel's variables."""
  import tensorflow as tf
  return tf.train.load_checkpoint(os.path.join(saved_model_dir, "variables", "variables")
                                  ).get_variable_to_shape_map()


def _shape_of(shapes, suffix: str):
  """The shape of the one variable whose key ends with `suffix` (None when there is none)."""
  found = [shape for key, shape in shapes.items() if key.endswith(suffix)]
  assert len(found) <= 1, (suffix, found)
  return found[0] if found else None


def test_scann_export_serves_the_imported_searcher_with_orqa_settings(chain):
  """`realm_openqa_scann` holds the import's own ScaNN searcher (ORQA's settings: tree clamped to
  one leaf at 20 rows, asymmetric hashing with 2 dimensions a block, exact rescoring of the k
  it returns) and records it; not a brute-force searcher built for the corpus size."""
  from realm_tf.export import versioning
  from realm_tf.release import importer
  from realm_tf.retrieval import bundle as bundle_lib
  from realm_tf.retrieval import orqa_scann
  n = len(release.DOCUMENTS)
  bundle = bundle_lib.latest(os.path.join(chain["work"], "index"))
  orqa = orqa_scann.scann_config_json(importer.scann_config(importer.ImportConfig(), n).for_rows(n))
  assert (orqa["mode"], orqa["num_leaves"], orqa["num_leaves_to_search"],
          orqa["training_sample_size"], orqa["dimensions_per_block"],
          orqa["anisotropic_quantization_threshold"], orqa["reordering_num_neighbors"],
          orqa["rescoring"]) == ("tree_ah", 1, 1, n, 2, None, 1, "gather")
  assert bundle.manifest[orqa_scann.RELEASE_SCANN_CONFIG] == orqa
  path = chain["exported"]["realm_openqa_scann"]
  scann = versioning.read_export_info(path)["scann"]
  assert scann == {"source": "index_bundle", "settings": "import_release", "bundle": bundle.path,
                   "config": orqa_scann.scann_config_json(bundle.manifest["searcher"]["config"])}
  assert {k: v for k, v in scann["config"].items() if k in orqa} == {
      k: v for k, v in orqa.items() if k in scann["config"]}
  shapes = _variable_shapes(path)
  assert _shape_of(shapes, "state/hashed_dataset/.ATTRIBUTES/VARIABLE_VALUE") == [n, 64]
  assert _shape_of(shapes, "state/ah_codebook/.ATTRIBUTES/VARIABLE_VALUE") == [1]
  assert _shape_of(shapes, "state/serialized_partitioner/.ATTRIBUTES/VARIABLE_VALUE") == [1]
  assert _shape_of(shapes, "mips/searcher/embeddings/.ATTRIBUTES/VARIABLE_VALUE") == [n, 128]
  assert "realm_openqa" in chain["exported"] and "scann" not in versioning.read_export_info(
      chain["exported"]["realm_openqa"])


def test_evaluate_searches_with_the_served_scann_searcher(chain):
  """`evaluate` with the export's ScaNN choice (`--searcher=scann`): the reader reads the
  searcher's own top 5 (at 20 rows, one leaf: ORQA's answers), the ranks past them come from a
  deeper search, and the figures say which searcher ran."""
  import tensorflow as tf
  from realm_tf.export import mips
  from realm_tf.modeling.openqa_features import OpenQAExample
  from realm_tf.retrieval import bundle as bundle_lib
  from realm_tf.retrieval.brute_force import BruteForceSearcher
  from realm_tf.stages import evaluate as evaluate_lib
  model, refs = chain["model"], chain["refs"]
  bundle = bundle_lib.latest(os.path.join(chain["work"], "index"))
  scann = mips.scann_source_of(bundle, model.index.embeddings_np)
  assert scann.description["source"] == "index_bundle"
  examples = [OpenQAExample(f"q{i}", q, (refs[i].answer,))
              for i, q in enumerate(release.QUESTIONS)]
  metrics = evaluate_lib.evaluate(model, examples, recall_ks=[5], num_retrieved=10, scann=scann)
  assert metrics["searcher"] == "scann" and metrics["retriever"] == "dense"
  assert metrics["scann"] == scann.description and metrics["exact_match"] == 1.0
  predictor = evaluate_lib.Predictor(model, num_retrieved=10, searcher=scann.searcher)
  preds = predictor.predict(examples)
  feats = predictor.featurizer.featurize(examples)
  queries = model.embed_questions({k: tf.constant(v) for k, v in feats.items()
                                   if k.startswith("query/")}, training=False)
  deep, _ = scann.searcher.search(queries, tf.constant(10))
  for ref, pred, deeper in zip(refs, preds, deep.numpy()):
    assert pred["rows"][:5].tolist() == list(ref.rows), pred
    assert pred["rows"][5:].tolist() == [r for r in deeper if r not in ref.rows][:5]
    assert pred["prediction"] == ref.answer
  # The rows read are the given searcher's, whatever exact search says: over the negated matrix
  # it finds the 5 lowest inner products, and the reader reads those.
  negated = BruteForceSearcher(-np.asarray(model.index.embeddings_np))
  worst = np.argsort(queries.numpy() @ np.asarray(model.index.embeddings_np).T, axis=1,
                     kind="stable")[:, :5]
  preds = evaluate_lib.Predictor(model, num_retrieved=5, searcher=negated).predict(examples)
  assert [p["rows"].tolist() for p in preds] == worst.tolist()


# ---- ScaNN at 2,000 rows (more than one leaf) ---------------------------------------------------

NUM_LARGE = 2000
NUM_LARGE_QUESTIONS = 60


def _large_release_texts(seed: int = 5):
  """2,000 (title, body) blocks and 60 questions made of the tiny release's words."""
  words = sorted({w.strip(",.()'") for _, body in release.DOCUMENTS for w in body.split()} -
                 {""})
  rng = np.random.default_rng(seed)
  documents = [(" ".join(rng.choice(words, 2)).title(), " ".join(rng.choice(words, 14)))
               for _ in range(NUM_LARGE)]
  questions = ["what " + " ".join(rng.choice(words, 4)) for _ in range(NUM_LARGE_QUESTIONS)]
  return documents, questions


@pytest.mark.slow  # a 2,000-block release imported, converted, exported and evaluated: ~1 min
def test_served_scann_top5_is_the_imported_searchers_at_2000_rows(tmp_path):
  """At 2,000 rows (ORQA's tree clamped to 125 leaves, 100 searched): the `export` job's
  `realm_openqa_scann` answers every question from the import's own searcher's top 5, which
  differs from exact search for some; `evaluate --searcher=scann` reads the same blocks and
  gives the same answers; the job's summary and `.export-done.json` record ORQA's settings."""
  import tensorflow as tf
  from realm_tf.checkpoints import convert
  from realm_tf.release import importer
  from realm_tf.release import orqa_model
  from realm_tf.retrieval import bundle as bundle_lib
  from realm_tf.retrieval import orqa_scann
  from realm_tf.stages import evaluate as evaluate_lib
  from realm_tf.stages import export_job
  from realm_tf.utils.custom_ops import register_scann_ops
  documents, questions = _large_release_texts()
  rel = release.write_release(str(tmp_path / "release"), documents=documents)
  work = str(tmp_path / "work")
  importer.run(importer.ImportConfig(
      blocks=os.path.join(rel.blocks_dir, "blocks.tfr"),
      titles=os.path.join(rel.blocks_dir, "titles.tfr"), embedder=rel.embedder_dir,
      work_dir=work, searcher="scann", num_attention_heads=release.HEADS))
  model_dir = os.path.join(work, "finetune")
  orqa_model.run(convert.ConvertConfig(format="tf1", input=rel.finetuned_checkpoint,
                                       output_dir=model_dir, target="openqa", work_dir=work))
  base = os.path.join(work, "serving")
  summary = export_job.run(export_job.ExportConfig(
      model_dir=model_dir, export_base=base, variant="scann",
      components=["openqa", "query_embedder"], num_answers=1, max_candidates=5))
  bundle = bundle_lib.latest(os.path.join(work, "index"))
  register_scann_ops()
  asked = tf.constant([q.encode() for q in questions])
  served = tf.saved_model.load(summary["models"]["realm_openqa_scann"]).signatures[
      "serving_default"](questions=asked)
  served_ids = served["evidence_block_ids"].numpy()
  embeddings = tf.saved_model.load(summary["models"]["realm_query_embedder"]).signatures[
      "serving_default"](questions=asked)["embeddings"]
  rows, _ = bundle.searcher.search(embeddings, tf.constant(5))
  bundle_ids = bundle.block_ids[rows.numpy()]
  exact_ids = bundle.block_ids[np.argsort(-(embeddings.numpy() @ np.asarray(
      bundle.embeddings).T), axis=1, kind="stable")[:, :5]]
  same_as_bundle = np.all(served_ids == bundle_ids, axis=1)
  assert same_as_bundle.sum() == NUM_LARGE_QUESTIONS, np.nonzero(~same_as_bundle)
  differs_from_exact = np.any(np.sort(bundle_ids, 1) != np.sort(exact_ids, 1), axis=1)
  assert differs_from_exact.sum() >= 1

  # The job records the searcher it served: ORQA's settings, saved whole.
  orqa = orqa_scann.scann_config_json(importer.scann_config(importer.ImportConfig(), NUM_LARGE))
  config = summary["scann"]["config"]
  assert summary["scann"]["source"] == "index_bundle"
  assert (config["mode"], config["num_leaves"], config["num_leaves_to_search"],
          config["training_sample_size"], config["dimensions_per_block"],
          config["anisotropic_quantization_threshold"], config["rescoring"]) == (
              "tree_ah", 125, 100, NUM_LARGE, 2, None, "gather")
  assert {k: config[k] for k in orqa if orqa[k] is not None} == {
      k: v for k, v in orqa.items() if v is not None}
  with open(os.path.join(base, export_job.DONE), encoding="utf-8") as f:
    assert json.load(f)["scann"] == summary["scann"]
  shapes = _variable_shapes(summary["models"]["realm_openqa_scann"])
  assert _shape_of(shapes, "state/hashed_dataset/.ATTRIBUTES/VARIABLE_VALUE") == [NUM_LARGE, 64]

  data = tmp_path / "questions.jsonl"
  data.write_text("".join(json.dumps({"question": q, "answers": ["-"]}) + "\n"
                          for q in questions), encoding="utf-8")
  result = evaluate_lib.run(evaluate_lib.EvaluateConfig(
      model_dir=model_dir, dataset=f"jsonl:{data}", searcher="scann", num_retrieved=20,
      recall_ks=[5]))
  assert result["searcher"] == "scann" and result["scann"]["config"] == config
  assert result["predictions"].endswith("-scann.jsonl")
  with open(result["predictions"], encoding="utf-8") as f:
    predictions = [json.loads(line) for line in f]
  for i, pred in enumerate(predictions):
    assert [e["block_id"] for e in pred["evidence"] if e["read"]] == served_ids[i].tolist(), i
    assert pred["prediction"] == served["answers"].numpy()[i, 0].decode(), i
