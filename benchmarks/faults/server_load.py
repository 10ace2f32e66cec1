"""The server under load and change: concurrent clients mixing well-formed and malformed requests
while new versions are published and old ones retired, then SIGTERM with requests in flight.

The real server runs as a subprocess (`python -m serving.server`) on a small real SavedModel
(`realm_tf.testing.toy_models.write_qa_model`, which answers `v<version>:<LAST WORD>`). Two
phases on the same process: a baseline of well-formed requests only (the latency reference), then
the faulty phase: each request's kind is drawn from a seeded generator (half well-formed, half one
of the malformed kinds below); a publisher copies pre-written versions into the model's base path
(atomic rename) at seeded random times and retires the versions older than the newest one the
server reports AVAILABLE; at a seeded random point near the end, SIGTERM. Rows: well-formed
requests that failed, malformed requests answered with another status than their kind's, the
server's RSS at the start and end of the faulty phase, and the requests in flight at SIGTERM.
"""
import collections
import dataclasses
import os
import random
import re
import shutil
import signal
import threading
import time
from typing import Dict, List, Optional

import grpc
import numpy as np

from benchmarks import common
from benchmarks.faults import FaultConfig, FaultRow

GROUP = "server_load"
MODEL = "qa"
PREDICT = "/tensorflow.serving.PredictionService/Predict"
MAX_BATCH = 8  # --max_batch_size of the run
MAX_RECEIVE_BYTES = 4 << 20  # --max_receive_message_bytes of the run
MAX_STRING_BYTES = 16384  # the server's default --max_string_bytes
GRACE_SECONDS = 10.0  # --shutdown_grace_seconds: the drain timeout
RPC_TIMEOUT = 30.0
# Requests wait up to 50 ms for company, so SIGTERM finds requests queued, not only running.
BATCHING = """
max_batch_size { value: 32 }
batch_timeout_micros { value: 50000 }
num_batch_threads { value: 2 }
"""
WORDS = ("who", "wrote", "pride", "prejudice", "capital", "france", "eiffel", "tower", "mona",
         "lisa", "everest", "river", "queen", "planet", "ocean")

C = grpc.StatusCode
# Each malformed kind and the status it must get (TF Serving's: an unknown signature key is
# FAILED_PRECONDITION there too, serving/README.md's validation table).
BAD_KINDS = {
    "wrong_dtype": C.INVALID_ARGUMENT, "wrong_shape": C.INVALID_ARGUMENT,
    "empty_string": C.INVALID_ARGUMENT, "question_1mb": C.INVALID_ARGUMENT,
    "non_utf8": C.INVALID_ARGUMENT, "unknown_signature": C.FAILED_PRECONDITION,
    "unknown_version": C.NOT_FOUND, "unknown_model": C.NOT_FOUND,
    "batch_over_limit": C.INVALID_ARGUMENT, "message_over_limit": C.RESOURCE_EXHAUSTED,
    "not_a_proto": C.INVALID_ARGUMENT,
}


@dataclasses.dataclass
class _Call:
  kind: str
  start: float
  end: float
  code: grpc.StatusCode
  ok: bool  # well-formed: answered correctly; malformed: got its kind's status


def _strings(values) -> "object":
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  return tf.make_tensor_proto(np.array(values, dtype=object))


def build_request(kind: str, rng: random.Random):
  """(serialized PredictRequest bytes, the questions of a well-formed one or None) for `kind`."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from tensorflow_serving.apis import predict_pb2  # pylint: disable=g-import-not-at-top
  if kind == "not_a_proto":
    # Tag 0x0f: field 1 with wire type 7, which no proto has: never parses, whatever follows.
    return b"\x0f" + bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 64))), None
  request = predict_pb2.PredictRequest()
  request.model_spec.name = "no_such_model" if kind == "unknown_model" else MODEL
  request.model_spec.signature_name = ("no_such_signature" if kind == "unknown_signature"
                                       else "serving_default")
  if kind == "unknown_version":
    request.model_spec.version.value = 10**6 + rng.randint(0, 1000)
  questions = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 6)))
               for _ in range(rng.randint(1, 4))]
  inputs = request.inputs["questions"]
  if kind == "wrong_dtype":
    inputs.CopyFrom(tf.make_tensor_proto(np.ones([len(questions)], np.float32)))
  elif kind == "wrong_shape":
    inputs.CopyFrom(_strings([[q.encode()] * 2 for q in questions]))
  elif kind == "empty_string":
    inputs.CopyFrom(_strings([q.encode() for q in questions[:-1]] + [rng.choice([b"", b"  "])]))
  elif kind == "question_1mb":
    inputs.CopyFrom(_strings([b"why " * (1 << 18)]))
  elif kind == "non_utf8":
    inputs.CopyFrom(_strings([b"who wrote \xff\xfe" + bytes([rng.randint(0x80, 0xbf)])]))
  elif kind == "batch_over_limit":
    inputs.CopyFrom(_strings([b"who wrote it"] * rng.randint(MAX_BATCH + 1, 4 * MAX_BATCH)))
  elif kind == "message_over_limit":
    inputs.CopyFrom(_strings([b"x" * 1000] * (MAX_RECEIVE_BYTES // 1000 + 64)))
  else:
    inputs.CopyFrom(_strings([q.encode() for q in questions]))
  return request.SerializeToString(), (questions if kind == "good" else None)


def _answer_ok(response, questions) -> bool:
  """The toy model's answers: `v<version>:<LAST WORD>` per question, from the version named."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  version = response.model_spec.version.value
  got = tf.make_ndarray(response.outputs["answers"]).tolist()
  want = [f"v{version}:{q.split()[-1].upper()}".encode() for q in questions]
  return got == want


