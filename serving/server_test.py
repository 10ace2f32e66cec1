"""End-to-end tests over real gRPC on loopback: the server runs as a subprocess, as deployed.

One server per module (TF import + SavedModel load dominate the cost). The answer-equality test also
runs against stock `tensorflow_model_server` when it is on PATH.
"""
import ast
import os
import re
import shutil
import threading
import time

import grpc
import numpy as np
import pytest
import tensorflow as tf
from absl import flags
from tensorflow_serving.apis import (get_model_metadata_pb2, get_model_status_pb2,
                                     model_management_pb2, model_service_pb2_grpc, predict_pb2,
                                     prediction_service_pb2_grpc)

from realm_tf.launch import model_client
from realm_tf.testing import cli as launch_testing
from realm_tf.testing import toy_models
from serving import batching, client, model_config, server, subprocess_server
from serving.validation import ServingError

QUESTIONS = ["who wrote pride and prejudice", "what is the capital of france",
             "when was the eiffel tower built", "who painted the mona lisa", "how tall is everest"]
MAX_STRING_BYTES = 256
MAX_RECEIVE_BYTES = 1 << 20
BATCHING = """
max_batch_size { value: 32 }
batch_timeout_micros { value: 5000 }
num_batch_threads { value: 2 }
"""


@pytest.fixture(scope="module")
def root(tmp_path_factory):
  """Models qa/1, num/1, live/1, scann/1 plus ModelServerConfigs and a batching file."""
  root = str(tmp_path_factory.mktemp("serving"))
  toy_models.write_qa_model(os.path.join(root, "qa"), 1)
  toy_models.write_numeric_model(os.path.join(root, "num"), 1)
  toy_models.write_numeric_model(os.path.join(root, "live"), 1)
  toy_models.write_scann_model(os.path.join(root, "scann"), 1)
  stock = "".join(f'  config {{ name: "{m}" base_path: "{os.path.join(root, m)}" '
                  f'model_platform: "tensorflow" }}\n' for m in ("qa", "num", "live"))
  stock += ('  config { name: "labelled" base_path: "' + os.path.join(root, "num") + '"\n'
            '           version_labels { key: "stable" value: 1 } }\n')
  scann = f'  config {{ name: "scann" base_path: "{os.path.join(root, "scann")}" }}\n'
  with open(os.path.join(root, "models.config"), "w") as f:  # Ours: stock models + ScaNN.
    f.write("model_config_list {\n" + stock + scann + "}\n")
  with open(os.path.join(root, "models_stock.config"), "w") as f:  # tensorflow_model_server.
    f.write("model_config_list {\n" + stock + "}\n")
  with open(os.path.join(root, "batching.config"), "w") as f:
    f.write(BATCHING)
  return root


@pytest.fixture(scope="module")
def python_server(root):
  """`python -m serving.server` with batching, fast polling and small limits."""
  proc = subprocess_server.start_python_server([
      f"--model_config_file={root}/models.config", "--enable_batching",
      f"--batching_parameters_file={root}/batching.config",
      "--file_system_poll_wait_seconds=0.2", f"--max_string_bytes={MAX_STRING_BYTES}",
      f"--max_receive_message_bytes={MAX_RECEIVE_BYTES}", "--shutdown_grace_seconds=5"],
      os.path.join(root, "server.log"))
  proc.wait_ready(["qa", "num", "live", "scann"])
  yield proc
  proc.stop()


@pytest.fixture(scope="module")
def tfs_server(root):
  """Stock tensorflow_model_server on the same models, when the binary exists."""
  binary = shutil.which("tensorflow_model_server")
  if binary is None:
    pytest.skip("tensorflow_model_server is not on PATH (no model-server binary can be installed "
                "here; see serving/README.md for the Docker recipe)")
  port = subprocess_server.free_port()
  proc = subprocess_server.ServerProcess(
      [binary, f"--port={port}", f"--model_config_file={root}/models_stock.config",
       "--enable_batching", f"--batching_parameters_file={root}/batching.config",
       "--file_system_poll_wait_seconds=1"], port, os.path.join(root, "tfs.log"))
  proc.wait_ready(["qa", "num"])
  yield proc
  proc.stop()


