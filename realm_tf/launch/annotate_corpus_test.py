"""Tests of the annotate_corpus command line (subprocess, DirectRunner)."""
import json
import os
import subprocess
import sys

from absl import flags

from realm_tf.data import annotate
from realm_tf.data import corpus
from realm_tf.launch import annotate_corpus
from realm_tf.testing import cli as testing
from realm_tf.utils import command_line

_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_annotates_a_block_corpus(tmp_path):
  tmp = str(tmp_path)
  blocks = os.path.join(tmp, "blocks")
  os.makedirs(blocks)
  texts = ["Marie Curie was born in Warsaw in 1867.", "She moved to Paris. It rained."]
  records = [corpus.block_example(corpus.block_id_for(f"d{i}", 0), f"d{i}", "T", t, [1], [2])
             for i, t in enumerate(texts)]
  shard = corpus.write_shard(os.path.join(blocks, corpus.SHARD_PATTERN.format(0, 1)), records)
  corpus.write_manifest(blocks, [shard], "vocab")
  out = os.path.join(tmp, "ann")
  proc = subprocess.run(
      [sys.executable, "-m", "realm_tf.launch.annotate_corpus", f"--corpus_dir={blocks}",
       f"--output_dir={out}", "--num_shards=1", "--direct_num_workers=1"],
      cwd=_ROOT, capture_output=True, text=True, timeout=300, check=False)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert "Annotated 2 passages (3 sentences" in proc.stdout
  summary = json.loads(proc.stdout.strip().splitlines()[-1])
  records = list(corpus.read_annotations(out).as_numpy_iterator())
  assert summary["spans"] == sum(len(r["span_starts"]) for r in records)
  spans = {r["text"][s:e].decode() for r in records
           for s, e in zip(r["span_starts"], r["span_limits"])}
  assert {"Marie Curie", "Warsaw", "1867", "Paris"} <= spans, spans
  # The same command again (a kill after the manifest's publish): nothing to do, exit 0, the
  # annotations as they were; other settings are still refused.
  with open(os.path.join(out, corpus.ANNOTATION_MANIFEST), "rb") as f:
    before = f.read()
  args = [f"--corpus_dir={blocks}", f"--output_dir={out}", "--num_shards=1"]
  proc = testing.run_cli("realm_tf.launch.annotate_corpus", *args)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert "already holds these annotations (2 passages)" in proc.stdout
  with open(os.path.join(out, corpus.ANNOTATION_MANIFEST), "rb") as f:
    assert f.read() == before
  proc = testing.run_cli("realm_tf.launch.annotate_corpus", *args, "--keep_unannotated")
  testing.assert_one_line_error(proc, "exists", "--overwrite")


def test_two_sources_are_a_one_line_usage_error(tmp_path):
  proc = testing.run_cli("realm_tf.launch.annotate_corpus", f"--corpus_dir={tmp_path}",
                         "--inputs=x.jsonl", f"--output_dir={tmp_path / 'ann'}")
  testing.assert_one_line_error(proc, "Give one of --corpus_dir or --inputs.")


def test_missing_corpus_is_a_one_line_error(tmp_path):
  tmp = str(tmp_path)
  missing = os.path.join(tmp, "no_corpus")
  proc = testing.run_cli("realm_tf.launch.annotate_corpus", f"--corpus_dir={missing}",
                         f"--output_dir={os.path.join(tmp, 'ann')}")
  testing.assert_one_line_error(proc, f"No corpus manifest at {missing}/manifest.json")


def test_flags_are_defined_only_by_define_flags_and_parse_into_the_config():
  assert not flags.FLAGS.flags_by_module_dict().get(annotate_corpus.__name__)
  fv = flags.FlagValues()
  annotate_corpus.define_flags(fv)
  fv(["annotate_corpus", "--corpus_dir=/c", "--output_dir=/o"])
  assert annotate_corpus.config_from_flags(fv) == annotate.AnnotateConfig(output_dir="/o",
                                                                          corpus_dir="/c")
  fv = flags.FlagValues()
  annotate_corpus.define_flags(fv)
  fv(["annotate_corpus", "--input=x.jsonl", "--format=jsonl", "--sentence_splitter=spacy",
      "--batch_size=8", "--work_dir=/w"])
  config = annotate_corpus.config_from_flags(fv)
  assert (config.inputs, config.fmt, config.sentence_splitter, config.batch_size) == (
      ["x.jsonl"], "jsonl", "spacy", 8)
  assert (config.corpus_dir, config.output_dir) == (None, "/w/annotations")
  assert command_line.deprecated_aliases_used(fv) == [("input", "inputs")]


def test_the_work_dir_gives_the_corpus_and_the_output():
  fv = flags.FlagValues()
  annotate_corpus.define_flags(fv)
  fv(["annotate_corpus", "--work_dir=/w"])
  assert annotate_corpus.config_from_flags(fv) == annotate.AnnotateConfig(
      output_dir="/w/annotations", corpus_dir="/w/corpus")