class _Load:
  """`clients` threads sending requests back to back until stopped; each call is recorded."""

  def __init__(self, address: str, clients: int, seed: str, bad_share: float):
    self.address, self.seed, self.bad_share = address, seed, bad_share
    self.calls: List[_Call] = []
    self._lock = threading.Lock()
    self._stop = threading.Event()
    self._threads = [threading.Thread(target=self._client, args=(k,), daemon=True)
                     for k in range(clients)]

  def start(self):
    for t in self._threads:
      t.start()

  def stop(self):
    self._stop.set()
    for t in self._threads:
      t.join(RPC_TIMEOUT + 10)

  def _client(self, k: int):
    from tensorflow_serving.apis import predict_pb2  # pylint: disable=g-import-not-at-top
    rng = random.Random(f"{self.seed}:client{k}")
    kinds = sorted(BAD_KINDS)
    with grpc.insecure_channel(self.address, options=[
        ("grpc.max_receive_message_length", 64 << 20)]) as channel:
      call = channel.unary_unary(PREDICT, request_serializer=None,
                                 response_deserializer=predict_pb2.PredictResponse.FromString)
      mine = []
      while not self._stop.is_set():
        kind = rng.choice(kinds) if rng.random() < self.bad_share else "good"
        data, questions = build_request(kind, rng)
        start = time.monotonic()
        try:
          response = call(data, timeout=RPC_TIMEOUT)
          code = C.OK
        except grpc.RpcError as e:
          response, code = None, e.code()
        end = time.monotonic()
        if kind == "good":
          ok = code == C.OK and _answer_ok(response, questions)
        else:
          ok = code == BAD_KINDS[kind]
        mine.append(_Call(kind, start, end, code, ok))
        if code == C.UNAVAILABLE and self._stop.is_set():
          break
    with self._lock:
      self.calls.extend(mine)


def _latency(calls: List[_Call]) -> Dict[str, Optional[float]]:
  seconds = [c.end - c.start for c in calls]
  return {"p50_ms": common.percentile_ms(seconds, 50), "p99_ms": common.percentile_ms(seconds, 99),
          "requests": len(seconds)}


class _Publisher(threading.Thread):
  """Publishes the staged versions at the given times (copy to a temp name, then rename) and
  retires every version older than the newest one the server reports AVAILABLE."""

  def __init__(self, server, staged: Dict[int, str], base: str, times: List[float]):
    super().__init__(daemon=True)
    self.server, self.staged, self.base, self.times = server, staged, base, times
    self.published: List[int] = []
    self.retired: List[int] = []
    self.halt = threading.Event()

  def run(self):
    t0 = time.monotonic()
    for at, version in zip(self.times, sorted(self.staged)):
      if self.halt.wait(max(0.0, t0 + at - time.monotonic())):
        return
      tmp = os.path.join(self.base, f"tmp-{version}")
      shutil.copytree(self.staged[version], tmp)
      os.rename(tmp, os.path.join(self.base, str(version)))
      self.published.append(version)
      self._retire()
    while not self.halt.wait(0.3):
      self._retire()

  def _retire(self):
    available = self.server.available_versions(MODEL)
    if not available:
      return
    for name in os.listdir(self.base):
      if name.isdigit() and int(name) < max(available):
        gone = os.path.join(self.base, f"retired-{name}")
        os.rename(os.path.join(self.base, name), gone)
        shutil.rmtree(gone)
        self.retired.append(int(name))


