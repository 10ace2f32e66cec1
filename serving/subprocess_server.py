"""Start a model server (ours or tensorflow_model_server) as a subprocess and wait until it serves.

Used by the end-to-end tests and the serving benchmark, which must talk to a separate process over
real gRPC on loopback, as a deployed client would.
"""
import os
import signal
import socket
import subprocess
import sys
import time
from typing import List, Optional, Sequence

import grpc
from tensorflow_serving.apis import get_model_status_pb2, model_service_pb2_grpc

AVAILABLE = get_model_status_pb2.ModelVersionStatus.AVAILABLE


def free_port() -> int:
  """A TCP port that was free a moment ago on localhost."""
  with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


class ServerProcess:
  """A running server subprocess with its port and log file."""

  def __init__(self, argv: Sequence[str], port: int, log_path: str,
               env: Optional[dict] = None):
    self.argv = list(argv)
    self.port = port
    self.address = f"localhost:{port}"
    self.log_path = log_path
    self._log = open(log_path, "wb")  # pylint: disable=consider-using-with
    self.proc = subprocess.Popen(self.argv, stdout=self._log, stderr=subprocess.STDOUT,
                                 env=env)

  def log(self) -> str:
    """Everything the server has printed so far."""
    if not self._log.closed:
      self._log.flush()
    with open(self.log_path, encoding="utf-8", errors="replace") as f:
      return f.read()

  def available_versions(self, model_name: str, timeout: float = 2.0) -> List[int]:
    """Versions of `model_name` in state AVAILABLE ([] if the server is not up yet)."""
    with grpc.insecure_channel(self.address) as channel:
      stub = model_service_pb2_grpc.ModelServiceStub(channel)
      request = get_model_status_pb2.GetModelStatusRequest()
      request.model_spec.name = model_name
      try:
        response = stub.GetModelStatus(request, timeout=timeout)
      except grpc.RpcError:
        return []
    return [s.version for s in response.model_version_status if s.state == AVAILABLE]

  def wait_ready(self, model_names: Sequence[str], timeout: float = 120.0) -> None:
    """Polls GetModelStatus until every model has an AVAILABLE version.

    Raises:
      RuntimeError: with the server's log, if it exits or is not ready within `timeout`.
    """
    deadline = time.monotonic() + timeout
    pending = list(model_names)
    while pending:
      if self.proc.poll() is not None:
        raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.log()[-4000:]}")
      if time.monotonic() > deadline:
        self.stop()
        raise RuntimeError(f"server not ready after {timeout}s (waiting for {pending}):\n"
                           f"{self.log()[-4000:]}")
      pending = [m for m in pending if not self.available_versions(m)]
      if pending:
        time.sleep(0.2)

  def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
    """Sends `sig` and waits for exit (kills after `timeout`); returns the exit code."""
    if self.proc.poll() is None:
      self.proc.send_signal(sig)
      try:
        self.proc.wait(timeout)
      except subprocess.TimeoutExpired:
        self.proc.kill()
        self.proc.wait()
    self._log.close()
    return self.proc.returncode


def python_server_argv(port: int, flags: Sequence[str]) -> List[str]:
  """argv running `python -m serving.server` with this interpreter."""
  return [sys.executable, "-m", "serving.server", f"--port={port}", *flags]


def start_python_server(flags: Sequence[str], log_path: str,
                        port: Optional[int] = None) -> ServerProcess:
  """Starts `python -m serving.server` (quiet TF logs, CPU only) on a free port."""
  port = port or free_port()
  env = dict(os.environ)
  env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
  env.setdefault("CUDA_VISIBLE_DEVICES", "")
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
  return ServerProcess(python_server_argv(port, flags), port, log_path, env=env)
