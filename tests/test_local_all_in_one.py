"""launch/local_all_in_one.sh end to end on a 6-document corpus (trainer + refresher + evaluator).

One work directory goes through four runs of the real script:
1. the refresher is killed (SIGKILL) after it published a bundle of a trainer export during
   training: the trainer switches to that bundle, finishes on the (then stale) index, the
   evaluator stops by itself, the script exits 3 and leaves no process behind;
2. the same command again resumes: no preparation, no training step, the refresher indexes only
   the final export and stops after TRAINING_DONE, the evaluator measures only that bundle; exit 0;
3. once more: nothing left to do, nothing redone; exit 0;
4. the trainer fails (a conflicting configuration): the refresher and the evaluator, which would
   otherwise wait forever, are stopped and the script exits with the trainer's status 2.
"""
import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest

from realm_tf.retrieval import bundle as bundle_lib
from realm_tf.stages import pretrain_job
from realm_tf.training.trainer import DONE_MARKER
from realm_tf.testing import toy_jobs

pytestmark = pytest.mark.slow

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "launch", "local_all_in_one.sh")
STEPS, EVERY = 40, 4  # training must outlast the refresher's first publish (about 10 s)
RUN_TIMEOUT = 900


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
  root = tmp_path_factory.mktemp("aio_corpus")
  src = root / "docs.jsonl"
  src.write_text("\n".join(json.dumps(d) for d in toy_jobs.DOCS) + "\n")
  # Blocks of the main job's default length, which the script's trainer uses.
  pretrain_job.ensure_corpus([str(src)], str(root / "corpus"),
                             block_length=pretrain_job.PretrainJobConfig().block_length)
  pretrain_job.ensure_annotations(str(root / "corpus"), str(root / "annotations"))
  return str(root / "corpus"), str(root / "annotations")


def _flags(corpus, *extra):
  corpus_dir, annotations_dir = corpus
  return [f"--corpus_dir={corpus_dir}", f"--annotations_dir={annotations_dir}", "--ict_steps=2",
          "--ict_batch_size=4", f"--num_train_steps={STEPS}", f"--refresh_every_steps={EVERY}",
          f"--checkpoint_every={EVERY}", "--eval_queries=10", "--batch_size=2",
          "--num_candidates=4", "--min_recall=0", "--retriever_preset=tiny", "--retriever_init=",
          "--reader_preset=tiny", "--reader_init=",
          "--reader_warmup_steps=0", *extra]


def _launch(work, flags, log_path):
  env = dict(os.environ, PYTHON=sys.executable,
             REFRESH_FLAGS="--poll_min_seconds=0.5 --poll_max_seconds=1 --recall_queries=20",
             EVAL_FLAGS="--min_poll_seconds=0.5 --max_poll_seconds=1 --nosquad")
  log = open(log_path, "w")  # pylint: disable=consider-using-with
  proc = subprocess.Popen(["bash", SCRIPT, work, *flags], cwd=ROOT, env=env, stdout=log,
                          stderr=subprocess.STDOUT)
  proc.log_file = log
  return proc


def _finish(proc, log_path):
  try:
    rc = proc.wait(timeout=RUN_TIMEOUT)
  finally:
    proc.log_file.close()
  with open(log_path) as f:
    return rc, f.read()


def _run(work, flags, log_path):
  return _finish(_launch(work, flags, log_path), log_path)


def _pids(text):
  """Child pids the script announced in its last run."""
  out = {}
  for name, pattern in (("refresher", r"Refresher pid (\d+)"), ("evaluator", r"evaluator pid (\d+)"),
                        ("trainer", r"Trainer pid (\d+)")):
    found = re.findall(pattern, text)
    if found:
      out[name] = int(found[-1])
  return out


def _alive(pid):
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  return True


def _processes_using(work):
  """Pids of processes whose command line mentions `work`."""
  found = []
  for pid in os.listdir("/proc"):
    if not pid.isdigit():
      continue
    try:
      with open(f"/proc/{pid}/cmdline", "rb") as f:
        cmd = f.read().replace(b"\0", b" ").decode("utf-8", "replace")
    except OSError:
      continue
    if work in cmd and int(pid) != os.getpid():
      found.append((int(pid), cmd))
  return found


def _assert_no_strays(work, text):
  for name, pid in _pids(text).items():
    assert not _alive(pid), f"{name} (pid {pid}) still runs"
  assert _processes_using(work) == []


def _last_section(path):
  """The part of an appended log written by the script's last run."""
  with open(path) as f:
    return f.read().rsplit("=== ", 1)[-1]


def _bundles(index_dir):
  return {v: bundle_lib.read_manifest(bundle_lib.version_path(index_dir, v))
          for v in bundle_lib.list_versions(index_dir)}


def _recall_records(work):
  with open(os.path.join(work, "recall.jsonl")) as f:
    return [json.loads(line) for line in f if line.strip()]