def run(config: FaultConfig) -> List[FaultRow]:
  """The group's four rows (see the module docstring)."""
  from realm_tf.io.memory import rss_bytes  # pylint: disable=g-import-not-at-top
  from realm_tf.testing import toy_models  # pylint: disable=g-import-not-at-top
  from serving import subprocess_server  # pylint: disable=g-import-not-at-top
  base = os.path.join(config.work_dir, "models", MODEL)
  staging = os.path.join(config.work_dir, "staging")
  toy_models.write_qa_model(base, 1, MODEL)
  rng = config.rng("publish new versions, retire old ones")
  num_versions = max(2, min(8, int(config.load_seconds)))
  publish_times = sorted(rng.uniform(0.05, 0.8) * config.load_seconds
                         for _ in range(num_versions))
  staged = {v: toy_models.write_qa_model(staging, v, MODEL) for v in range(2, 2 + num_versions)}
  sigterm_at = config.rng("SIGTERM with requests in flight").uniform(0.85, 1.0) * \
      config.load_seconds
  batching = os.path.join(config.work_dir, "batching.config")
  with open(batching, "w", encoding="utf-8") as f:
    f.write(BATCHING)
  server = subprocess_server.start_python_server([
      f"--model_name={MODEL}", f"--model_base_path={base}", "--enable_batching",
      f"--batching_parameters_file={batching}",
      "--file_system_poll_wait_seconds=0.2", f"--max_batch_size={MAX_BATCH}",
      f"--max_receive_message_bytes={MAX_RECEIVE_BYTES}",
      f"--shutdown_grace_seconds={GRACE_SECONDS}", "--import_scann=false"],
      os.path.join(config.work_dir, "server.log"))
  try:
    server.wait_ready([MODEL])
    pid = server.proc.pid
    # Baseline: the same clients, well-formed requests only, no publishing.
    baseline = _Load(server.address, config.load_clients, f"{config.seed}:baseline", 0.0)
    baseline.start()
    time.sleep(config.load_seconds)
    baseline.stop()
    # The faulty phase.
    rss_start = rss_bytes(pid)
    load = _Load(server.address, config.load_clients, f"{config.seed}:faults", 0.5)
    publisher = _Publisher(server, staged, base, publish_times)
    t0 = time.monotonic()
    load.start()
    publisher.start()
    time.sleep(max(0.0, t0 + sigterm_at - time.monotonic()))
    rss_end = rss_bytes(pid)
    publisher.halt.set()
    publisher.join()
    t_sig = time.monotonic()
    server.proc.send_signal(signal.SIGTERM)
    try:
      exit_code = server.proc.wait(GRACE_SECONDS + 30)
    except Exception:  # pylint: disable=broad-except  # subprocess.TimeoutExpired
      exit_code = None
    exit_seconds = time.monotonic() - t_sig
    load.stop()
  finally:
    server.stop(signal.SIGKILL, timeout=5)
  log = server.log()
  return _rows(config, baseline.calls, load.calls, publisher, publish_times, sigterm_at, t_sig,
               rss_start, rss_end, exit_code, exit_seconds, log)


