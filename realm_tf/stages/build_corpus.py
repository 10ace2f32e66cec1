"""The corpus stage: Apache Beam turns document files into the block corpus Z, unless the
output already holds this same build (`stage_rules.finished_output`).

Run by `python -m realm_tf.launch.build_corpus` and, within its work dir's lock, by the main job
(`pretrain_job.ensure_corpus`).
"""
from typing import Dict, Optional, Sequence

from absl import logging

from realm_tf.data import corpus
from realm_tf.data import corpus_pipeline
from realm_tf.data.corpus_pipeline import BuildCorpusConfig
from realm_tf.stages import stage_rules


def same_build(config: BuildCorpusConfig, manifest: Dict) -> bool:
  """Whether `manifest` records the build `config` asks for: its inputs, format, lengths and
  shards."""
  return (manifest.get("inputs") == list(config.inputs)
          and manifest.get("format") == (config.fmt or "auto")
          and manifest.get("max_block_length") == config.max_block_length
          and manifest.get("max_title_length") == config.max_title_length
          and manifest.get("max_document_bytes") == config.max_document_bytes
          and len(manifest.get("shards", [])) == config.num_shards)


def finished(config: BuildCorpusConfig, accept_any: bool = False) -> Optional[Dict]:
  """The corpus manifest in `config.output_dir` when it records this build (`same_build`; with
  `accept_any`, any corpus there); None otherwise (then the build refuses an existing corpus
  unless `config.overwrite`)."""
  same = None if accept_any else (lambda m: same_build(config, m))
  return stage_rules.finished_output(config.output_dir, corpus.MANIFEST, corpus.load_manifest,
                                     same, config.overwrite)


def run(config: BuildCorpusConfig, beam_args: Optional[Sequence[str]] = None,
        lock_dir: Optional[str] = None, accept_any: bool = False) -> Dict:
  """Builds the corpus `config` describes, holding `lock_dir`'s writer lock (None: no lock;
  the output is published whole by an atomic rename). Returns the library's result
  ({"manifest", "counters", "bad_records", ...}), or {"manifest", "finished_before": True}
  when the output already holds this build (`finished`)."""
  with stage_rules.writing(lock_dir):
    done = stage_rules.finished_or_chiefs(lambda: finished(config, accept_any),
                                          f"the corpus in {config.output_dir}")
    if done is not None:
      return {"manifest": done, "finished_before": True, "counters": {}, "bad_records": []}
    logging.info("Building the block corpus from %s into %s (Beam options: %s)", config.inputs,
                 config.output_dir, beam_args)
    return corpus_pipeline.build_corpus(config, beam_args)
