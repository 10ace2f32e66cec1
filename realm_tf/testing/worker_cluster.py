"""A local multi-worker cluster for tests: N processes of one program, each with a TF_CONFIG that
names it a worker of the cluster (MultiWorkerMirroredStrategy's gRPC on free loopback ports).

    cluster = worker_cluster.Cluster(["realm_tf.launch.pretrain", "--work_dir=...", ...],
                                     num_workers=2, log_dir=tmp)
    statuses = cluster.wait(timeout=600)      # or cluster.kill(1) while it runs
"""
import json
import os
import signal
import socket
import subprocess
import sys
import time
from typing import Callable, Dict, List, Optional, Sequence


def free_ports(n: int) -> List[int]:
  """`n` distinct free local TCP ports (bound together, then released for the workers)."""
  socks = [socket.socket() for _ in range(n)]
  try:
    for s in socks:
      s.bind(("localhost", 0))
    return [s.getsockname()[1] for s in socks]
  finally:
    for s in socks:
      s.close()


def tf_config(addresses: Sequence[str], index: int) -> str:
  """The TF_CONFIG of worker `index` of a cluster of `addresses` (worker 0 is the chief)."""
  return json.dumps({"cluster": {"worker": list(addresses)},
                     "task": {"type": "worker", "index": index}})


class Cluster:
  """`python -m <argv>` started once per worker, CPU only, each worker's output in
  `<log_dir>/worker-<i>.log`; `extra_args(i)` adds arguments of worker i."""

  def __init__(self, argv: Sequence[str], num_workers: int, log_dir: str,
               env: Optional[Dict[str, str]] = None,
               extra_args: Optional[Callable[[int], Sequence[str]]] = None):
    os.makedirs(log_dir, exist_ok=True)
    self.addresses = [f"localhost:{p}" for p in free_ports(num_workers)]
    self.logs = [os.path.join(log_dir, f"worker-{i}.log") for i in range(num_workers)]
    self.procs: List[subprocess.Popen] = []
    for i in range(num_workers):
      environ = dict(os.environ if env is None else env, CUDA_VISIBLE_DEVICES="",
                     TF_CPP_MIN_LOG_LEVEL="3", TF_CONFIG=tf_config(self.addresses, i))
      with open(self.logs[i], "ab") as out:
        self.procs.append(subprocess.Popen(
            [sys.executable, "-m", *argv, *(extra_args(i) if extra_args else ())],
            stdout=out, stderr=subprocess.STDOUT, env=environ))

  def wait(self, timeout: float) -> List[int]:
    """Every worker's exit status; the workers still running after `timeout` seconds are
    killed (status -9)."""
    deadline = time.monotonic() + timeout
    statuses = []
    for proc in self.procs:
      try:
        statuses.append(proc.wait(timeout=max(0.0, deadline - time.monotonic())))
      except subprocess.TimeoutExpired:
        self.kill_all()
        statuses.append(proc.wait())
    return statuses

  def kill(self, index: int) -> None:
    """SIGKILL to worker `index` (a machine lost), reaped."""
    proc = self.procs[index]
    if proc.poll() is None:
      proc.send_signal(signal.SIGKILL)
    proc.wait()

  def kill_all(self) -> None:
    """SIGKILL to every worker still running."""
    for i in range(len(self.procs)):
      self.kill(i)

  def log(self, index: int) -> str:
    """Worker `index`'s output so far."""
    with open(self.logs[index], encoding="utf-8", errors="replace") as f:
      return f.read()
