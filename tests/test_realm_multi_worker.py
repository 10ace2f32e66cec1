"""REALM's main job on 2 worker processes: `python -m realm_tf.launch.pretrain
--strategy=multi_worker_mirrored` under TF_CONFIG (gRPC on loopback, CPU), at toy sizes.

The chief (worker 0) builds the corpus and annotations, publishes embedder exports and index
bundles and writes the held-out figures; the other worker waits for each and reads it
(`realm_tf.io.chief`). Checked:
* from scratch, end to end (the default suite's smoke test): corpus and annotations built once,
  ICT, reader warm-up, REALM steps with an inline refresh, one bundle per refresh, held-out
  figures and the summary written once, by the chief;
* from one shared start (ICT + reader warm-up, built by one process), 2 workers train the
  global batches that one process with 2 replicas trains (`--shuffle_window` = the per-worker
  batch, no record filtered out of a host's windows): the same loss at the first step, within
  1e-5 after it, and weights within float32 rounding at the end;
* at every inline refresh both workers search the same bundle, the newest, built from that
  step's export;
* a worker killed mid-run, then both restarted, resume from the chief's last checkpoint, each at
  its own data position, and end with the uninterrupted run's weights;
* with `--refresh=async` the refresher is a third process, and both workers switch to the same
  bundles at the same steps;
* fine-tuning (`python -m realm_tf.launch.finetune`, the index frozen) on 2 workers trains what
  one process with 2 replicas trains, and resumes after a kill as REALM does.
"""
import json
import os
import re
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf

from realm_tf.testing import cli as cli_testing
from realm_tf.testing import toy_jobs
from realm_tf.testing import worker_cluster

# Toy settings: tiny towers and reader from random weights, 2 ICT and 2 warm-up steps, a global
# batch of 4 (2 a worker) and, for REALM, shuffle windows of one worker's batch.
TOY = ["--retriever_preset=tiny", "--retriever_init=", "--ict_steps=2", "--ict_batch_size=2",
       "--reader_preset=tiny", "--reader_init=", "--reader_warmup_steps=2", "--batch_size=4",
       "--shuffle_window=2", "--num_candidates=2", "--refresh_every_steps=2",
       "--checkpoint_every=2", "--min_recall=0", "--heldout_fraction=0.5", "--heldout_queries=8",
       "--eval_questions=none", "--seed=0"]
STEPS = 6
ASYNC_STEPS = 30  # long enough for the refresher process to publish while the workers train
# Every training record is a REALM query (none held out, none the warm-up's alone), so that no
# filter thins a host's windows: 2 workers then read exactly the 1-process stream's batches.
SAME_STREAM = ["--heldout_fraction=0", "--realm_query_fraction=0"]
TWO_WORKERS = ["--strategy=multi_worker_mirrored"]
ONE_PROCESS_TWO_REPLICAS = ["--strategy=mirrored", "--num_cpu_devices=2"]
TIMEOUT_S = 900
COUNTRIES = [("Poland", "Warsaw", "Vistula"), ("France", "Paris", "Seine"),
             ("Italy", "Rome", "Tiber"), ("Austria", "Vienna", "Danube"),
             ("Egypt", "Cairo", "Nile"), ("England", "London", "Thames"),
             ("Germany", "Berlin", "Spree"), ("Hungary", "Budapest", "Danube"),
             ("Russia", "Moscow", "Moskva"), ("Ireland", "Dublin", "Liffey"),
             ("Czechia", "Prague", "Vltava"), ("Portugal", "Lisbon", "Tagus"),
             ("Iraq", "Baghdad", "Tigris"), ("Serbia", "Belgrade", "Sava"),
             ("Scotland", "Edinburgh", "Leith"), ("Spain", "Madrid", "Manzanares"),
             ("Slovakia", "Bratislava", "Danube"), ("Latvia", "Riga", "Daugava"),
             ("Lithuania", "Vilnius", "Neris"), ("Japan", "Tokyo", "Sumida")]
REFRESHED = re.compile(r"Inline refresh at step (\d+) → IndexBundle\(version=(\d+)")
FINETUNE_STEPS = 4
SWITCHED = re.compile(r"Switched to IndexBundle\(version=(\d+).*? at step (\d+)")


def _write_docs(path):
  """40 short documents (a capital and its river per country), as JSONL."""
  with open(path, "w", encoding="utf-8") as f:
    for country, city, river in COUNTRIES:
      f.write(json.dumps({"title": city, "text": f"{city} is the capital of {country}. The "
                          f"{river} flows through {city}. {city} was founded long ago by people "
                          f"of {country}."}) + "\n")
      f.write(json.dumps({"title": river, "text": f"The {river} is a river in {country}. The "
                          f"{river} passes the city of {city} on its way. Fishermen in "
                          f"{country} know the {river} well."}) + "\n")