@pytest.fixture(scope="module")
def reference(root):
  """The in-process SavedModel signatures the served answers must equal."""
  return {m: tf.saved_model.load(os.path.join(root, m, "1")) for m in ("qa", "num")}


def assert_outputs_equal(got, want):
  assert set(got) == set(want)
  for key in want:
    w = want[key].numpy() if hasattr(want[key], "numpy") else want[key]
    if w.dtype == object:
      assert got[key].tolist() == w.tolist(), key
    else:
      np.testing.assert_allclose(got[key], w, rtol=1e-6, err_msg=key)


@pytest.mark.parametrize("backend", ["python_server", "tfs_server"])
def test_answers_equal_in_process_model(backend, request, reference):
  proc = request.getfixturevalue(backend)
  questions = np.array([q.encode() for q in QUESTIONS], dtype=object)
  with client.PredictClient(proc.address, "qa") as qa:
    got, response = qa.predict_with_spec({"questions": questions})
  assert response.model_spec.version.value == 1
  assert_outputs_equal(got, reference["qa"].signatures["serving_default"](
      questions=tf.constant(questions)))
  x = np.random.default_rng(0).standard_normal((4, 3)).astype(np.float32)
  scale = np.array([1.0, 0.5, -2.0, 3.0], np.float32)
  with client.PredictClient(proc.address, "num") as num:
    got = num.predict({"x": x, "scale": scale})
  assert_outputs_equal(got, reference["num"].signatures["serving_default"](
      x=tf.constant(x), scale=tf.constant(scale)))
  np.testing.assert_allclose(got["y"], toy_models.numeric_reference(x, scale, 1), rtol=1e-5)


def test_metadata_status_and_unbatchable_signatures(python_server):
  with client.PredictClient(python_server.address, "num") as num:
    meta = num.metadata()
    assert meta["serving_default"]["inputs"] == {"x": ("float32", [-1, 3]),
                                                 "scale": ("float32", [-1])}
    assert meta["single"]["outputs"] == {"y": ("float32", [2])}
    assert num.status() == [{"version": 1, "state": "AVAILABLE", "error_code": 0,
                             "error_message": ""}]
  x = np.array([1.0, 2.0, 3.0], np.float32)
  with client.PredictClient(python_server.address, "num", signature_name="single") as single:
    np.testing.assert_allclose(single.predict({"x": x})["y"],
                               toy_models.numeric_reference(x[None], np.ones(1), 1)[0], rtol=1e-6)
  with client.PredictClient(python_server.address, "labelled", version_label="stable") as lab:
    out, response = lab.predict_with_spec({"x": np.ones((1, 3), np.float32),
                                           "scale": np.ones(1, np.float32)},
                                          output_filter=["total"])
    assert list(out) == ["total"] and response.model_spec.version.value == 1


def test_scann_op_savedmodel_is_served(python_server):
  """The server imports ScaNN before loading, so a SavedModel using Scann>* ops serves."""
  queries = np.random.default_rng(3).standard_normal((4, 8)).astype(np.float32)
  with client.PredictClient(python_server.address, "scann") as c:
    out = c.predict({"queries": queries})
  scores = queries @ toy_models.scann_points().T
  np.testing.assert_array_equal(out["rows"], np.argsort(-scores, axis=1)[:, :5])
  np.testing.assert_allclose(out["scores"], -np.sort(-scores, axis=1)[:, :5], rtol=1e-5)


