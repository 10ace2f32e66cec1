r"""Serving benchmark: latency / QPS of the TF Serving-protocol server over gRPC on loopback.

  python -m benchmarks.serving_bench                      # synthetic MIPS model, quick run
  python -m benchmarks.serving_bench --model_base_path=exports/realm_openqa \
      --model_name=realm_openqa --duration_s=10

For one SavedModel (default: `realm_tf.testing.toy_models.MipsModel`, a stand-in for the
`realm_openqa` export's retrieval step over --num_rows embeddings), served by `python -m
serving.server` subprocesses with and without server-side batching, measured in alternating
windows by client threads of this process: p50 / p99 latency and QPS at 1, 8 and 32 concurrent
clients (one question per request), the gRPC overhead at batch 1 over an in-process call, and the
QPS gain from batching at 32 clients. Writes benchmarks/results/serving.json.
Settings: `ServingBenchConfig`; `run(config)` runs it and writes its JSON.
"""
import dataclasses
import os
import tempfile
import time
from typing import List, Optional

import numpy as np
import tensorflow as tf
from absl import logging

from benchmarks import common
from serving import client as client_lib
from realm_tf.config_base import ConfigBase
from realm_tf.testing import toy_models
from serving import model_config, subprocess_server

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


MEASURES = ("serving/", "realm_tf/export/", "realm_tf/testing/toy_models.py")


@dataclasses.dataclass
class ServingBenchConfig(ConfigBase):
  """The model served (or the synthetic one), how long and at which client counts the servers
  are loaded, and the batching server's parameters."""
  model_base_path: Optional[str] = None
  model_name: str = "bench"
  input_name: Optional[str] = None
  num_rows: int = 200_000
  duration_s: float = 3.0
  rounds: int = 3
  warmup_s: float = 0.3
  concurrency: List[int] = dataclasses.field(default_factory=lambda: [1, 8, 32])
  in_process_calls: int = 200
  batching_parameters_file: str = os.path.join(ROOT, "serving", "batching.config")
  allow_dirty: bool = False


HELP = {
    "allow_dirty": common.ALLOW_DIRTY_HELP,
    "model_base_path": "Model to serve (default: a synthetic MIPS model).",
    "model_name": "Name to serve it under.",
    "input_name": "String input (default: the signature's only one).",
    "num_rows": "Block embeddings of the synthetic model.",
    "duration_s": "Measuring time per configuration.",
    "rounds": "Windows per configuration, alternating with/without batching.",
    "warmup_s": "Unmeasured time at the start of each window.",
    "concurrency": "Concurrent client counts.",
    "in_process_calls": "Interleaved in-process / gRPC batch-1 call pairs timed for the overhead.",
    "batching_parameters_file": "Batching parameters of the batching server.",
}


QUESTIONS = [
    "who wrote pride and prejudice", "what is the capital of france",
    "when was the eiffel tower built", "who painted the mona lisa",
    "how tall is mount everest", "who discovered penicillin",
    "what is the largest planet in the solar system", "when did world war ii end",
    "who was the first person on the moon", "what language is spoken in brazil",
    "how many bones are in the human body", "who composed the four seasons",
]


# Consecutive calls of one kind in the batch-1 latency comparison (`paired_overhead`).
BLOCK = 10


def _timed(fn):
  """Seconds one call of `fn` takes."""
  start = time.perf_counter()
  fn()
  return time.perf_counter() - start


def _servicer(base_path: str, model_name: str):
  """The server's PredictionServicer over `base_path`, in this process and without gRPC: what a
  served Predict costs before transport (input validation, proto decoding, the signature call,
  response building)."""
  from serving import server as server_lib  # pylint: disable=g-import-not-at-top
  options = server_lib.ServerOptions(
      models=[model_config.ModelConfig(name=model_name, base_path=base_path)], port=0,
      enable_model_warmup=False)
  server = server_lib.ModelServer(options)
  server.manager.poll_once()
  return server


