"""launch/tpu_vm.sh's control flow on one host and on a pod slice.

No TPU (and no gcloud) is available here, so a stand-in `gcloud` on PATH describes a TPU with 1
or 4 hosts and records every command the script would run on which worker; the script's own
logic runs as it is. What the TensorFlow docs prescribe for pods: one client process (worker 0)
with the TPU's name, not one trainer per host.
"""
import json
import os
import subprocess

import pytest

from realm_tf.testing import cli as testing

# `gcloud compute tpus tpu-vm describe ... --format=json` prints $HOSTS endpoints; `... ssh ...
# --worker=W --command=C` appends {"worker": W, "command": C} to $CALLS.
FAKE_GCLOUD = r"""#!/usr/bin/env python3
import json, os, sys
args = sys.argv[1:]
if "describe" in args:
  n = int(os.environ["HOSTS"])
  print(json.dumps({"networkEndpoints": [{"ipAddress": f"10.0.0.{i + 2}"} for i in range(n)]}))
elif "ssh" in args:
  get = lambda name: next(a.split("=", 1)[1] for a in args if a.startswith(name + "="))
  with open(os.environ["CALLS"], "a") as f:
    f.write(json.dumps({"worker": get("--worker"), "command": get("--command")}) + "\n")
else:
  sys.exit(f"unexpected gcloud call {args}")
"""


def _run(tmp_path, hosts):
  bin_dir = tmp_path / "bin"
  bin_dir.mkdir()
  gcloud = bin_dir / "gcloud"
  gcloud.write_text(FAKE_GCLOUD)
  gcloud.chmod(0o755)
  calls = tmp_path / "calls.jsonl"
  env = dict(os.environ, PATH=f"{bin_dir}:{os.environ['PATH']}", HOSTS=str(hosts),
             CALLS=str(calls), TPU_NAME="my-tpu", ZONE="us-central2-b", BUCKET="gs://b")
  proc = subprocess.run(["bash", os.path.join(testing.ROOT, "launch", "tpu_vm.sh")], env=env,
                        capture_output=True, text=True, timeout=60, check=False)
  assert proc.returncode == 0, proc.stderr
  return [json.loads(line) for line in calls.read_text().splitlines()]


def _trainers(calls):
  return [c for c in calls if "realm_tf.launch.pretrain" in c["command"]]


def test_one_host_installs_the_tpu_runtime_and_trains_with_the_local_tpu(tmp_path):
  calls = _run(tmp_path, hosts=1)
  assert calls[0]["worker"] == "all" and "make install" in calls[0]["command"]
  assert "tensorflow-tpu==2.20.0" in calls[0]["command"]
  assert "'.[gcp]'" in calls[0]["command"]  # Beam's GCS filesystem for gs:// corpora
  trainers = _trainers(calls)
  assert len(trainers) == 1 and trainers[0]["worker"] == "0"
  assert "--tpu=local" in trainers[0]["command"] and "--data_service" not in \
      trainers[0]["command"]


@pytest.mark.parametrize("hosts", [2, 4])
def test_a_pod_slice_runs_one_client_and_a_data_service_worker_per_host(tmp_path, hosts):
  calls = _run(tmp_path, hosts)
  trainers = _trainers(calls)
  # One TensorFlow client for the whole slice, on worker 0, addressing the TPU by name.
  assert len(trainers) == 1 and trainers[0]["worker"] == "0"
  command = trainers[0]["command"]
  assert "--tpu=my-tpu" in command and "TPU_NAME=my-tpu" in command
  assert "--data_service=grpc://10.0.0.2:5050" in command
  services = [c for c in calls if "data_service_worker" in c["command"]]
  dispatchers = [c for c in services if "--dispatcher_port" in c["command"]]
  workers = [c for c in services if "--worker_port" in c["command"]]
  assert len(dispatchers) == 1 and dispatchers[0]["worker"] == "0"
  addresses = ",".join(f"10.0.0.{i + 2}:5051" for i in range(hosts))
  assert f"--worker_addresses={addresses}" in dispatchers[0]["command"]
  assert sorted(c["worker"] for c in workers) == sorted(str(i) for i in range(hosts))
  for i, c in enumerate(sorted(workers, key=lambda c: int(c["worker"]))):
    assert f"--worker_host=10.0.0.{i + 2}" in c["command"]
  # Services start before the trainer.
  assert calls.index(trainers[0]) > max(calls.index(c) for c in services)