def test_cli_prints_answers_with_evidence(python_server, reference, capsys):
  flag_values = flags.FlagValues()
  model_client.define_flags(flag_values)
  argv = flag_values(["serving.client", f"--server={python_server.address}", "--model_name=qa",
                      QUESTIONS[0], QUESTIONS[4]])
  assert model_client.run(flag_values, argv[1:]) == 0
  want = reference["qa"].signatures["serving_default"](
      questions=tf.constant([QUESTIONS[0], QUESTIONS[4]]))
  lines = capsys.readouterr().out.splitlines()
  assert lines[0] == f"Q: {QUESTIONS[0]}"
  assert lines[1] == (f"A: {want['answers'][0].numpy().decode()}  "
                      f"(p={want['probabilities'][0].numpy():.3f})")
  title = want["evidence_titles"][0, 0].numpy().decode()
  assert f"score={want['evidence_scores'][0, 0].numpy():.3f}" in lines[3] and title in lines[3]
  assert want["evidence_texts"][0, 0].numpy().decode() in lines[4]
  assert f"Q: {QUESTIONS[4]}" in lines and "A: v1:EVEREST  (p=0.731)" in lines
  argv = flag_values(["serving.client", f"--server={python_server.address}", "--model_name=nope",
                      "q"])
  with pytest.raises(ServingError,
                     match=r"NOT_FOUND: Servable not found for request: Latest\(nope\)"):
    model_client.run(flag_values, argv[1:])


def test_cli_missing_model_config_file_is_a_one_line_error(tmp_path):
  missing = str(tmp_path / "models.config")
  proc = launch_testing.run_cli("serving.server", f"--model_config_file={missing}", "--port=0")
  launch_testing.assert_one_line_error(proc, missing)


def _raw_predict(address, model="num", inputs=None, signature="", version=None, label=None,
                 output_filter=()):
  request = predict_pb2.PredictRequest()
  request.model_spec.name = model
  request.model_spec.signature_name = signature
  if version is not None:
    request.model_spec.version.value = version
  if label is not None:
    request.model_spec.version_label = label
  for name, value in (inputs or {}).items():
    request.inputs[name].CopyFrom(tf.make_tensor_proto(value))
  request.output_filter.extend(output_filter)
  with grpc.insecure_channel(address, options=[("grpc.max_send_message_length", 64 << 20)]) as ch:
    return prediction_service_pb2_grpc.PredictionServiceStub(ch).Predict(request, timeout=30)


X2 = np.ones((2, 3), np.float32)
S2 = np.ones((2,), np.float32)


def strings(*values):
  return {"questions": np.array(values, dtype=object)}


BAD_REQUESTS = [
    ("unknown model", dict(model="nope", inputs={"x": X2, "scale": S2}),
     grpc.StatusCode.NOT_FOUND, "Servable not found for request: Latest(nope)"),
    ("unknown version", dict(inputs={"x": X2, "scale": S2}, version=7),
     grpc.StatusCode.NOT_FOUND, "Specific(num, 7)"),
    ("unknown label", dict(inputs={"x": X2, "scale": S2}, label="canary"),
     grpc.StatusCode.INVALID_ARGUMENT, "Unrecognized servable version label: canary"),
    ("unknown signature", dict(inputs={"x": X2, "scale": S2}, signature="nope"),
     grpc.StatusCode.FAILED_PRECONDITION, 'Serving signature key "nope" not found'),
    ("missing input", dict(inputs={"x": X2}), grpc.StatusCode.INVALID_ARGUMENT,
     "Missing but required: {scale}"),
    ("unexpected input", dict(inputs={"x": X2, "scale": S2, "bias": S2}),
     grpc.StatusCode.INVALID_ARGUMENT, "Sent extra: {bias}"),
    ("wrong dtype", dict(inputs={"x": X2.astype(np.int32), "scale": S2}),
     grpc.StatusCode.INVALID_ARGUMENT, "input 'x': expected dtype float32 but got int32"),
    ("wrong rank", dict(inputs={"x": X2[..., None], "scale": S2}),
     grpc.StatusCode.INVALID_ARGUMENT, "input 'x': expected rank 2"),
    ("wrong shape", dict(inputs={"x": np.ones((2, 4), np.float32), "scale": S2}),
     grpc.StatusCode.INVALID_ARGUMENT, "input 'x': shape [2,4] is incompatible"),
    ("batch mismatch inside the model", dict(inputs={"x": X2, "scale": np.ones(3, np.float32)}),
     grpc.StatusCode.INVALID_ARGUMENT, "Incompatible shapes"),
    ("unknown output filter", dict(inputs={"x": X2, "scale": S2}, output_filter=["zz"]),
     grpc.StatusCode.INVALID_ARGUMENT, "output tensor alias not found in signature: zz"),
    ("batch too large", dict(inputs={"x": np.ones((33, 3), np.float32),
                                     "scale": np.ones(33, np.float32)}),
     grpc.StatusCode.INVALID_ARGUMENT, "batch size 33 is larger than the maximum batch size 32"),
    ("empty string", dict(model="qa", inputs=strings(b"ok", b"")),
     grpc.StatusCode.INVALID_ARGUMENT, "input 'questions' element [1] is an empty"),
    ("blank string", dict(model="qa", inputs=strings(b" \n ")),
     grpc.StatusCode.INVALID_ARGUMENT, "input 'questions' element [0] is an empty"),
    ("oversized string", dict(model="qa", inputs=strings(b"x" * (MAX_STRING_BYTES + 1))),
     grpc.StatusCode.INVALID_ARGUMENT, f"over the limit of {MAX_STRING_BYTES} bytes"),
    ("invalid utf-8", dict(model="qa", inputs=strings(b"caf\xe9")),
     grpc.StatusCode.INVALID_ARGUMENT, "is not valid UTF-8"),
    ("string for float", dict(inputs={"x": np.array([b"1"], dtype=object), "scale": S2}),
     grpc.StatusCode.INVALID_ARGUMENT, "expected dtype float32 but got string"),
    ("message too large", dict(inputs={"x": np.ones((100_000, 3), np.float32),
                                       "scale": np.ones(100_000, np.float32)}),
     grpc.StatusCode.RESOURCE_EXHAUSTED, ""),
]


