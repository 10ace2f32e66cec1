"""Tests of the work-directory layout."""
import os
import subprocess
import sys

import pytest

from realm_tf.io.work_dir import WorkDir


def test_layout_and_explicit_folders():
  w = WorkDir("/w", index_dir="/elsewhere/index", model_dir="/m")
  assert w.corpus == "/w/corpus" and w.annotations == "/w/annotations"
  assert w.index == "/elsewhere/index" and w.realm == "/m"
  assert w.reader == "/w/reader_warmup" and w.ict == "/w/ict"
  assert w.summary_file == "/w/summary.json" and w.recall_log == "/w/recall.jsonl"
  assert w.as_dict() == {"corpus": "/w/corpus", "annotations": "/w/annotations",
                         "index": "/elsewhere/index", "ict": "/w/ict",
                         "reader": "/w/reader_warmup", "realm": "/m"}
  with pytest.raises(ValueError, match="Unknown stage 'bundle'"):
    w.path("bundle")


def test_shell_assignments_evaluate_in_bash():
  root = "/tmp/a dir"  # a space survives the quoting
  out = subprocess.run([sys.executable, "-m", "realm_tf.io.work_dir", root], check=True,
                       capture_output=True, text=True).stdout
  echoed = subprocess.run(["bash", "-c", f'eval "{out.strip()}"; echo "$CORPUS|$MODEL|$READER"'],
                          check=True, capture_output=True, text=True).stdout.strip()
  assert echoed == "|".join(os.path.join(root, d) for d in ("corpus", "realm", "reader_warmup"))
