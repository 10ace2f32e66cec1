r"""Export scale benchmark: bytes of the serving exports, the export's peak memory, the server's.

  python -m benchmarks.export_bench --num_blocks=20000,100000
  python -m benchmarks.export_bench --num_blocks=1000000 --result_name=export_1m

For each corpus size N it writes (or takes, `--corpus_dir`) a corpus of 288-wordpiece blocks
(whole vocabulary words drawn by a Zipf law over the 20,000 most frequent: one wordpiece each) and
stand-in random unit embeddings [N, 128] (an .npy memory-mapped as a bundle's is), builds a
micro-tower `OpenQAModel` over a `FrozenIndex` of them and measures, each step in its own process:
the `realm_openqa` export (stock ops: its bytes, the process's peak RSS with model build, its
sampled peak RssAnon and its RSS before exporting); the other corpus-dependent components exported
together; and `python -m realm_tf.launch.model_server` serving it (RSS once AVAILABLE, after a few
questions, and with no model loaded). Each against the corpus's text and embedding bytes; with
several sizes, per-block lines are fitted and extrapolated to REALM's 13,353,718 blocks.

Writes benchmarks/results/<result_name>.json. The settings are an `ExportBenchConfig`;
`run(config)` runs the benchmark.
"""
import dataclasses
import json
import os
import shutil
import sys
import tempfile
import time
from typing import Dict, List, Optional

import numpy as np

from benchmarks import common
from benchmarks import fitting
from benchmarks import procs
from realm_tf.config_base import ConfigBase

BLOCK_WORDPIECES = 288
EMBEDDING_DIM = 128
QUESTIONS = ("who wrote the novel pride and prejudice", "what is the capital of france",
             "when was the eiffel tower built", "which river flows through vienna")


MEASURES = ("realm_tf/export/", "realm_tf/openqa/", "realm_tf/modeling/openqa_model.py",
            "realm_tf/modeling/openqa_features.py", "realm_tf/stages/finetune.py",
            "realm_tf/data/block_lookup.py", "realm_tf/data/corpus.py", "realm_tf/text/",
            "realm_tf/io/memory.py", "serving/", "benchmarks/fitting.py", "benchmarks/procs.py")


@dataclasses.dataclass
class ExportBenchConfig(ConfigBase):
  """Corpus sizes to measure (or one existing corpus), which components to export beside
  `realm_openqa`, where to work, and the JSON's name."""
  num_blocks: List[int] = dataclasses.field(default_factory=lambda: [20000, 100000])
  corpus_dir: Optional[str] = None
  components: List[str] = dataclasses.field(
      default_factory=lambda: ["searcher", "reader", "query_embedder"])
  work_dir: Optional[str] = None
  keep_work_dir: bool = False
  server_timeout_s: float = 1800.0
  result_name: str = "export"
  seed: int = 0
  allow_dirty: bool = False


HELP = {
    "allow_dirty": common.ALLOW_DIRTY_HELP,
    "num_blocks": "Corpus sizes (synthetic corpora), one measurement each.",
    "corpus_dir": "Measure this existing corpus instead (its lookup is built if missing).",
    "components": "Components exported (together, in one more process) beside realm_openqa.",
    "work_dir": "Where corpora and exports go (default: a temporary directory).",
    "keep_work_dir": "Keep the work directory.",
    "server_timeout_s": "Longest wait for the model server to load the export.",
    "result_name": "JSON name under benchmarks/results/.",
    "seed": "Seed of the synthetic texts and embeddings.",
}