@pytest.mark.parametrize("name,kwargs,code,fragment", BAD_REQUESTS, ids=[b[0] for b in
                                                                         BAD_REQUESTS])
def test_bad_request_gets_its_status_code(python_server, name, kwargs, code, fragment):
  del name
  with pytest.raises(grpc.RpcError) as info:
    _raw_predict(python_server.address, **kwargs)
  assert info.value.code() == code, info.value.details()
  assert fragment in info.value.details()


@pytest.mark.parametrize("method", ["/tensorflow.serving.PredictionService/Predict",
                                    "/tensorflow.serving.PredictionService/GetModelMetadata",
                                    "/tensorflow.serving.ModelService/GetModelStatus"])
def test_bytes_that_are_not_a_request_are_invalid_argument(python_server, method):
  """gRPC's own answer to an unparsable request is INTERNAL with a logged traceback; the server
  answers INVALID_ARGUMENT naming the method, and logs nothing."""
  with grpc.insecure_channel(python_server.address) as ch:
    call = ch.unary_unary(method, request_serializer=None, response_deserializer=None)
    with pytest.raises(grpc.RpcError) as info:
      call(b"\x0a\xff\xff\xff\xff\x0f not a proto", timeout=30)
  assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT, info.value
  assert method in info.value.details() and "is not a valid message" in info.value.details()
  assert "Exception deserializing" not in python_server.log()


def test_drain_counter_counts_calls_running_at_stop_and_answered_in_time():
  counter = server.DrainCounter()
  early, late = counter.enter(), counter.enter()
  counter.leave(early)
  running = counter.enter()
  assert counter.begin(grace_seconds=30.0) == 2  # `late` and `running`
  counter.leave(running)
  counter.leave(counter.enter())  # started after the stop began: not counted
  assert counter.answered == 1
  counter.begin(grace_seconds=-1.0)  # a grace period already over: `late` finishes too late
  counter.leave(late)
  assert counter.answered == 1


def test_request_deadline_is_the_shorter_of_client_and_cap():
  """--max_request_seconds caps a request without a (shorter) client deadline; a request whose
  time is spent is DEADLINE_EXCEEDED before it touches a model."""

  class Context:
    def __init__(self, remaining):
      self.remaining = remaining

    def time_remaining(self):
      return self.remaining

  assert server._deadline(Context(None), 60.0) == 60.0
  assert server._deadline(Context(2.5), 60.0) == 2.5
  assert server._deadline(Context(None), 0.0) is None
  servicer = server.PredictionServicer(None, None, server.validation_lib.ValidationConfig())
  with pytest.raises(ServingError) as info:
    servicer.predict(predict_pb2.PredictRequest(), timeout=0.0)
  assert info.value.code == grpc.StatusCode.DEADLINE_EXCEEDED


