r"""BM25 at scale: index build seconds and memory per block, and milliseconds per question.

    nice python -m benchmarks.bm25_bench --num_blocks=100000,1000000   # → benchmarks/results/bm25.json

For each size a fresh process (so its peak RSS is its own) builds `realm_tf.retrieval.bm25` over a
deterministic synthetic corpus of `num_blocks` blocks of at least `words_per_block` words (random
titles and shuffled sentences of the shipped text), then answers `num_questions` SQuAD dev
questions. Recorded per size: the build's raw wall and CPU seconds (the generator's seconds beside
them, never subtracted); the peak memory added while building (this process's peak RSS plus the
sampled peak private memory of the tokenising workers); the RSS added at rest, split into
anonymous memory and the index files' pages; host memory at rest after the questions, counted as
the scale benchmark counts the block lookup's (RSS added, less the index pages it maps, plus every
index page in the page cache); bytes on disk; milliseconds per question. The memory goal
(<= 1,024 B per block) takes the larger of the building peak and that host memory.

`measure(...)` does one size in the calling process (the scale benchmark calls it in a process of
its own); `run(config)` runs every size and writes the JSON with its goals.
"""
import dataclasses
import functools
import json
import os
import re
import resource
import sys
import tempfile
import time
from typing import Iterator, List

import numpy as np

from benchmarks import common
from benchmarks import procs
from realm_tf.config_base import ConfigBase

GOALS = {"build_seconds": 60.0, "bytes_per_block": 1024.0, "ms_per_question": 20.0}
GOAL_BLOCKS = 1_000_000
RESULT_MARKER = "BM25_BENCH_RESULT "

MEASURES = ("realm_tf/retrieval/bm25.py", "realm_tf/data/squad_open.py", "benchmarks/procs.py")


@dataclasses.dataclass
class BM25BenchConfig(ConfigBase):
  """Corpus sizes measured (each in its own process), block length, questions timed."""
  num_blocks: List[int] = dataclasses.field(default_factory=lambda: [100_000, 1_000_000])
  words_per_block: int = 200
  num_questions: int = 1000
  seed: int = 0
  child: bool = False
  allow_dirty: bool = False


HELP = {
    "allow_dirty": common.ALLOW_DIRTY_HELP,
    "num_blocks": "Corpus sizes (blocks), each built in a fresh process.",
    "words_per_block": "Words per synthetic block (whole sentences up to at least this many).",
    "num_questions": "SQuAD dev questions timed.",
    "seed": "Seed of the synthetic corpus.",
    "child": "(internal) measure the first size in this process and print its JSON.",
}


@functools.lru_cache(maxsize=1)
def _sentences():
  """(sentences, their word counts, titles) of the shipped text."""
  from realm_tf.data import default_corpus, documents  # pylint: disable=g-import-not-at-top
  docs = [d for path in (default_corpus.default_corpus_path(), default_corpus.wikitext2_test_path())
          for d in documents.read_documents(path) if isinstance(d, documents.Document)]
  sentences = [s for d in docs for s in re.split(r"(?<=[.!?])\s+", d.text) if s.strip()]
  words = np.array([len(s.split()) for s in sentences])
  return sentences, words, sorted({d.title for d in docs})


def synthetic_texts(num_blocks: int, words_per_block: int = 200, seed: int = 0) -> Iterator[str]:
  """`num_blocks` texts ("title body"), deterministic in `seed`: a random shipped title and random
  shipped sentences, whole, until the body has at least `words_per_block` words."""
  sentences, words, titles = _sentences()
  rng = np.random.RandomState(seed)
  per = int(3 * words_per_block / words.mean()) + 4
  for start in range(0, num_blocks, 4096):
    n = min(4096, num_blocks - start)
    pick = rng.randint(len(sentences), size=(n, per))
    stop = np.minimum((np.cumsum(words[pick], axis=1) < words_per_block).sum(axis=1) + 1, per)
    title = rng.randint(len(titles), size=n)
    for t, row, m in zip(title.tolist(), pick.tolist(), stop.tolist()):
      yield titles[t] + " " + " ".join([sentences[j] for j in row[:m]])


class _Timed:
  """An iterator over `items` that adds the seconds spent producing each item to `seconds`."""

  def __init__(self, items):
    self._it, self.seconds = iter(items), 0.0

  def __iter__(self):
    return self

  def __next__(self):
    t = time.perf_counter()
    try:
      return next(self._it)
    finally:
      self.seconds += time.perf_counter() - t


