r"""Corpus-embedding throughput (blocks/s) of the refresh job for the `tiny` and `minilm` towers.

  python -m benchmarks.embedding_bench            # → benchmarks/results/embedding.json

For each preset: a random-token corpus of full-length blocks, an embedder export, and three runs
of `embed_corpus.embed_shards` in fresh worker processes (logical CPU devices must be configured
before TensorFlow starts): one replica; two replicas (MirroredStrategy over two logical CPU
devices); two worker processes (`--num_shards=2`) at the same time. Each worker warms up on a
small corpus first; the timed window covers embedding only. Weights are random.
Settings: `EmbeddingBenchConfig` (the `(internal)` fields describe one worker, which this
program starts as `--child`); `run(config)` runs it and writes its JSON.
"""
import dataclasses
import json
import os
import sys
import tempfile
import time
from typing import List, Optional

from benchmarks import common
from benchmarks import procs
from realm_tf.config_base import ConfigBase


MEASURES = ("realm_tf/retrieval/embed_corpus.py", "realm_tf/retrieval/embedder_export.py",
            "realm_tf/modeling/", "realm_tf/utils/strategy.py", "realm_tf/text/",
            "realm_tf/data/corpus.py")


@dataclasses.dataclass
class EmbeddingBenchConfig(ConfigBase):
  """Presets, corpus sizes and batch size per replica measured, and (`child`) one worker's
  export, corpora, work dir, strategy and shard."""
  presets: List[str] = dataclasses.field(default_factory=lambda: ["tiny", "minilm"])
  tiny_blocks: int = 512
  minilm_blocks: int = 64
  batch_size: int = 16
  # One worker process (set by the parent on the child's command line).
  child: bool = False
  export: Optional[str] = None
  corpus: Optional[str] = None
  warm_corpus: Optional[str] = None
  work: Optional[str] = None
  strategy: str = "default"
  num_cpu_devices: Optional[int] = None
  num_shards: int = 1
  shard_index: int = 0
  allow_dirty: bool = False


HELP = {
    "allow_dirty": common.ALLOW_DIRTY_HELP,
    "presets": "Encoder presets to measure.",
    "tiny_blocks": "Blocks embedded for `tiny`.",
    "minilm_blocks": "Blocks embedded for `minilm`.",
    "batch_size": "Blocks per replica per step.",
    "child": "(internal) run one embedding worker and print JSON.",
    "export": "(internal) export path.",
    "corpus": "(internal) corpus dir.",
    "warm_corpus": "(internal) warm-up corpus dir.",
    "work": "(internal) work dir.",
    "strategy": "(internal) strategy.",
    "num_cpu_devices": "(internal) logical CPU devices.",
    "num_shards": "(internal) workers.",
    "shard_index": "(internal) this worker.",
}


DOC_LEN = 288


def run_child(config: EmbeddingBenchConfig) -> None:
  """One worker: embeds `config.warm_corpus` (untimed), then its shard of `config.corpus` with
  the embedder at `config.export` under `config.strategy`; prints a JSON line of the blocks
  embedded, the timed window and the replicas (what the parent's `_workers` reads)."""
  from realm_tf.utils.strategy import get_strategy  # pylint: disable=g-import-not-at-top
  strategy = get_strategy(strategy=config.strategy, num_cpu_devices=config.num_cpu_devices)
  from realm_tf.retrieval import (  # pylint: disable=g-import-not-at-top
      embed_corpus, embedder_export)
  with strategy.scope():
    emb = embedder_export.load_embedder(config.export)
  embed_corpus.embed_shards(emb, config.warm_corpus, config.work + "-warm", strategy,
                            batch_size=config.batch_size)
  start = time.time()
  stats = embed_corpus.embed_shards(emb, config.corpus, config.work, strategy, config.num_shards,
                                    config.shard_index, config.batch_size)
  end = time.time()
  print(json.dumps({"blocks": stats.num_blocks, "start": start, "end": end,
                    "replicas": strategy.num_replicas_in_sync}))


