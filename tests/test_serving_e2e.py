"""End to end: export a micro open-QA model → serve it over TF Serving's gRPC API → same answers.

`realm_openqa` (stock ops) and `realm_openqa_scann` are exported with `run_export` (the code behind
`python -m realm_tf.launch.export`), `python -m serving.server` is started as a subprocess on a
free loopback port with server-side batching, and `serving.client.PredictClient` asks a batch of
questions, single questions from concurrent clients, and the CLI client. Every answer, probability
and evidence block must equal the fine-tuned model's own prediction in this process. When
`tensorflow_model_server` is on PATH the stock export is also served by it.
"""
import os
import shutil
import subprocess
import sys
import threading

import numpy as np
import pytest

from realm_tf.testing import export_models as ex_testing

QUESTIONS = list(ex_testing.QUESTIONS)
MODELS = ("realm_openqa", "realm_openqa_scann")
BATCHING = """
max_batch_size { value: 16 }
batch_timeout_micros { value: 5000 }
num_batch_threads { value: 1 }
"""


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
  """Micro model, its in-process answers, and both open-QA exports under one base directory."""
  from realm_tf.export import openqa  # pylint: disable=g-import-not-at-top
  from realm_tf.stages import export_job as export_job  # pylint: disable=g-import-not-at-top
  work = str(tmp_path_factory.mktemp("e2e"))
  system = ex_testing.build_micro_system(work)
  reference = openqa.in_process_answers(system.model, system.tokenizer, QUESTIONS)
  base = os.path.join(work, "serving")
  paths = export_job.run_export(system.model, system.tokenizer, system.bundle, base,
                                variant="both", components=("openqa",), num_answers=3,
                                max_candidates=10)
  assert sorted(paths) == list(MODELS)
  assert all(p.endswith(os.path.join(m, "1")) for m, p in paths.items())
  with open(os.path.join(work, "models.config"), "w", encoding="utf-8") as f:
    f.write("model_config_list {\n" + "".join(
        f'  config {{ name: "{m}" base_path: "{os.path.join(base, m)}" '
        'model_platform: "tensorflow" }\n' for m in MODELS) + "}\n")
  with open(os.path.join(work, "batching.config"), "w", encoding="utf-8") as f:
    f.write(BATCHING)
  return {"work": work, "base": base, "paths": paths, "reference": reference,
          "k": system.model.reader_beam_size}


# `python -m serving.server`, with the TF.Text ops registered first: tensorflow_model_server links
# them in, and the exports tokenize in the graph. (Equivalent to `-m serving.server` once the
# server imports tensorflow_text itself.)
_SERVER_MAIN = ("import tensorflow_text, runpy; "
                "runpy.run_module('serving.server', run_name='__main__', alter_sys=True)")


def _start_server(flags, log_path):
  from serving import subprocess_server  # pylint: disable=g-import-not-at-top
  port = subprocess_server.free_port()
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="")
  env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
  return subprocess_server.ServerProcess(
      [sys.executable, "-c", _SERVER_MAIN, f"--port={port}", *flags], port, log_path, env=env)


@pytest.fixture(scope="module")
def server(exported):
  work = exported["work"]
  proc = _start_server(
      [f"--model_config_file={work}/models.config", "--enable_batching",
       f"--batching_parameters_file={work}/batching.config",
       "--file_system_poll_wait_seconds=0", "--max_num_load_retries=0"],
      os.path.join(work, "server.log"))
  proc.wait_ready(list(MODELS), timeout=240)
  yield proc
  proc.stop()


def _check(outputs, reference, k, rows=None):
  rows = list(range(len(QUESTIONS))) if rows is None else rows
  assert outputs["answers"].shape == (len(rows), 3)
  assert outputs["evidence_block_ids"].shape == (len(rows), k)
  np.testing.assert_array_equal(outputs["answers"][:, 0], reference["answer"][rows])
  np.testing.assert_allclose(outputs["probabilities"][:, 0], reference["probability"][rows],
                             atol=1e-5)
  np.testing.assert_array_equal(outputs["evidence_block_ids"],
                                reference["evidence_block_ids"][rows])
  np.testing.assert_allclose(outputs["evidence_scores"], reference["evidence_scores"][rows],
                             atol=1e-4)
  for i in range(len(rows)):  # each answer is cut out of its evidence text
    for answer, block in zip(outputs["answers"][i], outputs["answer_block_index"][i]):
      assert answer in outputs["evidence_texts"][i, block]


@pytest.mark.parametrize("model_name", MODELS)
def test_grpc_answers_equal_in_process_model(exported, server, model_name):
  from serving import client  # pylint: disable=g-import-not-at-top
  with client.PredictClient(server.address, model_name, timeout=60) as c:
    meta = c.metadata()["serving_default"]
    assert meta["inputs"] == {"questions": ("string", [-1])}
    assert meta["outputs"]["answers"] == ("string", [-1, 3])
    assert meta["outputs"]["evidence_block_ids"] == ("int64", [-1, exported["k"]])
    outputs, response = c.predict_with_spec({"questions": ex_testing.strings(QUESTIONS)})
    assert response.model_spec.version.value == 1
  _check(outputs, exported["reference"], exported["k"])