def test_bad_metadata_and_status_requests(python_server):
  with grpc.insecure_channel(python_server.address) as ch:
    predict_stub = prediction_service_pb2_grpc.PredictionServiceStub(ch)
    request = get_model_metadata_pb2.GetModelMetadataRequest()
    request.model_spec.name = "num"
    with pytest.raises(grpc.RpcError) as info:
      predict_stub.GetModelMetadata(request, timeout=10)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    request.metadata_field.append("signature_def")
    request.model_spec.name = "nope"
    with pytest.raises(grpc.RpcError) as info:
      predict_stub.GetModelMetadata(request, timeout=10)
    assert info.value.code() == grpc.StatusCode.NOT_FOUND
    status = get_model_status_pb2.GetModelStatusRequest()
    status.model_spec.name = "nope"
    with pytest.raises(grpc.RpcError) as info:
      model_service_pb2_grpc.ModelServiceStub(ch).GetModelStatus(status, timeout=10)
    assert info.value.code() == grpc.StatusCode.NOT_FOUND
  # The server still answers good requests after all the bad ones.
  out = _raw_predict(python_server.address, inputs={"x": X2, "scale": S2})
  np.testing.assert_allclose(tf.make_ndarray(out.outputs["y"]),
                             toy_models.numeric_reference(X2, S2, 1), rtol=1e-6)


def _hammer(address, model, inputs, check, stop, errors, seen, count=None):
  """Sends `inputs` repeatedly until `stop` is set (or `count` requests); records failures."""
  with client.PredictClient(address, model, timeout=30) as c:
    n = 0
    while not stop.is_set() and (count is None or n < count):
      try:
        out, response = c.predict_with_spec(inputs)
        version = response.model_spec.version.value
        check(out, version)
        seen.append(version)
      except Exception as e:  # pylint: disable=broad-except
        errors.append(repr(e))
      n += 1


def test_new_version_goes_live_without_failed_requests(python_server, root):
  x = np.random.default_rng(1).standard_normal((3, 3)).astype(np.float32)
  scale = np.array([1.0, 2.0, 3.0], np.float32)

  def check(out, version):
    np.testing.assert_allclose(out["y"], toy_models.numeric_reference(x, scale, version),
                               rtol=1e-5)

  stop, errors, seen = threading.Event(), [], []
  threads = [threading.Thread(target=_hammer, args=(python_server.address, "live",
                                                    {"x": x, "scale": scale}, check, stop,
                                                    errors, seen)) for _ in range(2)]
  for t in threads:
    t.start()
  time.sleep(0.5)
  os.makedirs(os.path.join(root, "live", "3"))  # A partial directory: must be ignored.
  toy_models.write_numeric_model(os.path.join(root, "live"), 2)
  deadline = time.monotonic() + 60
  while 2 not in seen[-3:] and time.monotonic() < deadline:
    time.sleep(0.1)
  n_at_switch = len(seen)
  while len(seen) < n_at_switch + 10 and time.monotonic() < deadline:
    time.sleep(0.05)
  stop.set()
  for t in threads:
    t.join()
  assert not errors, errors[:3]
  assert seen.count(1) > 0 and seen.count(2) >= 10
  assert seen[-10:] == [2] * 10
  with client.PredictClient(python_server.address, "live") as c:
    states = {s["version"]: s["state"] for s in c.status()}
  assert states == {1: "END", 2: "AVAILABLE"}
  assert "Unloaded servable live version 1" in python_server.log()


