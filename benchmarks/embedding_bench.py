r"""Corpus-embedding throughput (blocks/s) of the refresh job for the `tiny` and `minilm` towers.

For each preset: a random-token corpus of full-length blocks (288 wordpieces packed), an embedder
export, and three runs of `embed_corpus.embed_shards`, each in fresh processes (logical CPU devices
must be configured before TensorFlow starts): one replica; two replicas (MirroredStrategy over two
logical CPU devices, `strategy.run`); two independent worker processes (`--num_shards=2`) running
at the same time. Each process warms up (pipeline start-up, tracing) on a small corpus first; the
timed window covers embedding only. Weights are random (throughput does not depend on them).

  python -m benchmarks.embedding_bench            # → benchmarks/results/embedding.json
"""
import json
import os
import subprocess
import sys
import tempfile
import time

from absl import app
from absl import flags

FLAGS = flags.FLAGS

def define_flags():
  """This benchmark's flags (called from `__main__`, so importing it defines none)."""
  flags.DEFINE_list("presets", ["tiny", "minilm"], "Encoder presets to measure.")
  flags.DEFINE_integer("tiny_blocks", 512, "Blocks embedded for `tiny`.")
  flags.DEFINE_integer("minilm_blocks", 64, "Blocks embedded for `minilm`.")
  flags.DEFINE_integer("batch_size", 16, "Blocks per replica per step.")
  flags.DEFINE_bool("child", False, "(internal) run one embedding worker and print JSON.")
  flags.DEFINE_string("export", None, "(internal) export path.")
  flags.DEFINE_string("corpus", None, "(internal) corpus dir.")
  flags.DEFINE_string("warm_corpus", None, "(internal) warm-up corpus dir.")
  flags.DEFINE_string("work", None, "(internal) work dir.")
  flags.DEFINE_string("strategy", "default", "(internal) strategy.")
  flags.DEFINE_integer("num_cpu_devices", None, "(internal) logical CPU devices.")
  flags.DEFINE_integer("num_shards", 1, "(internal) workers.")
  flags.DEFINE_integer("shard_index", 0, "(internal) this worker.")


DOC_LEN = 288


def child():
  from realm_tf.training.strategy import get_strategy  # pylint: disable=g-import-not-at-top
  strategy = get_strategy(strategy=FLAGS.strategy, num_cpu_devices=FLAGS.num_cpu_devices)
  from realm_tf.retrieval import embed_corpus, embedder_export  # pylint: disable=g-import-not-at-top
  with strategy.scope():
    emb = embedder_export.load_embedder(FLAGS.export)
  embed_corpus.embed_shards(emb, FLAGS.warm_corpus, FLAGS.work + "-warm", strategy,
                            batch_size=FLAGS.batch_size)
  start = time.time()
  stats = embed_corpus.embed_shards(emb, FLAGS.corpus, FLAGS.work, strategy, FLAGS.num_shards,
                                    FLAGS.shard_index, FLAGS.batch_size)
  end = time.time()
  print(json.dumps({"blocks": stats.num_blocks, "start": start, "end": end,
                    "replicas": strategy.num_replicas_in_sync}))


def _make_corpus(path, num_blocks, shards, seed):
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


def _spawn(args):
  return subprocess.Popen([sys.executable, "-m", "benchmarks.embedding_bench", "--child", *args],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _collect(procs):
  outs = []
  for p in procs:
    out, err = p.communicate(timeout=900)
    if p.returncode != 0:
      raise RuntimeError(err[-3000:])
    outs.append(json.loads(out.strip().splitlines()[-1]))
  blocks = sum(o["blocks"] for o in outs)
  seconds = max(o["end"] for o in outs) - min(o["start"] for o in outs)
  return {"blocks": blocks, "seconds": seconds, "blocks_per_second": blocks / seconds,
          "replicas_per_worker": outs[0]["replicas"], "workers": len(outs)}


def run_preset(preset, num_blocks, tmp):
  from realm_tf.modeling.retriever import Retriever, RetrieverConfig  # pylint: disable=g-import-not-at-top
  from realm_tf.retrieval import embedder_export  # pylint: disable=g-import-not-at-top
  retriever = Retriever(RetrieverConfig(encoder=preset, doc_seq_length=DOC_LEN)).build_towers()
  export = embedder_export.export_embedder(retriever, os.path.join(tmp, preset, "model"), 1)
  corpus = os.path.join(tmp, preset, "corpus")
  warm = os.path.join(tmp, preset, "warm")
  _make_corpus(corpus, num_blocks, 4, seed=0)
  _make_corpus(warm, 4, 2, seed=1)  # batches are padded: same shapes, traced once
  base = [f"--export={export}", f"--corpus={corpus}", f"--warm_corpus={warm}",
          f"--batch_size={FLAGS.batch_size}"]
  work = os.path.join(tmp, preset, "work")
  res = {"one_replica": _collect([_spawn(base + [f"--work={work}-1"])])}
  res["two_replicas_logical_cpus"] = _collect([_spawn(
      base + [f"--work={work}-2r", "--strategy=mirrored", "--num_cpu_devices=2"])])
  res["two_worker_shards"] = _collect([
      _spawn(base + [f"--work={work}-2s", "--num_shards=2", f"--shard_index={i}"])
      for i in range(2)])
  one = res["one_replica"]["blocks_per_second"]
  res["speedup_two_replicas"] = res["two_replicas_logical_cpus"]["blocks_per_second"] / one
  res["speedup_two_shards"] = res["two_worker_shards"]["blocks_per_second"] / one
  res["doc_seq_length"] = DOC_LEN
  res["batch_size_per_replica"] = FLAGS.batch_size
  return res


def main(argv):
  del argv
  if FLAGS.child:
    child()
    return
  from benchmarks.common import peak_matmul_flops, write_result  # pylint: disable=g-import-not-at-top
  start = time.time()
  out = {"peak_matmul_flops_at_start": peak_matmul_flops(),
         "note": "CPU only, 2 cores shared with other jobs (see load average): two replicas or "
                 "two workers split the same 2 cores, so speed-ups above 1 come only from "
                 "overlapping input pipeline and compute; on TPU cores / GPUs / separate hosts "
                 "each replica or worker adds its own compute."}
  with tempfile.TemporaryDirectory() as tmp:
    for preset in FLAGS.presets:
      blocks = FLAGS.tiny_blocks if preset == "tiny" else FLAGS.minilm_blocks
      out[preset] = run_preset(preset, blocks, tmp)
  out["seconds"] = time.time() - start
  write_result("embedding", out)


if __name__ == "__main__":
  define_flags()
  app.run(main)