def _pretrain_args(work, docs, steps, *extra):
  return ["realm_tf.launch.pretrain", f"--work_dir={work}", f"--inputs={docs}",
          f"--num_train_steps={steps}", *TOY, *extra]


def _run_workers(args, log_dir, timeout=TIMEOUT_S):
  """Both workers of `args` to their end; asserts both exit 0; returns the cluster."""
  cluster = worker_cluster.Cluster(args, 2, log_dir)
  statuses = cluster.wait(timeout)
  assert statuses == [0, 0], "\n".join(f"worker {i} (exit {s}):\n{cluster.log(i)[-3000:]}"
                                       for i, s in enumerate(statuses))
  return cluster


def _run_one(args):
  """`args` in one process to its end; asserts it exits 0."""
  proc = cli_testing.run_cli(*args, timeout=TIMEOUT_S)
  assert proc.returncode == 0, proc.stderr[-3000:]


def _losses(work, stage="realm"):
  """{step: training loss} of `stage` (realm, finetune) from the chief's TensorBoard scalars."""
  out = {}
  for path in tf.io.gfile.glob(os.path.join(work, stage, "summaries", stage, "events.*")):
    for event in tf.compat.v1.train.summary_iterator(path):
      for value in event.summary.value:
        if value.tag == f"{stage}/loss":
          out[event.step] = float(tf.make_ndarray(value.tensor))
  return out


def _checkpoint(work, step, stage="realm"):
  """{variable: value} of `stage`'s checkpoint at `step`."""
  reader = tf.train.load_checkpoint(os.path.join(work, stage, "checkpoints", f"ckpt-{step}"))
  return {name: reader.get_tensor(name) for name in reader.get_variable_to_shape_map()
          if name != "_CHECKPOINTABLE_OBJECT_GRAPH"}


def _data_position(ckpt):
  return [v for k, v in ckpt.items() if k.startswith("data_position")][0].tolist()


def _assert_same_training(one_work, two_work, stage, steps):
  """2 workers' losses at every step and end weights against 1 process with 2 replicas: the
  first step's loss equal (the same batch, weights and dropout masks), later ones within 1e-5
  (weights summed by another all-reduce; bit-equal here so far), weights within float32
  rounding of the all-reduce."""
  one, two = _losses(one_work, stage), _losses(two_work, stage)
  assert sorted(one) == sorted(two) == list(range(1, steps + 1))
  assert two[1] == one[1]
  for step in one:
    assert two[step] == pytest.approx(one[step], rel=1e-5), step
  end_one, end_two = _checkpoint(one_work, steps, stage), _checkpoint(two_work, steps, stage)
  for name in end_one:
    if name.startswith("model/"):
      np.testing.assert_allclose(end_two[name], end_one[name], rtol=1e-4, atol=1e-5,
                                 err_msg=name)


def _assert_bit_equal(end, reference):
  assert sorted(end) == sorted(reference)
  differ = [k for k in end if not np.array_equal(end[k], reference[k])]
  assert not differ, differ[:10]


def _kill_after_first_checkpoint(args, checkpoints, log_dir):
  """Starts both workers of `args`, kills worker 1 once `checkpoints` holds ckpt-2 (a machine
  lost), then worker 0 (the job restarted whole, as a cluster manager does); returns the step
  of the newest checkpoint left."""
  cluster = worker_cluster.Cluster(args, 2, log_dir)
  first = os.path.join(checkpoints, "ckpt-2.index")
  deadline = time.monotonic() + TIMEOUT_S
  while not os.path.exists(first) and time.monotonic() < deadline:
    assert all(p.poll() is None for p in cluster.procs), cluster.log(0)[-3000:]
    time.sleep(0.05)
  cluster.kill(1)
  cluster.kill(0)
  return int(tf.train.latest_checkpoint(checkpoints).rsplit("-", 1)[1])