def test_empty_question_does_not_fail_its_batch(exported, server):
  """realm_openqa answers an empty question in its own row (status "empty_question"); the
  server lets it through because the signature has a per-row `status` output."""
  from serving import client  # pylint: disable=g-import-not-at-top
  batch = [QUESTIONS[0], "", QUESTIONS[2], "   "]
  with client.PredictClient(server.address, "realm_openqa", timeout=60) as c:
    outputs = c.predict({"questions": ex_testing.strings(batch)})
    text = client.ask(c, [QUESTIONS[1], ""])
  assert outputs["status"].tolist() == [b"ok", b"empty_question", b"ok", b"empty_question"]
  _check({k: v[[0, 2]] for k, v in outputs.items()}, exported["reference"], exported["k"],
         rows=[0, 2])
  for row in (1, 3):
    assert outputs["answers"][row].tolist() == [b""] * 3
    assert np.all(outputs["answer_block_ids"][row] == -1)
    assert np.all(outputs["evidence_block_ids"][row] == -1)
  answer = exported["reference"]["answer"][1].decode()
  assert f"A: {answer}" in text and text.endswith("Q: \nA: (no answer: empty_question)")


def test_concurrent_single_questions_are_batched_correctly(exported, server):
  """Concurrent one-question requests, merged into batches by the server's batcher, each get
  their own result back: as many results as requests (none lost), and each one the in-process
  model's answer, probability and evidence for that request's question (none swapped between
  the rows of a batch)."""
  from serving import client  # pylint: disable=g-import-not-at-top
  reference, k = exported["reference"], exported["k"]

  def questions_matching(answer, block_ids, scores):
    """The questions whose in-process prediction this is, within `_check`'s tolerances."""
    return [q for q in range(len(QUESTIONS))
            if answer == reference["answer"][q]
            and np.array_equal(block_ids, reference["evidence_block_ids"][q])
            and np.allclose(scores, reference["evidence_scores"][q], rtol=0, atol=1e-4)]

  # A swapped result is visible only if each question's prediction is told apart from the rest
  # (the micro model's answers and evidence ids repeat; its evidence scores do not).
  assert [questions_matching(reference["answer"][q], reference["evidence_block_ids"][q],
                             reference["evidence_scores"][q])
          for q in range(len(QUESTIONS))] == [[q] for q in range(len(QUESTIONS))]
  asked = [r % len(QUESTIONS) for r in range(3 * len(QUESTIONS))]  # 15, under max_batch_size 16
  results, errors = {}, []
  start = threading.Barrier(len(asked))

  def ask(r):
    try:
      with client.PredictClient(server.address, "realm_openqa", timeout=60) as c:
        start.wait(60)  # every client sends at once, so the batcher merges them
        results[r] = c.predict({"questions": ex_testing.strings([QUESTIONS[asked[r]]])})
    except Exception as e:  # pylint: disable=broad-except
      errors.append(f"request {r}: {type(e).__name__}: {e}")

  threads = [threading.Thread(target=ask, args=(r,)) for r in range(len(asked))]
  for t in threads:
    t.start()
  for t in threads:
    t.join(120)
  assert not [r for r, t in enumerate(threads) if t.is_alive()], "requests unanswered after 120 s"
  assert not errors, errors
  assert sorted(results) == list(range(len(asked)))  # every request got a result
  assert [questions_matching(results[r]["answers"][0, 0], results[r]["evidence_block_ids"][0],
                             results[r]["evidence_scores"][0])
          for r in range(len(asked))] == [[q] for q in asked]  # each its own question's
  for r, q in enumerate(asked):
    _check(results[r], reference, k, rows=[q])


@pytest.mark.slow  # a third interpreter importing TensorFlow (~20 s)
def test_cli_client_prints_answer_and_evidence(exported, server):
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="")
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
  proc = subprocess.run(
      [sys.executable, "-m", "serving.client", f"--server={server.address}",
       "--model_name=realm_openqa_scann", QUESTIONS[1]],
      capture_output=True, text=True, timeout=120, env=env, check=False)
  assert proc.returncode == 0, proc.stderr[-2000:]
  answer = exported["reference"]["answer"][1].decode()
  assert f"A: {answer}" in proc.stdout
  assert "evidence:" in proc.stdout


def test_stock_export_on_tensorflow_model_server(exported):
  binary = shutil.which("tensorflow_model_server")
  if binary is None:
    pytest.skip("tensorflow_model_server is not on PATH (no model-server binary can be installed "
                "here); the stock export is checked for non-stock ops in realm_tf/export tests")
  from serving import client, subprocess_server  # pylint: disable=g-import-not-at-top
  port = subprocess_server.free_port()
  proc = subprocess_server.ServerProcess(
      [binary, f"--port={port}", "--model_name=realm_openqa",
       f"--model_base_path={os.path.dirname(exported['paths']['realm_openqa'])}"], port,
      os.path.join(exported["work"], "tfs.log"))
  try:
    proc.wait_ready(["realm_openqa"], timeout=240)
    with client.PredictClient(proc.address, "realm_openqa", timeout=60) as c:
      outputs = c.predict({"questions": ex_testing.strings(QUESTIONS)})
    _check(outputs, exported["reference"], exported["k"])
  finally:
    proc.stop()
