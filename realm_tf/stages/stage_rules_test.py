"""The stages' two rules: a stage called from Python takes its folder's writer lock (a live
writer refuses it before it writes anything), and an output is finished when its manifest
records this same work."""
import json
import os

import pytest

from realm_tf.data import corpus
from realm_tf.data.annotate import AnnotateConfig
from realm_tf.data.corpus_pipeline import BuildCorpusConfig
from realm_tf.io import work_dir_lock
from realm_tf.stages import annotate_corpus
from realm_tf.stages import build_corpus
from realm_tf.stages import export_job
from realm_tf.stages import finetune
from realm_tf.stages import ict_experiment
from realm_tf.stages import pretrain_job
from realm_tf.stages import reader_warmup
from realm_tf.stages import realm_experiment
from realm_tf.stages import stage_rules
from realm_tf.testing import lock_holder
from realm_tf.testing import retrieval_fixtures


def test_an_output_is_finished_when_its_manifest_records_this_work(tmp_path):
  out = str(tmp_path / "corpus")
  name, load = corpus.MANIFEST, corpus.load_manifest
  assert stage_rules.finished_output(out, name, load, lambda m: True) is None  # nothing there
  retrieval_fixtures.make_corpus(out)
  manifest = load(out)
  assert stage_rules.finished_output(out, name, load, lambda m: True) == manifest
  assert stage_rules.finished_output(out, name, load, None) == manifest  # any manifest
  assert stage_rules.finished_output(out, name, load, lambda m: False) is None  # other work
  assert stage_rules.finished_output(out, name, load, lambda m: True, overwrite=True) is None
  with open(os.path.join(out, name), "w", encoding="utf-8") as f:
    f.write("{not json")
  assert stage_rules.finished_output(out, name, load, lambda m: True) is None  # unreadable
  with pytest.raises(corpus.CorpusError, match="manifest.json"):  # any: must be readable
    stage_rules.finished_output(out, name, load, None)


def test_a_build_is_the_same_only_with_its_inputs_format_lengths_and_shards(tmp_path):
  config = BuildCorpusConfig(inputs=["/d/a.jsonl"], output_dir=str(tmp_path), num_shards=2)
  manifest = {"inputs": ["/d/a.jsonl"], "format": "auto", "max_block_length": 288,
              "max_title_length": 32, "max_document_bytes": config.max_document_bytes,
              "shards": [{}, {}]}
  assert build_corpus.same_build(config, manifest)
  for key, other in (("inputs", ["/d/b.jsonl"]), ("format", "squad"), ("max_block_length", 128),
                     ("max_title_length", 16), ("max_document_bytes", 10), ("shards", [{}])):
    assert not build_corpus.same_build(config, dict(manifest, **{key: other})), key


def test_annotations_are_the_same_only_of_this_corpus_model_splitter_and_shards(tmp_path):
  corpus_dir = str(tmp_path / "corpus")
  retrieval_fixtures.make_corpus(corpus_dir)
  config = AnnotateConfig(output_dir=str(tmp_path / "annotations"), corpus_dir=corpus_dir,
                          num_shards=2)
  manifest = {"source": {"corpus_dir": corpus_dir,
                         "corpus_fingerprint": corpus.load_manifest(corpus_dir)["fingerprint"]},
              "spacy_model": config.spacy_model, "sentence_splitter": config.sentence_splitter,
              "keep_unannotated": config.keep_unannotated, "shards": [{}, {}]}
  assert annotate_corpus.same_annotation(config, manifest)
  for key, other in (("source", {"corpus_dir": corpus_dir, "corpus_fingerprint": "x"}),
                     ("spacy_model", "en_core_web_lg"), ("sentence_splitter", "spacy"),
                     ("keep_unannotated", not config.keep_unannotated), ("shards", [{}])):
    assert not annotate_corpus.same_annotation(config, dict(manifest, **{key: other})), key
  inputs_only = AnnotateConfig(output_dir=config.output_dir, inputs=["/d/a.jsonl"])
  assert not annotate_corpus.same_annotation(inputs_only, manifest)


def _stage_runs(work: str):
  """Each writing stage called from Python on the held folder `work` (its inputs do not exist:
  a run that took no lock would stop on them with another error)."""
  missing = os.path.join(work, "missing")
  return {
      "build_corpus": lambda: build_corpus.run(
          BuildCorpusConfig(inputs=[missing], output_dir=os.path.join(work, "corpus")),
          lock_dir=work),
      "annotate_corpus": lambda: annotate_corpus.run(
          AnnotateConfig(output_dir=os.path.join(work, "annotations"), corpus_dir=missing),
          lock_dir=work),
      "ict": lambda: ict_experiment.run(ict_experiment.IctJobConfig(
          corpus_dir=missing, model_dir=os.path.join(work, "ict"), lock_dir=work)),
      "reader_warmup": lambda: reader_warmup.run(reader_warmup.ReaderWarmupJobConfig(
          corpus_dir=missing, model_dir=work)),
      "realm": lambda: realm_experiment.run(realm_experiment.RealmJobConfig(
          corpus_dir=missing, index_dir=missing, model_dir=work)),
      "finetune": lambda: finetune.run(finetune.FinetuneJobConfig(
          index_dir=missing, corpus_dir=missing, model_dir=work)),
      "export": lambda: export_job.run(export_job.ExportConfig(model_dir=missing,
                                                               export_base=work)),
      "pretrain": lambda: pretrain_job.run(pretrain_job.PretrainJobConfig(
          work_dir=work, inputs=[os.path.join(missing, "docs.jsonl")])),
  }


def test_every_writing_stage_called_from_python_is_refused_by_a_live_writer(tmp_path):
  work = str(tmp_path / "work")
  holder = lock_holder.start_holder(work)
  try:
    before = sorted(os.walk(tmp_path))
    for name, run in _stage_runs(work).items():
      with pytest.raises(work_dir_lock.WorkDirBusyError,
                         match=f"{work} is in use by pid {holder.pid}"):
        run()
      assert sorted(os.walk(tmp_path)) == before, f"{name} wrote before it was refused"
  finally:
    holder.kill()
    holder.wait()


def test_the_main_job_holds_its_work_dir_across_the_stages_it_runs(tmp_path, monkeypatch):
  """Its lock is taken once and is re-entered by the stages it runs, not taken again."""
  work = str(tmp_path / "work")
  seen = []

  def stages(config, strategy):
    del strategy
    holder = json.loads(open(os.path.join(work, work_dir_lock.LOCK_FILE),
                             encoding="utf-8").read())
    with stage_rules.writing(config.work_dir) as lock:  # a stage under the job's lock
      seen.append((holder["pid"], lock.held))
    with pytest.raises(work_dir_lock.WorkDirBusyError):  # another holder is still refused
      work_dir_lock.WorkDirLock(work).acquire()
    return {"dirs": config.dirs()}

  monkeypatch.setattr(pretrain_job, "_run_stages", stages)
  summary = pretrain_job.run(pretrain_job.PretrainJobConfig(work_dir=work))
  assert seen == [(os.getpid(), True)]
  assert json.load(open(os.path.join(work, "summary.json"), encoding="utf-8")) == summary
  work_dir_lock.WorkDirLock(work).acquire().release()  # free once the job returns