def _echo_server(ports, reply: bytes, max_workers: int) -> None:
  """A bare gRPC server (child process) whose one method answers every call with `reply`: no
  proto parsing, no model, the same thread-pool hand-off as the model server."""
  import grpc  # pylint: disable=g-import-not-at-top
  from concurrent import futures  # pylint: disable=g-import-not-at-top
  handler = grpc.method_handlers_generic_handler(
      "bench.Echo", {"Call": grpc.unary_unary_rpc_method_handler(lambda request, context: reply)})
  server = grpc.server(futures.ThreadPoolExecutor(max_workers=max_workers))
  server.add_generic_rpc_handlers((handler,))
  ports.put(server.add_insecure_port("127.0.0.1:0"))
  server.start()
  server.wait_for_termination()


def start_echo_server(reply: bytes):
  """Starts `_echo_server` in a spawned process; returns (process, port)."""
  import multiprocessing  # pylint: disable=g-import-not-at-top
  from serving import server as server_lib  # pylint: disable=g-import-not-at-top
  ctx = multiprocessing.get_context("spawn")
  ports = ctx.Queue()
  process = ctx.Process(target=_echo_server, daemon=True,
                        args=(ports, reply, server_lib.ServerOptions.grpc_max_workers))
  process.start()
  return process, ports.get(timeout=120)