def corpus_bytes(export_dir: str) -> int:
  """Bytes of an export's variables that are not numeric model or index arrays: its copy of the
  corpus text (string and uint8 variables; the variables' files less every other variable's
  bytes)."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  reader = tf.train.load_checkpoint(os.path.join(export_dir, "variables", "variables"))
  shapes = reader.get_variable_to_shape_map()
  numeric = sum(int(np.prod(shapes[name])) * dtype.size
                for name, dtype in reader.get_variable_to_dtype_map().items()
                if dtype not in (tf.string, tf.uint8))
  return procs.dir_bytes(os.path.join(export_dir, "variables")) - numeric


def write_synthetic_corpus(corpus_dir: str, num_blocks: int, seed: int = 0,
                           shard_size: int = 50_000) -> None:
  """Writes `num_blocks` blocks of BLOCK_WORDPIECES wordpieces ([CLS] title [SEP] body [SEP])
  with the real corpus writer, streaming one shard at a time."""
  from realm_tf.data import corpus  # pylint: disable=g-import-not-at-top
  from realm_tf.text import RealmTokenizer  # pylint: disable=g-import-not-at-top
  tok = RealmTokenizer()
  vocab = list(tok.vocab)
  # Whole lowercase words, in the vocabulary's (roughly frequency) order.
  ids = np.array([i for i, w in enumerate(vocab) if w.isascii() and w.isalpha() and
                  w.islower() and len(w) > 1][:20000])
  words = np.array(vocab, dtype=object)
  p = 1.0 / np.arange(1, len(ids) + 1)
  p /= p.sum()
  rng = np.random.default_rng(seed)
  os.makedirs(corpus_dir, exist_ok=True)
  num_shards = max(1, -(-num_blocks // shard_size))
  shards = []
  for s in range(num_shards):
    lo, hi = s * shard_size, min((s + 1) * shard_size, num_blocks)
    title_len = rng.integers(1, 4, size=hi - lo)
    drawn = rng.choice(ids, size=(hi - lo, BLOCK_WORDPIECES), p=p)

    def records():
      for i in range(hi - lo):
        t = int(title_len[i])
        title_ids, body_ids = drawn[i, :t], drawn[i, t:BLOCK_WORDPIECES - 3]
        doc_id = f"doc{lo + i}"
        yield corpus.block_example(corpus.block_id_for(doc_id, 0), doc_id,
                                   " ".join(words[title_ids]), " ".join(words[body_ids]),
                                   title_ids.tolist(), body_ids.tolist())

    path = os.path.join(corpus_dir, corpus.SHARD_PATTERN.format(s, num_shards))
    shards.append(corpus.write_shard(path, records()))
  corpus.write_manifest(corpus_dir, shards, tok.fingerprint, BLOCK_WORDPIECES)


def write_embeddings(path: str, num_blocks: int, seed: int = 0, chunk: int = 100_000) -> None:
  """Stand-in document embeddings: random unit vectors float32 [N, EMBEDDING_DIM] as an .npy."""
  rng = np.random.default_rng(seed + 1)
  out = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32,
                                  shape=(num_blocks, EMBEDDING_DIM))
  for lo in range(0, num_blocks, chunk):
    e = rng.normal(size=(min(chunk, num_blocks - lo), EMBEDDING_DIM)).astype(np.float32)
    out[lo:lo + len(e)] = e / np.linalg.norm(e, axis=1, keepdims=True)
  out.flush()
  del out


def export_child(corpus_dir: str, embeddings_path: str, export_base: str,
                 components: List[str]) -> Dict:
  """(In a fresh process.) Builds the micro OpenQAModel over the corpus and embeddings, exports
  `components` (stock variant); {paths, seconds, RSS before, VmHWM, peak RssAnon}."""
  anon = procs.PeakSampler(lambda: procs.process_memory()["RssAnon"], 0.02)
  from realm_tf.data.block_lookup import BlockLookup  # pylint: disable=g-import-not-at-top
  from realm_tf.export import components as components_lib  # pylint: disable=g-import-not-at-top
  from realm_tf.modeling.openqa_model import FrozenIndex, OpenQAConfig  # pylint: disable=g-import-not-at-top
  from realm_tf.stages import finetune  # pylint: disable=g-import-not-at-top
  from realm_tf.testing import openqa_models as oqt  # pylint: disable=g-import-not-at-top
  from realm_tf.text import RealmTokenizer  # pylint: disable=g-import-not-at-top
  tok = RealmTokenizer()
  lookup = BlockLookup.open(corpus_dir)
  index = FrozenIndex(np.load(embeddings_path, mmap_mode="r"), np.asarray(lookup.block_ids),
                      lookup)
  config = OpenQAConfig(retriever=oqt.micro_retriever_config(projection_size=EMBEDDING_DIM),
                        reader=oqt.micro_reader_config())
  model = finetune.build_model(config, index, tok)
  before = procs.process_memory()
  t0 = time.time()
  paths = components_lib.export_components(model, tok, export_base, 1, components, ("stock",),
                                           searcher_k=10)
  return {"paths": paths, "seconds": time.time() - t0, "rss_before_export": before["VmRSS"],
          "peak_rss": procs.process_memory()["VmHWM"], "peak_rss_anon": anon.stop()}


def run_export_child(corpus_dir, embeddings_path, export_base, components) -> Dict:
  """`export_child` in a fresh interpreter; its result plus each model's bytes."""
  result = procs.call("benchmarks.export_bench", "export_child", corpus_dir, embeddings_path,
                      export_base, components, environ=procs.env(quiet=False, **procs.CPU_ONLY))
  result["bytes"] = {name: procs.dir_bytes(path) for name, path in result["paths"].items()}
  result["variables_bytes"] = {name: procs.dir_bytes(os.path.join(path, "variables"))
                               for name, path in result["paths"].items()}
  result["corpus_bytes"] = {name: corpus_bytes(path) for name, path in result["paths"].items()}
  return result