def test_two_workers_run_the_main_job_from_scratch_writing_each_output_once(tmp_path):
  from realm_tf.retrieval import bundle as bundle_lib  # pylint: disable=g-import-not-at-top
  docs = str(tmp_path / "docs.jsonl")
  _write_docs(docs)
  work = str(tmp_path / "work")
  cluster = _run_workers(_pretrain_args(work, docs, 2, *TWO_WORKERS), str(tmp_path / "logs"))
  chief, other = cluster.log(0), cluster.log(1)
  assert "Summary written to" in chief
  assert "This worker's part is done" in other
  # The chief builds, publishes and writes; the other worker waits for its outputs (the index
  # bundle always: it embeds its share with the chief, then waits for the chief's publish).
  assert "Waiting for the chief to write the index bundle of" in other
  for line in ("Building the block corpus", "Annotating", "Published embedder export",
               "Published index bundle", "[heldout]"):
    assert line in chief and line not in other, line
  # One bundle per refresh: the ICT start's, then step 2's, both searched by both workers.
  assert bundle_lib.list_versions(os.path.join(work, "index")) == [1, 2]
  for log in (chief, other):
    assert [(int(s), int(v)) for s, v in REFRESHED.findall(log)] == [(2, 2)]
  with open(os.path.join(work, "summary.json")) as f:
    summary = json.load(f)
  assert summary["train"]["loss"] > 0 and [r["step"] for r in summary["heldout"]] == [0, 2]
  assert summary["heldout_end"]["heldout_queries"] == 8


def test_two_workers_fine_tune_on_a_frozen_index_writing_each_output_once(tmp_path):
  from realm_tf.testing import openqa_models  # pylint: disable=g-import-not-at-top
  work = tmp_path / "mine"
  openqa_models.make_text_corpus(str(work / "corpus"))
  openqa_models.make_bundle(str(work), str(work / "corpus"))
  questions = tmp_path / "qa.jsonl"
  questions.write_text("".join(json.dumps({"question": e.question, "answers": list(e.answers)})
                               + "\n" for e in openqa_models.examples(8)), encoding="utf-8")
  cluster = _run_workers(_finetune_args(str(work), str(questions), "--num_train_steps=2",
                                        *TWO_WORKERS), str(tmp_path / "logs"))
  model_dir = work / "finetune"
  assert (model_dir / "TRAINING_DONE").exists() and (model_dir / "config.json").exists()
  assert tf.train.latest_checkpoint(str(model_dir / "checkpoints")).endswith("ckpt-2")
  assert not list(model_dir.glob(".checkpoints-worker-*/*.index"))  # scratch saves removed
  for i in range(2):
    assert "[finetune] step 2/2" in cluster.log(i)
  assert len(list((model_dir / "summaries" / "finetune").glob("events.*"))) == 1  # the chief's


@pytest.fixture(scope="module")
def start(tmp_path_factory):
  """A shared start built by one process: corpus, annotations, ICT, reader warm-up, index v1."""
  tmp = tmp_path_factory.mktemp("realm_multi_worker")
  docs = str(tmp / "docs.jsonl")
  _write_docs(docs)
  work = str(tmp / "start")
  _run_one(_pretrain_args(work, docs, 0, *SAME_STREAM))
  return {"tmp": tmp, "docs": docs, "work": work}


def _copy_start(start, name):
  """A copy of the shared start; `_start_args` continue it."""
  work = str(start["tmp"] / name)
  shutil.copytree(start["work"], work)
  return work


@pytest.fixture(scope="module")
def one_process(start):
  """REALM from the shared start in one process with 2 replicas (MirroredStrategy)."""
  work = _copy_start(start, "one_process")
  _run_one(_pretrain_args(work, start["docs"], STEPS, *SAME_STREAM, *ONE_PROCESS_TWO_REPLICAS))
  return work


@pytest.fixture(scope="module")
def two_workers(start):
  """REALM from the shared start on 2 worker processes, uninterrupted."""
  work = _copy_start(start, "two_workers")
  cluster = _run_workers(_pretrain_args(work, start["docs"], STEPS, *SAME_STREAM, *TWO_WORKERS),
                         str(start["tmp"] / "two_workers_logs"))
  return {"work": work, "logs": [cluster.log(0), cluster.log(1)]}


@pytest.mark.slow
def test_two_workers_train_what_one_process_with_two_replicas_trains(one_process, two_workers):
  _assert_same_training(one_process, two_workers["work"], "realm", STEPS)


@pytest.mark.slow
def test_both_workers_search_the_newest_bundle_at_every_refresh(two_workers):
  from realm_tf.retrieval import bundle as bundle_lib  # pylint: disable=g-import-not-at-top
  index = os.path.join(two_workers["work"], "index")
  seen = [[(int(s), int(v)) for s, v in REFRESHED.findall(log)] for log in two_workers["logs"]]
  assert seen[0] == seen[1] and [s for s, _ in seen[0]] == [2, 4, 6]
  for step, version in seen[0]:
    manifest = bundle_lib.read_manifest(bundle_lib.version_path(index, version))
    assert manifest["step"] == step  # built from that step's export
  assert seen[0][-1][1] == bundle_lib.latest_version(index)
  assert bundle_lib.list_versions(index) == [1] + [v for _, v in seen[0]]  # no bundle twice