def _rows(config, baseline_calls, calls, publisher, publish_times, sigterm_at, t_sig, rss_start,
          rss_end, exit_code, exit_seconds, log) -> List[FaultRow]:
  before = [c for c in calls if c.end < t_sig]
  good = [c for c in before if c.kind == "good"]
  bad = [c for c in before if c.kind != "good"]
  good_failed = [c for c in good if not c.ok]
  bad_wrong = [c for c in bad if not c.ok]
  by_kind = {k: {"sent": sum(c.kind == k for c in bad),
                 "other_status": sorted({c.code.name for c in bad if c.kind == k and not c.ok})}
             for k in BAD_KINDS}
  seed = config.seed
  mix = (f"{config.load_clients} clients for {sigterm_at:.1f} s, each request's kind drawn from "
         f"a seeded generator (seed {seed}): half well-formed, half one of {len(BAD_KINDS)} "
         "malformed kinds")
  churn = (f"versions published at seeded random times (s): "
           f"{', '.join(f'{t:.2f}' for t in publish_times)}")
  tracebacks = log.count("Traceback")
  rows = [FaultRow(
      GROUP, "well-formed requests beside malformed ones, while versions are published and "
      "retired", f"{mix}; {churn}", len(good),
      ["each well-formed request answered OK with `v<version>:<LAST WORD>` of the version the "
       "response names", "p50/p99 latency beside a baseline run of well-formed requests only",
       "no traceback in the server log"],
      survived=not good_failed and tracebacks == 0 and bool(good),
      failures=len(good_failed),
      reason=(f"{len(good_failed)} failed: "
              f"{sorted({c.code.name for c in good_failed})}; {tracebacks} tracebacks"
              if good_failed or tracebacks else ""),
      figures={"faulty": _latency(good), "baseline": _latency(baseline_calls),
               "baseline_failed": sum(not c.ok for c in baseline_calls),
               "versions_published": publisher.published, "versions_retired": publisher.retired,
               "server_log_tracebacks": tracebacks})]
  rows.append(FaultRow(
      GROUP, "malformed requests: wrong dtype or shape, empty string, 1 MB question, non-UTF-8, "
      "unknown signature / version / model, batch over the limit, message over the limit, bytes "
      "that are not a request", mix, len(bad),
      ["each got its kind's status: INVALID_ARGUMENT, NOT_FOUND (unknown model or version), "
       "RESOURCE_EXHAUSTED (message over --max_receive_message_bytes), FAILED_PRECONDITION "
       "(unknown signature key, as TF Serving)"],
      survived=not bad_wrong and bool(bad), failures=len(bad_wrong),
      reason=(f"{len(bad_wrong)} got another status: "
              f"{ {k: v['other_status'] for k, v in by_kind.items() if v['other_status']} }"
              if bad_wrong else ""),
      figures={"by_kind": by_kind}))
  growth = rss_end / rss_start - 1.0
  rows.append(FaultRow(
      GROUP, "memory over the faulty load", f"{mix}; {churn}", 1,
      ["server RSS at the start and at the end of the faulty phase, flat within 10%"],
      survived=abs(growth) <= 0.10, failures=int(abs(growth) > 0.10),
      reason="" if abs(growth) <= 0.10 else f"RSS grew {100 * growth:.1f}%",
      figures={"rss_start_bytes": rss_start, "rss_end_bytes": rss_end,
               "growth_percent": round(100 * growth, 2)}))
  drain = re.search(r"drain: (\d+) Predict requests in flight at stop, (\d+) answered", log)
  server_in_flight, server_answered = (int(drain.group(1)), int(drain.group(2))) if drain else \
      (None, None)
  # Client side: a request sent before SIGTERM that the server had not yet received is refused
  # UNAVAILABLE like one sent after it; any other outcome must be its kind's.
  in_flight = [c for c in calls if c.start < t_sig <= c.end]
  answered = [c for c in in_flight if c.ok]
  after = [c for c in calls if c.start >= t_sig]
  wrong = [c for c in in_flight + after if not c.ok and c.code not in (C.UNAVAILABLE,
                                                                         C.CANCELLED)]
  drained = exit_code == 0 and exit_seconds <= GRACE_SECONDS + 5
  survived = (drained and drain is not None and server_answered == server_in_flight
              and not wrong)
  rows.append(FaultRow(
      GROUP, "SIGTERM with requests in flight",
      f"seeded random point {sigterm_at:.2f} s into the faulty phase (seed {seed}, in "
      f"[0.85, 1.0] x {config.load_seconds:g} s)", 1,
      ["every Predict the server was running at SIGTERM answered within the grace period (the "
       "server's own count, its `drain:` log line)",
       f"exit status 0 within the drain timeout (--shutdown_grace_seconds={GRACE_SECONDS:g})",
       "client side: each request in flight at SIGTERM or sent after it answered as its kind "
       "must be, or refused UNAVAILABLE (not yet received), never another error"],
      survived=survived, failures=int(not survived),
      reason="" if survived else (f"exit {exit_code} after {exit_seconds:.1f} s; server: "
                                  f"{server_answered} of {server_in_flight} answered; "
                                  f"{len(wrong)} client requests with other statuses"),
      figures={"server_in_flight": server_in_flight, "server_answered": server_answered,
               "client_in_flight": len(in_flight), "client_answered": len(answered),
               "in_flight_well_formed": sum(c.kind == "good" for c in in_flight),
               "client_refused": dict(collections.Counter(
                   f"{'well-formed' if c.kind == 'good' else 'malformed'}: {c.code.name}"
                   for c in in_flight if not c.ok)),
               "client_refused_sent_before_sigterm_max_s": round(max(
                   [t_sig - c.start for c in in_flight if not c.ok], default=0.0), 3),
               "sent_after_sigterm": len(after), "exit_code": exit_code,
               "exit_seconds": round(exit_seconds, 2)}))
  return rows