def start_server(model_name: str, model_base: str, log_path: str):
  """`python -m realm_tf.launch.model_server` serving `model_base` as `model_name`."""
  from serving import subprocess_server  # pylint: disable=g-import-not-at-top
  port = subprocess_server.free_port()
  return subprocess_server.ServerProcess(
      [sys.executable, "-m", "realm_tf.launch.model_server", f"--port={port}",
       "--bind_address=127.0.0.1", f"--model_name={model_name}",
       f"--model_base_path={model_base}", "--file_system_poll_wait_seconds=0"], port,
      log_path, env=procs.env(quiet=False, **procs.CPU_ONLY))


def server_memory(model_name: str, model_base: str, work: str, timeout: float) -> Dict:
  """The model server's RSS with no model (serving an empty base path, once its port answers)
  and on `model_base`: once AVAILABLE, and after answering QUESTIONS (one request each)."""
  import grpc  # pylint: disable=g-import-not-at-top
  from serving import client  # pylint: disable=g-import-not-at-top
  empty = os.path.join(work, "no_versions")
  os.makedirs(empty, exist_ok=True)
  server = start_server(model_name, empty, os.path.join(work, "server_empty.log"))
  try:
    with grpc.insecure_channel(server.address) as channel:
      grpc.channel_ready_future(channel).result(timeout=timeout)
    time.sleep(2.0)
    floor = procs.process_memory(server.proc.pid)
  finally:
    server.stop()
  server = start_server(model_name, model_base, os.path.join(work, f"server_{model_name}.log"))
  try:
    t0 = time.time()
    server.wait_ready([model_name], timeout=timeout)
    ready_s = time.time() - t0
    loaded = procs.process_memory(server.proc.pid)
    with client.PredictClient(server.address, model_name, timeout=120) as c:
      for q in QUESTIONS:
        c.predict({"questions": np.array([q.encode()], dtype=object)})
    served = procs.process_memory(server.proc.pid)
  finally:
    server.stop()
  return {"seconds_to_available": ready_s, "rss_without_model": floor["VmRSS"],
          "rss_loaded": loaded["VmRSS"], "rss_anon_loaded": loaded["RssAnon"],
          "rss_file_loaded": loaded["RssFile"], "rss_after_questions": served["VmRSS"],
          "peak_rss": served["VmHWM"]}


def measure(corpus_dir: str, work: str, components: List[str], seed: int,
            server_timeout_s: float) -> Dict:
  """One corpus: embeddings, both exports, the server; every figure of one size."""
  from realm_tf.data.block_lookup import BlockLookup  # pylint: disable=g-import-not-at-top
  lookup = BlockLookup.open(corpus_dir)
  n = lookup.size
  embeddings_path = os.path.join(work, "embeddings.npy")
  write_embeddings(embeddings_path, n, seed)
  base = os.path.join(work, "exports")
  openqa = run_export_child(corpus_dir, embeddings_path, base, ["openqa"])
  parts = run_export_child(corpus_dir, embeddings_path, base, components) if components else None
  server = server_memory("realm_openqa", os.path.join(base, "realm_openqa"), work,
                         server_timeout_s)
  text = int(lookup.meta["num_text_bytes"])
  emb = n * EMBEDDING_DIM * 4
  size = openqa["bytes"]["realm_openqa"]
  held = dict(openqa["corpus_bytes"], **(parts["corpus_bytes"] if parts else {}))
  return {
      "num_blocks": n,
      "text_bytes": text,
      "embedding_bytes": emb,
      "wordpieces": lookup.num_tokens,
      "corpus_bytes_by_model": held,
      "openqa": {"export_bytes": size, "variables_bytes": openqa["variables_bytes"]["realm_openqa"],
                 "export_seconds": openqa["seconds"], "export_peak_rss": openqa["peak_rss"],
                 "export_peak_rss_anon": openqa["peak_rss_anon"],
                 "rss_before_export": openqa["rss_before_export"]},
      "other_components": parts and {
          "export_bytes": parts["bytes"], "export_peak_rss": parts["peak_rss"],
          "rss_before_export": parts["rss_before_export"], "export_seconds": parts["seconds"]},
      "server": server,
      "ratios": {
          "export_over_text_plus_embeddings": size / (text + emb),
          "export_peak_over_export": openqa["peak_rss"] / size,
          "export_peak_anon_over_export": openqa["peak_rss_anon"] / size,
          "server_rss_over_export": server["rss_loaded"] / size,
          "server_rss_added_over_export": (server["rss_loaded"] - server["rss_without_model"]) /
                                          size,
          "corpus_copies": sum(held.values()) / text,
      },
  }


