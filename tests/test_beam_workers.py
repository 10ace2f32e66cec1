"""The corpus pipelines on a Beam runner that ships their work to separate worker processes.

Beam's portable runner in `multi_processing` mode (`--direct_num_workers=2
--direct_running_mode=multi_processing`) starts each SDK worker as a Python process of its own
(`apache_beam.runners.worker.sdk_worker_main`) and hands it the pipeline's pickled DoFns over the
Fn API (gRPC), as Dataflow hands them to its workers. build_corpus and annotate_corpus run there on
real text (the shipped SQuAD paragraphs) must start those processes and write the same bytes as
the runner that works in one process.
"""
import json
import os
import subprocess
import sys
import threading

import psutil
import pytest

from realm_tf.data import corpus
from realm_tf.data import documents
from realm_tf.testing import cli as testing

WORKERS = ("--direct_num_workers=2", "--direct_running_mode=multi_processing")
# Manifest fields that name when or from where an output was written, not what it holds.
NOT_CONTENT = ("created", "corpus_dir")


def _write_documents(path, count):
  """The first `count` paragraphs of the shipped SQuAD dev set, one JSONL document each."""
  with open(path, "w", encoding="utf-8") as f:
    for n, doc in enumerate(d for d in documents.read_documents(documents.default_corpus_path())
                            if isinstance(d, documents.Document)):
      if n == count:
        break
      f.write(json.dumps({"id": doc.doc_id, "title": doc.title, "text": doc.text}) + "\n")


def _sdk_workers(pid):
  """Pids of the Beam SDK worker processes among `pid`'s descendants now."""
  try:
    children = psutil.Process(pid).children(recursive=True)
  except psutil.NoSuchProcess:
    return set()
  found = set()
  for child in children:
    try:
      if any("sdk_worker_main" in part for part in child.cmdline()):
        found.add(child.pid)
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
      pass
  return found


def _run(module, *args):
  """Runs `python -m module args` from the repository root to its end: (exit status, stderr,
  pids of the SDK worker processes seen among its descendants while it ran)."""
  proc = subprocess.Popen([sys.executable, "-m", module, *args], cwd=testing.ROOT,
                          env=dict(os.environ, CUDA_VISIBLE_DEVICES=""),
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
  seen, stop = set(), threading.Event()

  def watch():
    while not stop.is_set():
      seen.update(_sdk_workers(proc.pid))
      stop.wait(0.05)

  watcher = threading.Thread(target=watch, daemon=True)
  watcher.start()
  try:
    _, err = proc.communicate(timeout=900)
  finally:
    stop.set()
    watcher.join()
  return proc.returncode, err, seen


def _content(directory, manifest_name):
  """{file name: bytes} of every file of an output folder; its manifest parsed, without the
  fields that name when or from where it was written."""
  out = {}
  for name in sorted(os.listdir(directory)):
    with open(os.path.join(directory, name), "rb") as f:
      data = f.read()
    if name == manifest_name:
      manifest = json.loads(data)
      for key in NOT_CONTENT:
        manifest.pop(key, None)
        manifest.get("source", {}).pop(key, None)
      data = manifest
    out[name] = data
  return out


def _build_both_ways(tmp, count):
  """The corpus of `count` SQuAD paragraphs built in one process and on 2 worker processes:
  (in-process dir, workers dir, worker pids seen)."""
  docs = os.path.join(tmp, "docs.jsonl")
  _write_documents(docs, count)
  dirs, workers = {}, set()
  for side, extra in (("one_process", ()), ("workers", WORKERS)):
    dirs[side] = os.path.join(tmp, side, "corpus")
    rc, err, seen = _run("realm_tf.launch.build_corpus", f"--inputs={docs}",
                         f"--output_dir={dirs[side]}", "--num_shards=2", *extra)
    assert rc == 0, err[-3000:]
    if extra:
      workers = seen
    else:
      assert not seen, "the in-process runner started SDK worker processes"
  return dirs["one_process"], dirs["workers"], workers


def test_build_corpus_on_two_worker_processes_writes_the_in_process_bytes(tmp_path):
  one, two, workers = _build_both_ways(str(tmp_path), 24)
  assert len(workers) >= 2, f"SDK worker processes seen: {sorted(workers)}"
  a, b = _content(one, corpus.MANIFEST), _content(two, corpus.MANIFEST)
  assert sorted(a) == sorted(b)
  assert a == b
  assert a[corpus.MANIFEST]["num_blocks"] >= 24


@pytest.mark.slow
def test_corpus_and_annotations_on_two_worker_processes_equal_the_in_process_ones(tmp_path):
  tmp = str(tmp_path)
  one, two, workers = _build_both_ways(tmp, 200)
  assert len(workers) >= 2, f"SDK worker processes seen: {sorted(workers)}"
  assert _content(one, corpus.MANIFEST) == _content(two, corpus.MANIFEST)
  annotated = {}
  for side, corpus_dir, extra in (("one_process", one, ()), ("workers", two, WORKERS)):
    out = os.path.join(tmp, side, "annotations")
    rc, err, seen = _run("realm_tf.launch.annotate_corpus", f"--corpus_dir={corpus_dir}",
                         f"--output_dir={out}", "--num_shards=2", *extra)
    assert rc == 0, err[-3000:]
    assert len(seen) >= 2 if extra else not seen, sorted(seen)
    annotated[side] = _content(out, corpus.ANNOTATION_MANIFEST)
  assert annotated["one_process"] == annotated["workers"]
  manifest = annotated["workers"][corpus.ANNOTATION_MANIFEST]
  assert manifest["num_records"] > 100, manifest