def test_sixteen_concurrent_clients_get_correct_answers(python_server, reference):
  rng = np.random.default_rng(2)
  jobs = []
  for i in range(16):
    if i % 2:
      qs = [QUESTIONS[j] + f" number {i}" for j in rng.choice(len(QUESTIONS), 1 + i % 3)]
      arr = np.array([q.encode() for q in qs], dtype=object)
      want = reference["qa"].signatures["serving_default"](questions=tf.constant(arr))
      jobs.append(("qa", {"questions": arr}, {k: v.numpy() for k, v in want.items()}))
    else:
      x = rng.standard_normal((1 + i % 4, 3)).astype(np.float32)
      s = rng.standard_normal(1 + i % 4).astype(np.float32)
      jobs.append(("num", {"x": x, "scale": s},
                   {"y": toy_models.numeric_reference(x, s, 1)}))
  errors, seen = [], []
  stop = threading.Event()

  def make_check(want):
    def check(out, version):
      assert version == 1
      for key, value in want.items():
        if value.dtype == object:
          assert out[key].tolist() == value.tolist(), key
        else:
          np.testing.assert_allclose(out[key], value, rtol=1e-5, atol=1e-6)
    return check

  threads = [threading.Thread(target=_hammer, args=(python_server.address, model, inputs,
                                                    make_check(want), stop, errors, seen, 8))
             for model, inputs, want in jobs]
  for t in threads:
    t.start()
  for t in threads:
    t.join()
  assert not errors, errors[:3]
  assert len(seen) == 16 * 8


def test_in_process_server_merges_concurrent_requests(root):
  """Same server class in this process, so its batching counters can be read directly."""
  options = server.ServerOptions(
      models=[model_config.ModelConfig("qa", os.path.join(root, "qa"))], port=0,
      bind_address="127.0.0.1", file_system_poll_wait_seconds=0,
      batching=batching.BatchingConfig(max_batch_size=32, batch_timeout_micros=20_000,
                                       num_batch_threads=1))
  model_server = server.ModelServer(options)
  port = model_server.start()
  try:
    results = [None] * 16
    barrier = threading.Barrier(16)

    def ask(i):
      with client.PredictClient(f"127.0.0.1:{port}", "qa") as c:
        barrier.wait()
        results[i] = c.predict({"questions": np.array([f"question {i}".encode()], dtype=object)})

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(16)]
    for t in threads:
      t.start()
    for t in threads:
      t.join()
    stats = model_server.batch_stats()
    # HandleReloadConfigRequest swaps the model list: add "num", drop "qa".
    reload = model_management_pb2.ReloadConfigRequest()
    reload.config.model_config_list.config.add(name="num", base_path=os.path.join(root, "num"))
    with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
      response = model_service_pb2_grpc.ModelServiceStub(ch).HandleReloadConfigRequest(reload)
    assert response.status.error_code == 0
    with client.PredictClient(f"127.0.0.1:{port}", "num") as c:
      reloaded = c.predict({"x": X2, "scale": S2})
    with pytest.raises(grpc.RpcError) as info:
      _raw_predict(f"127.0.0.1:{port}", model="qa", inputs=strings(b"q"))
    assert info.value.code() == grpc.StatusCode.NOT_FOUND
  finally:
    model_server.stop(1)
  for i, out in enumerate(results):
    assert out["answers"].tolist() == [f"v1:{i}".encode()]
  np.testing.assert_allclose(reloaded["y"], toy_models.numeric_reference(X2, S2, 1), rtol=1e-6)
  assert stats.requests == 16 and stats.rows == 16
  assert stats.merged_requests >= 2 and stats.batches < 16


def test_sigterm_drains_and_exits_cleanly(python_server):
  """Last test of the module: stops the shared server."""
  stop, errors, seen = threading.Event(), [], []
  x = {"x": X2, "scale": S2}
  threads = [threading.Thread(target=_hammer, args=(python_server.address, "num", x,
                                                    lambda out, v: None, stop, errors, seen))
             for _ in range(8)]
  for t in threads:
    t.start()
  while len(seen) < 40:
    time.sleep(0.05)
  code = python_server.stop()
  stop.set()
  for t in threads:
    t.join()
  log = python_server.log()
  assert code == 0, log[-3000:]
  assert "Received signal 15, shutting down" in log and "Server stopped" in log
  drain = re.search(r"drain: (\d+) Predict requests in flight at stop, (\d+) answered", log)
  assert drain and drain.group(1) == drain.group(2), log[-3000:]
  stats = ast.literal_eval(log.split("batching stats: ")[1].splitlines()[0])
  assert stats["merged_requests"] >= 2, stats
  # Requests after the stop fail as UNAVAILABLE (connection closed), never as server errors.
  assert all("UNAVAILABLE" in e or "CANCELLED" in e for e in errors), errors[:3]