def _make_corpus(path, num_blocks, shards, seed):
  """Writes a corpus of `num_blocks` random-token full-length blocks in `shards` shards."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  from realm_tf.data import corpus as corpus_lib  # pylint: disable=g-import-not-at-top
  from realm_tf.text import vocab_fingerprint  # pylint: disable=g-import-not-at-top
  os.makedirs(path)
  rng = np.random.default_rng(seed)
  entries, per = [], num_blocks // shards
  for s in range(shards):
    records = []
    for i in range(per):
      doc = f"d{s}-{i}"
      records.append(corpus_lib.block_example(
          corpus_lib.block_id_for(doc, 0), doc, "t", "b", rng.integers(1000, 30000, 8).tolist(),
          rng.integers(1000, 30000, 300).tolist()))
    entries.append(corpus_lib.write_shard(
        os.path.join(path, corpus_lib.SHARD_PATTERN.format(s, shards)), records))
  corpus_lib.write_manifest(path, entries, vocab_fingerprint(), DOC_LEN)


def _workers(*args_each):
  """Runs one worker (this program with --child) per argument list at the same time; their
  blocks, their common wall time (first start to last end) and blocks/s."""
  outs = procs.run_children([[sys.executable, "-m", "benchmarks.embedding_bench", "--child", *a]
                             for a in args_each], "embedding worker")
  blocks = sum(o["blocks"] for o in outs)
  seconds = max(o["end"] for o in outs) - min(o["start"] for o in outs)
  return {"blocks": blocks, "seconds": seconds, "blocks_per_second": blocks / seconds,
          "replicas_per_worker": outs[0]["replicas"], "workers": len(outs)}


def run_preset(preset: str, num_blocks: int, tmp: str, batch_size: int) -> dict:
  """One preset's three runs (one replica, two replicas, two worker shards) over a corpus of
  `num_blocks` blocks written under `tmp`, each in fresh worker processes."""
  from realm_tf.modeling.retriever import (  # pylint: disable=g-import-not-at-top
      Retriever, RetrieverConfig)
  from realm_tf.retrieval import embedder_export  # pylint: disable=g-import-not-at-top
  retriever = Retriever(RetrieverConfig(encoder=preset, doc_seq_length=DOC_LEN)).build_towers()
  export = embedder_export.export_embedder(retriever, os.path.join(tmp, preset, "model"), 1)
  corpus = os.path.join(tmp, preset, "corpus")
  warm = os.path.join(tmp, preset, "warm")
  _make_corpus(corpus, num_blocks, 4, seed=0)
  _make_corpus(warm, 4, 2, seed=1)  # batches are padded: same shapes, traced once
  base = [f"--export={export}", f"--corpus={corpus}", f"--warm_corpus={warm}",
          f"--batch_size={batch_size}"]
  work = os.path.join(tmp, preset, "work")
  res = {"one_replica": _workers(base + [f"--work={work}-1"]),
         "two_replicas_logical_cpus": _workers(
             base + [f"--work={work}-2r", "--strategy=mirrored", "--num_cpu_devices=2"]),
         "two_worker_shards": _workers(*[
             base + [f"--work={work}-2s", "--num_shards=2", f"--shard_index={i}"]
             for i in range(2)])}
  one = res["one_replica"]["blocks_per_second"]
  res["speedup_two_replicas"] = res["two_replicas_logical_cpus"]["blocks_per_second"] / one
  res["speedup_two_shards"] = res["two_worker_shards"]["blocks_per_second"] / one
  res["doc_seq_length"] = DOC_LEN
  res["batch_size_per_replica"] = batch_size
  return res


def run(config: EmbeddingBenchConfig) -> Optional[str]:
  """Measures each preset and writes benchmarks/results/embedding.json (returns its path); with
  `config.child`, runs one worker instead (returns None)."""
  if config.child:
    run_child(config)
    return None
  provenance = common.Provenance(config.allow_dirty)  # refuses a dirty checkout unless allowed
  start = time.time()
  out = {"peak_matmul_flops_at_start": common.peak_matmul_flops(),
         "note": "CPU only, 2 cores shared with other jobs (see load average): two replicas or "
                 "two workers split the same 2 cores, so speed-ups above 1 come only from "
                 "overlapping input pipeline and compute; on TPU cores / GPUs / separate hosts "
                 "each replica or worker adds its own compute."}
  with tempfile.TemporaryDirectory() as tmp:
    for preset in config.presets:
      blocks = config.tiny_blocks if preset == "tiny" else config.minilm_blocks
      out[preset] = run_preset(preset, blocks, tmp, config.batch_size)
  out["seconds"] = time.time() - start
  return common.write_result("embedding", out, provenance)


if __name__ == "__main__":
  from realm_tf.launch import config_program  # pylint: disable=g-import-not-at-top
  config_program.main(EmbeddingBenchConfig, HELP, run)
