"""Tests of the build_corpus command line (runs it in a subprocess under the DirectRunner)."""
import json
import os
import subprocess
import sys

from absl import flags
import pytest

from realm_tf.data import corpus_pipeline as build_corpus_lib
from realm_tf.data import corpus
from realm_tf.data import documents
from realm_tf.io import work_dir
from realm_tf.launch import build_corpus as build_corpus_cli
from realm_tf.testing import cli as testing
from realm_tf.utils import command_line

_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.mark.slow  # covered more cheaply elsewhere; make test-slow
def test_command_line_matches_library_across_processes(tmp_path):
  # (--direct_num_workers is not an absl flag: it must reach Beam.)
  tmp = str(tmp_path)
  path = os.path.join(tmp, "docs.jsonl")
  with open(path, "w") as f:
    for i in range(5):
      f.write(json.dumps({"title": f"Doc {i}", "text": f"Doc {i} mentions Paris. Twice."})
              + "\n")
    f.write("{oops\n")
  out = os.path.join(tmp, "cli")
  env = dict(os.environ, PYTHONHASHSEED="12345")  # proto maps must serialise the same anyway
  proc = subprocess.run(
      [sys.executable, "-m", "realm_tf.launch.build_corpus", f"--inputs={path}",
       f"--output_dir={out}", "--num_shards=2", "--direct_num_workers=1"],
      cwd=_ROOT, env=env, capture_output=True, text=True, timeout=300, check=False)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert "Built 5 blocks from 5 documents in 2 shards" in proc.stdout
  assert "docs.jsonl:6: malformed_json" in proc.stdout
  summary = json.loads(proc.stdout.strip().splitlines()[-1])
  assert summary["bad_records"] == {"malformed_json": 1}
  lib = build_corpus_lib.build_corpus(build_corpus_lib.BuildCorpusConfig(
      inputs=[path], output_dir=os.path.join(tmp, "lib"), num_shards=2, max_block_length=128))
  assert summary["fingerprint"] == lib["manifest"]["fingerprint"]
  assert corpus.load_manifest(out)["num_blocks"] == 5


def test_existing_output_is_a_one_line_error_without_beam_or_cloud_noise(tmp_path):
  out = str(tmp_path)
  manifest = os.path.join(out, corpus.MANIFEST)
  with open(manifest, "w") as f:
    f.write("{}")
  proc = testing.run_cli("realm_tf.launch.build_corpus", f"--output_dir={out}")
  testing.assert_one_line_error(proc, f"{manifest} exists", "--overwrite")
  # Matching the input loads Beam's filesystems: their GCS / BigQuery / apitools warnings stay
  # quiet by default (realm_tf/utils/command_line.py).
  for noise in ("GCSFileSystem", "apitools", "bigquery", "python-snappy"):
    assert noise not in proc.stderr


def test_flags_are_defined_only_by_define_flags_and_parse_into_the_config():
  assert not flags.FLAGS.flags_by_module_dict().get(build_corpus_cli.__name__)
  fv = flags.FlagValues()
  build_corpus_cli.define_flags(fv)
  rest = fv(["build_corpus", "--output_dir=/o", "--direct_num_workers=2"], known_only=True)
  assert rest == ["build_corpus", "--direct_num_workers=2"]  # Beam's
  # The main job's block length: a corpus built here is the one `pretrain` would build.
  assert build_corpus_cli.config_from_flags(fv) == build_corpus_lib.BuildCorpusConfig(
      inputs=[documents.default_corpus_path()], output_dir="/o",
      max_block_length=work_dir.DEFAULT_BLOCK_LENGTH)
  fv(["build_corpus", "--inputs=a,b", "--format=squad", "--block_length=288", "--strict"])
  assert build_corpus_cli.config_from_flags(fv) == build_corpus_lib.BuildCorpusConfig(
      inputs=["a", "b"], output_dir="/o", fmt="squad", max_block_length=288, strict=True)


def test_old_flag_names_still_work_and_the_work_dir_gives_the_output():
  fv = flags.FlagValues()
  build_corpus_cli.define_flags(fv)
  fv(["build_corpus", "--input=a", "--max_block_length=64", "--work_dir=/w"])
  config = build_corpus_cli.config_from_flags(fv)
  assert (config.inputs, config.max_block_length, config.output_dir) == (["a"], 64, "/w/corpus")
  assert command_line.deprecated_aliases_used(fv) == [("input", "inputs"),
                                                      ("max_block_length", "block_length")]


def test_rerun_of_a_finished_build_has_nothing_to_do(tmp_path):
  """The same command after a kill that came after the manifest's publish exits 0 and leaves the
  corpus as it was; other settings are still refused."""
  docs = tmp_path / "docs.jsonl"
  docs.write_text(json.dumps({"title": "A", "text": "One sentence. Two sentences."}) + "\n")
  out = str(tmp_path / "corpus")
  args = [f"--inputs={docs}", f"--output_dir={out}", "--num_shards=1", "--block_length=64"]
  proc = testing.run_cli("realm_tf.launch.build_corpus", *args)
  assert proc.returncode == 0, proc.stderr[-3000:]
  with open(os.path.join(out, corpus.MANIFEST), "rb") as f:
    before = f.read()
  proc = testing.run_cli("realm_tf.launch.build_corpus", *args)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert "already holds this build (1 blocks" in proc.stdout
  with open(os.path.join(out, corpus.MANIFEST), "rb") as f:
    assert f.read() == before
  proc = testing.run_cli("realm_tf.launch.build_corpus", *args[:-1], "--block_length=96")
  testing.assert_one_line_error(proc, "exists", "--overwrite")
