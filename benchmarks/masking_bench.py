r"""Masked-example (and ICT) tf.data throughput, with and without parallel map + prefetch.

    python -m benchmarks.masking_bench [--num_examples=3000]

The first `--num_passages` blocks of the shipped SQuAD dev corpus are annotated (untimed) and
written as annotation records; examples/s of Masker.dataset over them are timed per masking mode,
sequential vs parallel map + prefetch and batched (32) as a trainer reads it, and ICT examples the
same way; with benchmarks/results/train_step.json, the ratio to the trainer's examples/s.
Writes benchmarks/results/masking.json. Settings: `MaskingBenchConfig`; `run(config)`.
"""
import dataclasses
import json
import os
import tempfile
import time

from benchmarks import common
from realm_tf.config_base import ConfigBase


MEASURES = ("realm_tf/data/masking.py", "realm_tf/data/ict_examples.py",
            "realm_tf/data/annotate.py", "realm_tf/data/blocking.py", "realm_tf/data/corpus.py",
            "realm_tf/data/documents.py", "realm_tf/text/")


@dataclasses.dataclass
class MaskingBenchConfig(ConfigBase):
  """Annotated passages fed, and examples timed per configuration after untimed ones."""
  num_passages: int = 200
  num_examples: int = 3000
  warmup: int = 200
  allow_dirty: bool = False


HELP = {
    "allow_dirty": common.ALLOW_DIRTY_HELP,
    "num_passages": "Annotated passages (the records repeat).",
    "num_examples": "Timed examples per configuration.",
    "warmup": "Untimed examples first (tracing, buffers).",
}


def run(config: MaskingBenchConfig) -> dict:
  """Times the masked-example and ICT tf.data pipelines over the first `config.num_passages`
  corpus blocks; writes benchmarks/results/masking.json and returns the results."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  provenance = common.Provenance(config.allow_dirty)  # refuses a dirty checkout unless allowed
  # pylint: disable-next=g-import-not-at-top
  from realm_tf.data import annotate, blocking, corpus, documents, ict_examples, masking
  from realm_tf.text import RealmTokenizer  # pylint: disable=g-import-not-at-top

  tok = RealmTokenizer()
  docs = [d for d in documents.read_documents(documents.default_corpus_path())
          if isinstance(d, documents.Document)][:config.num_passages]
  blocker = blocking.Blocker(tok)
  blocks = [(d, b) for d, bs in zip(docs, blocker.split_batch([(d.title, d.text) for d in docs]))
            for b in bs][:config.num_passages]
  anns = annotate.SpanAnnotator().annotate([b.body for _, b in blocks])
  tmp = tempfile.mkdtemp()
  ann_path = os.path.join(tmp, "annotations.tfrecord.gz")
  block_path = os.path.join(tmp, "blocks.tfrecord.gz")
  with tf.io.TFRecordWriter(ann_path, options="GZIP") as w:
    for (d, b), a in zip(blocks, anns):
      w.write(corpus.annotation_example(b.title, b.body, a.sentences, a.spans, a.span_types,
                                        corpus.block_id_for(d.doc_id, b.block_index)))
  corpus.write_shard(block_path, [corpus.block_example(
      corpus.block_id_for(d.doc_id, b.block_index), d.doc_id, b.title, b.body, b.title_ids,
      b.body_ids) for d, b in blocks])

  def measure(ds):
    it = iter(ds)
    for _ in range(config.warmup):
      next(it)
    t = time.perf_counter()
    for _ in range(config.num_examples):
      next(it)
    return config.num_examples / (time.perf_counter() - t)

  def variants(make):
    seq = make(None)
    par = make(tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)
    out = {"sequential_no_prefetch": measure(seq), "parallel_map_prefetch": measure(par)}
    batched = make(tf.data.AUTOTUNE).batch(32).prefetch(tf.data.AUTOTUNE)
    it = iter(batched)
    for _ in range(config.warmup // 32 + 1):
      next(it)
    n = config.num_examples // 32
    t = time.perf_counter()
    for _ in range(n):
      next(it)
    out["parallel_batched_32"] = n * 32 / (time.perf_counter() - t)
    out["parallel_over_sequential"] = out["parallel_map_prefetch"] / out["sequential_no_prefetch"]
    return out

  results = {"num_passages": len(blocks), "num_examples": config.num_examples, "masking": {}}
  records = corpus.read_annotations(None, paths=[ann_path]).cache().repeat()
  for mode in masking.MODES:
    masker = masking.Masker(masking.MaskingConfig(mode=mode), tok)
    results["masking"][mode] = variants(
        lambda n, m=masker: m.dataset(records, num_parallel_calls=n))
  block_ds = corpus.read_blocks(None, paths=[block_path]).cache().repeat()
  builder = ict_examples.ICTExampleBuilder(tokenizer=tok)
  results["ict"] = variants(lambda n: builder.dataset(block_ds, num_parallel_calls=n))

  train_path = os.path.join(common.RESULTS_DIR, "train_step.json")
  if os.path.exists(train_path):
    with open(train_path) as f:
      train = json.load(f)
    ratios = {}
    for c in train.get("configs", []):
      key = "ict" if c.get("task") == "ict" else "salient"
      feed = (results["ict"] if key == "ict" else results["masking"]["salient"])
      ratios[f"{c.get('task')}/{c.get('preset')}"] = (
          feed["parallel_batched_32"] / c["examples_per_second"])
    results["input_over_trainer_examples_per_second"] = ratios
    results["trainer_reference"] = "benchmarks/results/train_step.json (same machine kind)"
  common.write_result("masking", results, provenance)
  return results


if __name__ == "__main__":
  from realm_tf.launch import config_program  # pylint: disable=g-import-not-at-top
  config_program.main(MaskingBenchConfig, HELP, run)