def measure(num_blocks: int, words_per_block: int = 200, num_questions: int = 1000,
            seed: int = 0) -> dict:
  """Builds a BM25 index of `num_blocks` synthetic blocks in this process and times questions;
  peak RSS is this process's own (VmHWM since its exec; not `ru_maxrss`, which also carries the
  peak of the process that started it): call it in a fresh process for a clean figure."""
  from realm_tf.data.squad_open import load_squad_questions  # pylint: disable=g-import-not-at-top
  from realm_tf.retrieval.bm25 import BM25Index  # pylint: disable=g-import-not-at-top
  questions = [q.question for q in load_squad_questions(split="dev")]
  questions = [questions[i] for i in
               np.random.RandomState(0).choice(len(questions), num_questions, replace=False)]
  _sentences()  # loaded once before the baseline, as the generator holds them
  base = procs.process_memory()
  with tempfile.TemporaryDirectory(prefix="bm25-bench-") as tmp:
    texts = _Timed(synthetic_texts(num_blocks, words_per_block, seed))
    t, c = time.perf_counter(), time.process_time()
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    with procs.PeakSampler(procs.children_private_bytes, 0.2) as workers:
      index = BM25Index.from_texts(texts, num_blocks, directory=os.path.join(tmp, "index"))
    wall, cpu = time.perf_counter() - t, time.process_time() - c
    done = resource.getrusage(resource.RUSAGE_CHILDREN)
    worker_cpu = (done.ru_utime + done.ru_stime) - (children.ru_utime + children.ru_stime)
    main_peak = procs.process_memory()["VmHWM"] - base["VmRSS"]
    built = procs.process_memory()
    index.search(questions[:10], 20)  # warm-up
    t, c = time.perf_counter(), time.process_time()
    index.search(questions, 20)
    q_wall, q_cpu = time.perf_counter() - t, time.process_time() - c
    queried = procs.process_memory()
    mapped = procs.mapped_file_memory(index.directory)
    files = {name: {"bytes": os.path.getsize(os.path.join(index.directory, name)),
                    "resident": procs.resident_file_bytes(os.path.join(index.directory, name))}
             for name in sorted(os.listdir(index.directory))}
    disk = sum(f["bytes"] for f in files.values())
    meta = dict(index.meta)
    index.close()
  added = lambda rss, key: rss[key] - base[key]  # pylint: disable=unnecessary-lambda-assignment
  cached = sum(v["resident"] for v in files.values())
  host = added(queried, "VmRSS") - mapped["Rss"] + cached
  return {
      "num_blocks": num_blocks, "words_per_block_min": words_per_block,
      "tokens_per_block_mean": meta["avgdl"],
      "postings_per_block": meta["num_postings"] / num_blocks,
      "vocab_size": meta["vocab_size"], "index_format": meta["format"],
      "build_seconds": wall, "build_seconds_of_which_generator": texts.seconds,
      "build_cpu_seconds": cpu, "build_worker_cpu_seconds": worker_cpu,
      "tokenising_workers": index.meta.get("workers"),
      "peak_rss_added_building_bytes_per_block": (main_peak + workers.peak) / num_blocks,
      "peak_rss_added_building_main_process_bytes": main_peak,
      "peak_private_bytes_of_tokenising_workers": workers.peak,
      "rss_added_at_rest_bytes_per_block": added(built, "VmRSS") / num_blocks,
      "rss_added_after_questions_bytes_per_block": added(queried, "VmRSS") / num_blocks,
      "anon_rss_added_after_questions_bytes_per_block": added(queried, "RssAnon") / num_blocks,
      "index_file_pages_resident_after_questions_bytes_per_block":
          added(queried, "RssFile") / num_blocks,
      "index_pages_mapped_by_this_process_after_questions": mapped["Rss"],
      "index_pages_in_page_cache_after_questions": cached, "index_files": files,
      "host_bytes_at_rest_after_questions_bytes_per_block": host / num_blocks,
      "index_disk_bytes_per_block": disk / num_blocks,
      "num_questions": num_questions, "k": 20,
      "ms_per_question": 1000 * q_wall / num_questions,
      "cpu_ms_per_question": 1000 * q_cpu / num_questions,
  }


def goals(result: dict) -> dict:
  """The scale goals, from a measurement at >= 1M blocks: the raw build wall time; the larger of
  the building peak and the host memory at rest after the questions (page cache included; None
  for a result measured before that figure was recorded: re-run it)."""
  host = result.get("host_bytes_at_rest_after_questions_bytes_per_block")  # None: an older run
  per_block = None if host is None else max(result["peak_rss_added_building_bytes_per_block"],
                                            host)
  return {"build_seconds_le_60": result["build_seconds"] <= GOALS["build_seconds"],
          "bytes_per_block_le_1024": None if per_block is None else
                                     per_block <= GOALS["bytes_per_block"],
          "ms_per_question_le_20": result["ms_per_question"] <= GOALS["ms_per_question"]}


def run(config: BM25BenchConfig) -> dict:
  """Measures each size in a fresh process; writes benchmarks/results/bm25.json (unless `child`)."""
  if config.child:
    result = measure(config.num_blocks[0], config.words_per_block, config.num_questions,
                     config.seed)
    print(RESULT_MARKER + json.dumps(result), flush=True)
    return result
  provenance = common.Provenance(config.allow_dirty)  # refuses a dirty checkout unless allowed
  sizes = [procs.run_child([sys.executable, "-m", "benchmarks.bm25_bench", "--child",
                            f"--num_blocks={n}", f"--words_per_block={config.words_per_block}",
                            f"--seed={config.seed}", f"--num_questions={config.num_questions}"],
                           RESULT_MARKER, "bm25_bench --child") for n in config.num_blocks]
  largest = max(sizes, key=lambda r: r["num_blocks"])
  payload = {"sizes": sizes, "goal_limits": GOALS,
             "library": "realm_tf.retrieval.bm25: streaming build; 6-byte postings (float32 "
                        "score, uint16 low row bits; segments of 2**16 rows), memory-mapped"}
  if largest["num_blocks"] >= GOAL_BLOCKS:
    payload["goals"] = goals(largest)
  common.write_result("bm25", payload, provenance)
  return payload


if __name__ == "__main__":
  from realm_tf.launch import config_program  # pylint: disable=g-import-not-at-top
  config_program.main(BM25BenchConfig, HELP, run)