def test_all_in_one_publishes_during_training_resumes_and_fails_cleanly(corpus, tmp_path):
  work = str(tmp_path / "aio")
  index_dir, exports = os.path.join(work, "index"), os.path.join(work, "realm", "embedder_exports")
  done = os.path.join(work, "realm", DONE_MARKER)
  flags = _flags(corpus)

  # ---- 1. Kill the refresher once it has published a bundle of a trainer export. -------------
  log1 = str(tmp_path / "run1.log")
  t0 = time.time()
  proc = _launch(work, flags, log1)
  killed = None
  while proc.poll() is None and time.time() - t0 < RUN_TIMEOUT:
    from_trainer = [m for m in _bundles(index_dir).values()
                    if os.path.dirname(m["source_export"]) == exports]
    if from_trainer and killed is None:
      with open(log1) as f:
        pid = _pids(f.read())["refresher"]
      assert not os.path.exists(done), "training finished before the first refresh: too slow?"
      os.kill(pid, signal.SIGKILL)
      killed = max(m["version"] for m in from_trainer)
    time.sleep(0.5)
  rc, text = _finish(proc, log1)
  print(f"run 1: {time.time() - t0:.0f}s")
  assert killed is not None, text[-5000:]
  assert rc == 3, text[-5000:]
  assert "WARNING: the index-refresh job failed (status 137) while training runs" in text
  # The trainer switched to the refreshed bundle and still finished every step.
  switched = [int(v) for v in re.findall(r"Switched to IndexBundle\(version=(\d+)", text)]
  assert switched and max(switched) == killed, text[-5000:]
  assert f"[realm] step {STEPS}/{STEPS}" in text
  with open(done) as f:
    assert json.load(f)["step"] == STEPS
  bundles = _bundles(index_dir)
  assert max(bundles) == killed >= 2
  for v, m in bundles.items():
    if v > 1:  # built from the trainer's export of the step it records
      assert m["source_export"] == os.path.join(exports, f"{m['step']:08d}")
      assert m["step"] % EVERY == 0 and m["step"] < STEPS
      assert os.path.isdir(m["source_export"])
  assert bundles[1]["source_export"].startswith(os.path.join(work, "ict"))
  # The evaluator measured the newest bundle and stopped once the refresher was gone.
  evaluated = {r["index_version"] for r in _recall_records(work)}
  assert {1, killed} <= evaluated
  assert all(0.0 <= r["own_block_recall@5"] <= 1.0 for r in _recall_records(work))
  assert "has exited without a bundle of the final export" in _last_section(
      os.path.join(work, "evaluator.log"))
  _assert_no_strays(work, text)

  # ---- 2. The same command resumes: only the final export is indexed and evaluated. ----------
  t0 = time.time()
  rc, text = _run(work, flags, str(tmp_path / "run2.log"))
  print(f"run 2: {time.time() - t0:.0f}s")
  assert rc == 0, text[-5000:]
  assert "skipping the preparation step" in text
  assert re.search(rf"Restored \S+/realm/checkpoints/ckpt-{STEPS} at step {STEPS}", text)
  assert "[realm] step" not in text  # no training step redone
  assert "Training done; published 1 bundle(s)." in _last_section(
      os.path.join(work, "refresh_index.log"))
  bundles2 = _bundles(index_dir)
  final = max(bundles2)
  assert final == killed + 1
  assert bundles2[final]["step"] == STEPS
  assert bundles2[final]["source_export"] == os.path.join(exports, f"{STEPS:08d}")
  records = _recall_records(work)
  assert records[-1]["index_version"] == final and records[-1]["step"] == STEPS
  paths = [r["bundle_path"] for r in records]
  assert len(paths) == len(set(paths)), paths  # nothing evaluated twice
  evaluator_log = _last_section(os.path.join(work, "evaluator.log"))
  assert f"final export (v{final}) is evaluated" in evaluator_log
  _assert_no_strays(work, text)

  # ---- 3. Nothing left: nothing redone. -------------------------------------------------------
  t0 = time.time()
  rc, text = _run(work, flags, str(tmp_path / "run3.log"))
  print(f"run 3: {time.time() - t0:.0f}s")
  assert rc == 0, text[-5000:]
  assert _bundles(index_dir).keys() == bundles2.keys()
  assert _recall_records(work) == records
  assert "Training done; published 0 bundle(s)." in _last_section(
      os.path.join(work, "refresh_index.log"))
  _assert_no_strays(work, text)

  # ---- 4. A failing trainer stops the refresher and the evaluator. ----------------------------
  os.remove(done)  # as if the run had been killed before finishing: both helpers would wait
  t0 = time.time()
  rc, text = _run(work, _flags(corpus, "--learning_rate=0.5"), str(tmp_path / "run4.log"))
  print(f"run 4: {time.time() - t0:.0f}s")
  # The CLI's one-line error for a project error: "error: ...", status 2, no traceback.
  assert rc == 2, text[-5000:]
  assert "error: " in text and "another configuration" in text, text[-5000:]
  assert "Trainer failed (status 2)" in text and "Traceback" not in text
  assert {"refresher", "evaluator", "trainer"} <= _pids(text).keys()
  _assert_no_strays(work, text)
  assert _bundles(index_dir).keys() == bundles2.keys()