@pytest.mark.slow
def test_a_killed_worker_and_the_chief_resume_from_the_chiefs_checkpoint(start, two_workers):
  work = _copy_start(start, "killed")
  args = _pretrain_args(work, start["docs"], STEPS, *SAME_STREAM, *TWO_WORKERS)
  restored = _kill_after_first_checkpoint(args, os.path.join(work, "realm", "checkpoints"),
                                         str(start["tmp"] / "killed_logs"))
  assert 2 <= restored < STEPS
  positions = _data_position(_checkpoint(work, restored))
  assert len(positions) == 2 and positions == _data_position(
      _checkpoint(two_workers["work"], restored))  # each worker's own, as uninterrupted
  resumed = _run_workers(args, str(start["tmp"] / "resumed_logs"))
  for i in range(2):
    assert f"step {restored}" in resumed.log(i)
  _assert_bit_equal(_checkpoint(work, STEPS), _checkpoint(two_workers["work"], STEPS))


@pytest.mark.slow
def test_async_refresh_runs_beside_two_workers_who_switch_together(start):
  work = _copy_start(start, "async")
  refresher = subprocess.Popen(
      [sys.executable, "-m", "realm_tf.launch.refresh_index", f"--work_dir={work}",
       "--min_recall=0"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
      env=dict(os.environ, CUDA_VISIBLE_DEVICES="", TF_CPP_MIN_LOG_LEVEL="3"))
  try:
    cluster = _run_workers(_pretrain_args(work, start["docs"], ASYNC_STEPS, *SAME_STREAM,
                                          *TWO_WORKERS, "--refresh=async",
                                          "--checkpoint_every=10"),
                           str(start["tmp"] / "async_logs"))
    _, err = refresher.communicate(timeout=TIMEOUT_S)
    assert refresher.returncode == 0, err[-3000:]
  finally:
    if refresher.poll() is None:
      refresher.kill()
      refresher.wait()
  switched = [[(int(v), int(s)) for v, s in SWITCHED.findall(cluster.log(i))] for i in range(2)]
  assert switched[0] == switched[1] and switched[0], switched  # the same bundles, same steps
  versions = [v for v, _ in switched[0]]
  assert versions == sorted(set(versions)) and versions[0] > 1


def _finetune_args(work, questions, *extra):
  return ["realm_tf.launch.finetune", f"--work_dir={work}", f"--dataset=jsonl:{questions}",
          *toy_jobs.FINETUNE_TOY, f"--num_train_steps={FINETUNE_STEPS}", *extra]


@pytest.fixture(scope="module")
def finetuned(start, two_workers):
  """Fine-tuning of the 2-worker REALM run: in one process with 2 replicas, on 2 workers, and
  on 2 workers killed after its first checkpoint, then restarted."""
  questions = str(start["tmp"] / "qa.jsonl")
  with open(questions, "w", encoding="utf-8") as f:
    for country, city, river in COUNTRIES:
      f.write(json.dumps({"question": f"what is the capital of {country}?",
                          "answers": [city]}) + "\n")
      f.write(json.dumps({"question": f"which river flows through {city}?",
                          "answers": [river]}) + "\n")
  out = {}
  for name in ("one_process", "two_workers", "killed"):
    work = str(start["tmp"] / f"finetune_{name}")
    shutil.copytree(two_workers["work"], work)
    out[name] = work
  _run_one(_finetune_args(out["one_process"], questions, *ONE_PROCESS_TWO_REPLICAS))
  _run_workers(_finetune_args(out["two_workers"], questions, *TWO_WORKERS),
               str(start["tmp"] / "finetune_logs"))
  args = _finetune_args(out["killed"], questions, *TWO_WORKERS)
  out["killed_at"] = _kill_after_first_checkpoint(
      args, os.path.join(out["killed"], "finetune", "checkpoints"),
      str(start["tmp"] / "finetune_killed_logs"))
  _run_workers(args, str(start["tmp"] / "finetune_resumed_logs"))
  return out


@pytest.mark.slow
def test_finetuning_on_two_workers_trains_what_one_process_with_two_replicas_trains(finetuned):
  _assert_same_training(finetuned["one_process"], finetuned["two_workers"], "finetune",
                        FINETUNE_STEPS)


@pytest.mark.slow
def test_finetuning_killed_on_two_workers_resumes_to_the_uninterrupted_weights(finetuned):
  assert 2 <= finetuned["killed_at"] < FINETUNE_STEPS
  _assert_bit_equal(_checkpoint(finetuned["killed"], FINETUNE_STEPS, "finetune"),
                    _checkpoint(finetuned["two_workers"], FINETUNE_STEPS, "finetune"))