def paired_overhead(path: str, input_name: str, address: str, model_name: str,
                    calls: int) -> dict:
  """Batch-1 latency of the in-process SavedModel call, of the server's Predict handler called
  in-process, of the same request over gRPC and of a bare gRPC echo server (Python gRPC's own
  floor), in alternating short blocks so that all see the same background load; overhead = gRPC
  p50 / in-process p50 - 1, split into the handler's share and transport's."""
  import grpc  # pylint: disable=g-import-not-at-top
  fn = tf.saved_model.load(path).signatures["serving_default"]
  local_inputs = [tf.constant([q]) for q in QUESTIONS]
  server = _servicer(os.path.dirname(path), model_name)
  servicer = server.prediction_servicer
  with client_lib.PredictClient(address, model_name, timeout=60) as c:
    requests = [c.build_request({input_name: np.array([q.encode()], dtype=object)})
                for q in QUESTIONS]
    stub = c._predict  # pylint: disable=protected-access
    echo_process, echo_port = start_echo_server(
        servicer.predict(requests[0]).SerializeToString())
    echo_channel = grpc.insecure_channel(f"127.0.0.1:{echo_port}")
    echo = echo_channel.unary_unary("/bench.Echo/Call")
    payload = requests[0].SerializeToString()
    local, handler, remote, floor = [], [], [], []
    kinds = (
        (local, lambda j: {k: v.numpy() for k, v in fn(**{input_name: local_inputs[j]}).items()}),
        (handler, lambda j: servicer.predict(requests[j])),
        (remote, lambda j: stub.Predict(requests[j], timeout=60)),
        (floor, lambda j: echo(payload, timeout=60)))
    # Blocks of BLOCK calls of one kind, the kinds alternating: each block's first call is not
    # kept, as it meets the previous kind's threads still spinning on the 2 cores.
    for r in range(1 + -(-calls // (BLOCK - 1))):
      for times, call in kinds:
        for i in range(BLOCK):
          j = (r * BLOCK + i) % len(QUESTIONS)
          t = _timed(lambda: call(j))  # pylint: disable=cell-var-from-loop
          if r and i:
            times.append(t)
    echo_channel.close()
    echo_process.terminate()
    echo_process.join()
  server.stop(0)
  result = {"calls": len(local), "block": BLOCK, "in_process": common.latency_ms(local),
            "handler_in_process": common.latency_ms(handler), "grpc": common.latency_ms(remote),
            "grpc_echo_floor": common.latency_ms(floor)}
  p50 = {name: result[key]["p50_ms"] for name, key in (
      ("in_process", "in_process"), ("handler", "handler_in_process"), ("grpc", "grpc"))}
  # How much the model itself gains from batching: in-process rows/s at batch 32 over batch 1.
  big = tf.constant([QUESTIONS[i % len(QUESTIONS)] for i in range(32)])
  t1, t32 = [], []
  for _ in range(max(5, calls // 20)):
    t1.append(_timed(lambda: fn(**{input_name: local_inputs[0]})))
    t32.append(_timed(lambda: fn(**{input_name: big})))
  result["in_process_batch32_p50_ms"] = common.percentile_ms(t32, 50)
  result["model_batch32_rows_per_s_gain"] = 32 * float(np.median(t1)) / float(np.median(t32))
  result["overhead"] = p50["grpc"] / p50["in_process"] - 1.0
  result["overhead_ms"] = p50["grpc"] - p50["in_process"]
  # Where the overhead goes (p50 differences; they need not add up exactly).
  result["overhead_breakdown_ms"] = {
      "handler": p50["handler"] - p50["in_process"],
      "transport": p50["grpc"] - p50["handler"],
      "of_which_python_grpc_floor": result["grpc_echo_floor"]["p50_ms"]}
  # The smallest overhead a Python gRPC server can show here, as a share of this model's call.
  result["overhead_floor"] = result["grpc_echo_floor"]["p50_ms"] / p50["in_process"]
  return result


def summarize(clients: int, windows) -> dict:
  """Pools the measuring windows of one configuration."""
  latencies = [x for w in windows for x in w["latencies"]]
  seconds = sum(w["seconds"] for w in windows)
  return {"clients": clients, "requests": len(latencies),
          "errors": sum(w["errors"] for w in windows), "seconds": seconds,
          "qps": len(latencies) / seconds, **common.latency_ms(latencies)}


def start_server(base_path, model_name, batching: bool, work_dir,
                 batching_parameters_file: str):
  """Starts `python -m serving.server` on loopback serving `base_path` (with server-side batching
  at `batching_parameters_file` if `batching`), its log in `work_dir`."""
  flags_ = [f"--model_name={model_name}", f"--model_base_path={base_path}",
            "--file_system_poll_wait_seconds=0", "--bind_address=127.0.0.1"]
  if batching:
    flags_ += ["--enable_batching", f"--batching_parameters_file={batching_parameters_file}"]
  log = os.path.join(work_dir, f"server-{'batching' if batching else 'plain'}.log")
  return subprocess_server.start_python_server(flags_, log)


def measure(config: ServingBenchConfig, base_path, input_name, version_path, work_dir):
  """Runs both servers at once and alternates short windows between them (both then get the
  same share of whatever else runs here: a far steadier ratio than back-to-back runs)."""
  model_name = config.model_name
  servers = {batching: start_server(base_path, model_name, batching, work_dir,
                                    config.batching_parameters_file)
             for batching in (False, True)}
  try:
    for server in servers.values():
      server.wait_ready([model_name], timeout=300)
    overhead = paired_overhead(version_path, input_name, servers[False].address, model_name,
                               config.in_process_calls)
    logging.info("batch-1 overhead: %s", overhead)
    results = {False: {}, True: {}}
    window = config.duration_s / config.rounds
    for clients in config.concurrency:
      windows = {False: [], True: []}
      for _ in range(config.rounds):
        for batching in (False, True):
          windows[batching].append(common.grpc_load(
              servers[batching].address, model_name, input_name, QUESTIONS, clients, window,
              warmup_s=config.warmup_s))
      for batching in (False, True):
        results[batching][str(clients)] = summarize(clients, windows[batching])
        logging.info("batching=%s clients=%d: %s", batching, clients,
                     results[batching][str(clients)])
  finally:
    for server in servers.values():
      server.stop()
  stats = servers[True].log().split("batching stats: ")
  if len(stats) > 1:
    results[True]["server_batch_stats"] = stats[1].splitlines()[0]
  return overhead, results[False], results[True]


def run(config: ServingBenchConfig) -> str:
  """Serves the configured model (or writes the synthetic one), measures it with and without
  server-side batching, and writes benchmarks/results/serving.json; returns its path."""
  provenance = common.Provenance(config.allow_dirty)  # refuses a dirty checkout unless allowed
  load_before = os.getloadavg()
  work_dir = tempfile.mkdtemp(prefix="serving_bench-")
  if config.model_base_path:
    base_path = os.path.abspath(config.model_base_path)
    model = {"name": config.model_name, "base_path": base_path}
  else:
    base_path = os.path.join(work_dir, config.model_name)
    toy_models.write_mips_model(base_path, 1, num_rows=config.num_rows)
    model = {"name": config.model_name, "synthetic": "realm_tf.testing.toy_models.MipsModel",
             "num_rows": config.num_rows, "dim": 128, "k": 5}
  version = model_config.list_versions(base_path)[-1]
  path = os.path.join(base_path, str(version))
  input_name = config.input_name
  if input_name is None:
    specs = tf.saved_model.load(path).signatures["serving_default"].structured_input_signature[1]
    input_name = next(iter(specs))
  in_process, plain, batched = measure(config, base_path, input_name, path, work_dir)
  top = str(max(config.concurrency))
  overhead = in_process["overhead"]
  gain = batched[top]["qps"] / plain[top]["qps"]
  result = {
      "load_average_1m_at_start": load_before[0],
      "model": {**model, "version": version, "input": input_name},
      "setup": {"duration_s": config.duration_s, "rounds": config.rounds,
                "warmup_s": config.warmup_s,
                "request": "one question per request (batch 1)",
                "server": "python -m serving.server subprocesses on 127.0.0.1, one with and one "
                          "without --enable_batching, measured in alternating windows",
                "clients": "threads in the benchmark process, one gRPC channel each",
                "batching_parameters_file": os.path.relpath(config.batching_parameters_file)},
      "grpc_vs_in_process_batch1": in_process,
      "grpc_no_batching": plain,
      "grpc_batching": batched,
      "ratios": {
          "grpc_overhead_batch1": overhead,
          "grpc_overhead_batch1_goal": 0.20,
          "grpc_overhead_batch1_met": overhead <= 0.20,
          "grpc_overhead_floor_batch1": in_process["overhead_floor"],
          f"batching_qps_gain_{top}_clients": gain,
          "batching_qps_gain_goal": 3.0,
          "batching_qps_gain_met": gain >= 3.0,
          "model_batch32_rows_per_s_gain": in_process["model_batch32_rows_per_s_gain"],
      },
      "notes": " ".join([
          "Server, clients and model share this machine's cores (and, here, other jobs: see the",
          "load averages), so QPS is a lower bound for a dedicated server.",
          "gRPC overhead = p50 of batch-1 Predict calls (no batching) / p50 of in-process calls",
          "of the same signature - 1, calls in alternating blocks of 10 (the first of each block",
          "not kept) so both see the same background load.",
          "overhead_breakdown_ms splits it: handler = the server's Predict handler called in",
          "this process (validation, proto <-> numpy, response building) minus the bare",
          "signature call; transport = the gRPC call minus the handler (client stub,",
          "serialization, loopback, the server's thread hand-offs).",
          "grpc_echo_floor: the same request bytes to a bare gRPC server in its own process",
          "that answers with the same response bytes (no parsing, no model), interleaved with",
          "the other calls: Python gRPC's own round trip on loopback; overhead_floor = that",
          "floor / the in-process p50, the least overhead any Python handler could show with",
          "this model.",
          "model_batch32_rows_per_s_gain = in-process rows/s at batch 32 over batch 1",
          "(sequential calls): what the model itself gains from bigger batches; the served gain",
          "can exceed it because without batching 32 concurrent calls contend for the cores."]),
  }
  return common.write_result("serving", result, provenance)


if __name__ == "__main__":
  from realm_tf.launch import config_program  # pylint: disable=g-import-not-at-top
  config_program.main(ServingBenchConfig, HELP, run)
