"""Tests of the work-directory layout."""
import os
import subprocess
import sys

import pytest

from realm_tf.data import corpus as corpus_lib
from realm_tf.io import work_dir
from realm_tf.io.work_dir import WorkDir


def test_layout_and_explicit_folders():
  w = WorkDir("/w", index_dir="/elsewhere/index", model_dir="/m")
  assert w.corpus == "/w/corpus" and w.annotations == "/w/annotations"
  assert w.index == "/elsewhere/index" and w.realm == "/m"
  assert w.reader == "/w/reader_warmup" and w.ict == "/w/ict"
  assert w.summary_file == "/w/summary.json" and w.recall_log == "/w/recall.jsonl"
  assert w.finetune == "/w/finetune" and w.serving == "/w/serving"
  assert w.settings_file == "/w/settings.json"
  assert w.as_dict() == {"corpus": "/w/corpus", "annotations": "/w/annotations",
                         "index": "/elsewhere/index", "ict": "/w/ict",
                         "reader": "/w/reader_warmup", "realm": "/m",
                         "finetune": "/w/finetune", "serving": "/w/serving"}
  assert work_dir.derive("/w", {"index_dir": ("index", None), "model_dir": ("finetune", ""),
                                "corpus_dir": ("corpus", "/c")}) == {
      "index_dir": "/w/index", "model_dir": "/w/finetune", "corpus_dir": "/c"}
  with pytest.raises(ValueError, match="Unknown stage 'bundle'"):
    w.path("bundle")


def test_shell_assignments_evaluate_in_bash():
  root = "/tmp/a dir"  # a space survives the quoting
  out = subprocess.run([sys.executable, "-m", "realm_tf.io.work_dir", root], check=True,
                       capture_output=True, text=True).stdout
  echoed = subprocess.run(["bash", "-c", f'eval "{out.strip()}"; echo "$CORPUS|$MODEL|$READER"'],
                          check=True, capture_output=True, text=True).stdout.strip()
  assert echoed == "|".join(os.path.join(root, d) for d in ("corpus", "realm", "reader_warmup"))


def _corpus(path, inputs, block_length):
  """A corpus manifest (no shards) as build_corpus writes it."""
  corpus_lib.write_manifest(str(path), [], "vocab", block_length, extra={"inputs": inputs})


def test_block_length_is_the_corpus_and_another_one_is_refused(tmp_path):
  assert work_dir.block_length_of(str(tmp_path / "none")) is None
  assert work_dir.block_length_of(str(tmp_path / "none"), 64) == 64
  _corpus(tmp_path, ["/d.jsonl"], 128)
  assert work_dir.block_length_of(str(tmp_path)) == 128
  assert work_dir.block_length_of(str(tmp_path), 128) == 128
  with pytest.raises(work_dir.WorkDirMismatchError,
                     match=r"^--block_length=288, but the corpus in .* has 128-wordpiece blocks"):
    work_dir.block_length_of(str(tmp_path), 288)


def test_other_inputs_than_the_corpus_was_built_from_are_refused(tmp_path, monkeypatch):
  monkeypatch.chdir(tmp_path)
  _corpus(tmp_path, [str(tmp_path / "a.jsonl")], 128)
  assert work_dir.check_inputs(str(tmp_path), None)["max_block_length"] == 128  # none given
  assert work_dir.check_inputs(str(tmp_path), ["a.jsonl"])  # the same file, relative
  with pytest.raises(work_dir.WorkDirMismatchError, match="was built from .*a.jsonl.*b.jsonl"):
    work_dir.check_inputs(str(tmp_path), ["b.jsonl"])
  assert work_dir.check_inputs(str(tmp_path / "empty"), ["b.jsonl"]) is None


def test_settings_are_recorded_once_and_a_difference_is_named(tmp_path):
  w = WorkDir(str(tmp_path / "w"))
  settings = {"query_length": 32, "retriever_init": "minilm", "share_towers": True}
  assert not work_dir.check_settings(w, settings) and work_dir.recorded_settings(w) == {}
  work_dir.record_settings(w, settings)
  assert work_dir.recorded_settings(w) == settings and work_dir.check_settings(w, settings)
  with pytest.raises(work_dir.WorkDirMismatchError) as e:
    work_dir.check_settings(w, dict(settings, query_length=96, retriever_init=None))
  assert str(e.value) == (
      f"{w.root} was built with other settings ({w.settings_file}): --query_length=96 (built "
      "with 32), --retriever_init= (built with minilm). Use another --work_dir, or the settings "
      "it was built with.")