def fit(runs: List[Dict], key_fn) -> Optional[Dict]:
  """The least-squares line of key_fn(run) against N over `runs` (`fitting.fit_linear`):
  per-block slope, intercept and its values at 1M and 13.35M blocks (None with one run)."""
  if len(runs) < 2:
    return None
  line = fitting.fit_linear([(r["num_blocks"], key_fn(r)) for r in runs])
  return {"bytes_per_block": line["b"], "intercept_bytes": line["a"],
          "at_1m_bytes": fitting.extrapolate(line, 1e6),
          "at_13_35m_bytes": fitting.extrapolate(line)}


def goals(ratios: Dict) -> Dict[str, bool]:
  """The export goals of the scale issue, from one set of ratios (`measure`'s)."""
  return {
      "export_within_1_5x_text_plus_embeddings":
          ratios["export_over_text_plus_embeddings"] <= 1.5,
      "export_peak_within_2x_export": ratios["export_peak_over_export"] <= 2.0,
      "server_rss_within_1_5x_export": ratios["server_rss_over_export"] <= 1.5,
  }


def extrapolated(fits: Dict, at: str) -> Optional[Dict]:
  """The ratios `measure` reports, from the fitted lines at `at` ("1m" or "13_35m")."""
  if fits["openqa_export_bytes"] is None:
    return None
  value = lambda name: fits[name][f"at_{at}_bytes"]  # pylint: disable=unnecessary-lambda-assignment
  size = value("openqa_export_bytes")
  ratios = {
      "export_over_text_plus_embeddings": size / value("text_plus_embedding_bytes"),
      "export_peak_over_export": value("openqa_export_peak_rss") / size,
      "export_peak_anon_over_export": value("openqa_export_peak_rss_anon") / size,
      "server_rss_over_export": value("server_rss_loaded") / size,
  }
  return {"ratios": ratios, "goals": goals(ratios)}


def run(config: ExportBenchConfig) -> str:
  """Measures every size (or `corpus_dir`), writes benchmarks/results/<result_name>.json;
  returns its path."""
  provenance = common.Provenance(config.allow_dirty)  # refuses a dirty checkout unless allowed
  work_root = config.work_dir or tempfile.mkdtemp(prefix="export_bench-")
  runs = []
  try:
    sizes = [None] if config.corpus_dir else list(config.num_blocks)
    for n in sizes:
      work = os.path.join(work_root, f"n{n}" if n else "corpus")
      os.makedirs(work, exist_ok=True)
      corpus_dir = config.corpus_dir
      t0 = time.time()
      if corpus_dir is None:
        corpus_dir = os.path.join(work, "corpus")
        write_synthetic_corpus(corpus_dir, n, config.seed)
      corpus_s = time.time() - t0
      result = measure(corpus_dir, work, list(config.components), config.seed,
                       config.server_timeout_s)
      result["corpus_seconds"] = corpus_s
      runs.append(result)
      print(json.dumps(result, indent=2), flush=True)
      if not config.keep_work_dir:
        shutil.rmtree(work, ignore_errors=True)
  finally:
    if not config.keep_work_dir and not config.work_dir:
      shutil.rmtree(work_root, ignore_errors=True)
  largest = max(runs, key=lambda r: r["num_blocks"])
  fits = {
      "openqa_export_bytes": fit(runs, lambda r: r["openqa"]["export_bytes"]),
      "text_plus_embedding_bytes": fit(runs, lambda r: r["text_bytes"] + r["embedding_bytes"]),
      "openqa_export_peak_rss": fit(runs, lambda r: r["openqa"]["export_peak_rss"]),
      "openqa_export_peak_rss_anon": fit(runs, lambda r: r["openqa"]["export_peak_rss_anon"]),
      "server_rss_loaded": fit(runs, lambda r: r["server"]["rss_loaded"]),
  }
  return common.write_result(config.result_name, provenance=provenance, payload={
      "corpus": {"source": config.corpus_dir or
                 "synthetic: whole vocabulary words (Zipf over the 20,000 most frequent), one "
                 "wordpiece each, 288-wordpiece blocks", "block_wordpieces": BLOCK_WORDPIECES},
      "embeddings": f"stand-in random unit vectors [N, {EMBEDDING_DIM}] float32 (the export's "
                    "cost does not depend on their values)",
      "model": "micro towers (realm_tf.testing.openqa_models), stock MIPS variant",
      "runs": runs,
      "fits": fits,
      "extrapolated": {"1m": extrapolated(fits, "1m"), "13_35m": extrapolated(fits, "13_35m")},
      "goals": dict(goals(largest["ratios"]), at_num_blocks=largest["num_blocks"],
                    one_copy_of_the_corpus=largest["ratios"]["corpus_copies"] < 1.5),
  })


if __name__ == "__main__":
  from realm_tf.launch import config_program  # pylint: disable=g-import-not-at-top
  config_program.main(ExportBenchConfig, HELP, run)
