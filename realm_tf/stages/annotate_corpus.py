"""The annotation stage: spaCy NER marks the salient spans of the corpus blocks with Apache
Beam, unless the output already holds this same annotation (`stage_rules.finished_output`).

Run by `python -m realm_tf.launch.annotate_corpus` and, within its work dir's lock, by the main
job (`pretrain_job.ensure_annotations`).
"""
from typing import Dict, Optional, Sequence

from absl import logging

from realm_tf.data import annotate
from realm_tf.data import corpus
from realm_tf.data.annotate import AnnotateConfig
from realm_tf.stages import stage_rules


def same_annotation(config: AnnotateConfig, manifest: Dict) -> bool:
  """Whether `manifest` records the annotation `config` asks for: of this corpus (its directory
  and fingerprint), with this spaCy model and sentence splitter, keeping the same passages, in
  as many shards. Annotations of --inputs files are never taken as finished."""
  if not config.corpus_dir:
    return False
  source = manifest.get("source") or {}
  return (source.get("corpus_dir") == config.corpus_dir
          and source.get("corpus_fingerprint")
          == corpus.load_manifest(config.corpus_dir)["fingerprint"]
          and manifest.get("spacy_model") == config.spacy_model
          and manifest.get("sentence_splitter") == config.sentence_splitter
          and manifest.get("keep_unannotated") == config.keep_unannotated
          and len(manifest.get("shards", [])) == config.num_shards)


def finished(config: AnnotateConfig, accept_any: bool = False) -> Optional[Dict]:
  """The annotation manifest in `config.output_dir` when it records this annotation
  (`same_annotation`; with `accept_any`, any annotations there); None otherwise (then annotating
  refuses existing annotations unless `config.overwrite`)."""
  same = None if accept_any else (lambda m: same_annotation(config, m))
  return stage_rules.finished_output(config.output_dir, corpus.ANNOTATION_MANIFEST,
                                     corpus.load_annotation_manifest, same, config.overwrite)


def run(config: AnnotateConfig, beam_args: Optional[Sequence[str]] = None,
        lock_dir: Optional[str] = None, accept_any: bool = False) -> Dict:
  """Annotates what `config` names, holding `lock_dir`'s writer lock (None: no lock; the output
  is published whole by an atomic rename). Returns the library's result ({"manifest",
  "counters", "bad_records", ...}), or {"manifest", "finished_before": True} when the output
  already holds this annotation (`finished`)."""
  with stage_rules.writing(lock_dir):
    done = stage_rules.finished_or_chiefs(lambda: finished(config, accept_any),
                                          f"the annotations in {config.output_dir}")
    if done is not None:
      return {"manifest": done, "finished_before": True, "counters": {}, "bad_records": []}
    logging.info("Annotating %s into %s (Beam options: %s)", config.corpus_dir or config.inputs,
                 config.output_dir, beam_args)
    return annotate.annotate_corpus(config, beam_args)
