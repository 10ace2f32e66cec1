r"""Wikipedia scale: every host-side stage's seconds and memory at several corpus sizes, fitted as
a + b*N and extrapolated to the paper's 13,353,718 blocks, with the scale goals computed.

    nice python -m benchmarks.scale_bench --sizes=20000,100000,1000000   # hours; alone on the host
    nice python -m benchmarks.scale_bench --sizes=2000,8000 --preset=tiny --output_name=scale_smoke

Corpus: deterministic documents of shuffled shipped sentences (`scale_corpus`), written as JSON
lines and built by the real `python -m realm_tf.launch.build_corpus` into full 288-wordpiece blocks.
Each stage runs in a process of its own (`scale_stages`, or the project's CLI), and records wall
seconds and the process's peak RSS (the kernel's, `os.wait4`) beside the figures it reads from
/proc/self; "added" figures are over a bare `import tensorflow` process or over the stage's own
start. Stages per size: corpus build, the block lookup (build peak; RSS at rest after packing every
block; bytes on disk; a second process mapping the same files while the first holds them), the
index (ScaNN build + recall check + publishing a bundle, search latency, `rebuilds` rebuilds and
reloads in one process), the pre-training input pipeline restored at each of `positions`, the
held-out evaluation (masked metrics on a sample, dense question recall's top-k, BM25 via
`benchmarks.bm25_bench`) and the open-QA export with the server's RSS (`benchmarks.export_bench`).
Annotation and the document tower's throughput are measured on sample corpora (their cost per
block does not depend on N), and so is the trainer (`scale_trainer`: the main job's process at
the paper's flags, BERT-base, with inline and with async refresh; `host_at_paper_scale` adds the
parts that grow with N). Every stage result records its provenance (commit and whether the
checkout was dirty, start time UTC, 1-minute load average before and after, wall seconds); each
fit and goal names the stage results it read.

The resume stage (`scale_resume`) restores training's query stream, a synthetic annotation stream
of `resume_records` records with the default shuffle window, at each of `resume_positions`, each
restore in a fresh process, with the shards before the position's window unreadable.

Stand-ins (recorded in the JSON): clustered random embeddings instead of embedding N blocks;
freshly initialised towers; the largest annotation sample as the pre-training stream (a data
position past its end wraps, as the repeated stream does).

Everything is cached under --work_dir (/tmp/scale: several GB at 1M blocks): a stage whose result
is there is not measured again unless named in --rerun; --stages picks stages. Writes
benchmarks/results/<output_name>.json. The settings are a `ScaleBenchConfig`; `run(config)` runs
the benchmark (or, with the internal --stage, one stage in this process).
"""
import dataclasses
import json
import os
import shutil
import subprocess
import sys
import time
from typing import Dict, List, Optional

from benchmarks import common
from benchmarks import scale_fit
from benchmarks.scale_corpus import BLOCK_LENGTH
from realm_tf.config_base import ConfigBase

SIZE_STAGES = ("corpus", "lookup_build", "lookup_rest", "index", "scann_rebuilds", "pipeline",
               "heldout_masked", "dense_recall", "bm25", "export")
SAMPLE_STAGES = ("annotation", "embedding", "trainer", "resume")
# A generous bound on the work dir's bytes per block (documents, shards, lookup, stand-in
# embeddings, bundle, BM25 and export), checked against the free space before each size.
DISK_BYTES_PER_BLOCK = 8000
QUERY_LENGTH = 96  # REALM's query length, wordpieces (its block length: scale_corpus's)


# The code this benchmark measures (besides its own file): a commit to any of these paths
# after a result's commit makes that result stale (`python -m benchmarks.status`).
MEASURES = (
    "realm_tf/",
    "serving/",
    "launch/configs/paper_tpu.flags",
    "benchmarks/scale_stages.py",
    "benchmarks/scale_fit.py",
    "benchmarks/scale_corpus.py",
    "benchmarks/scale_trainer.py",
    "benchmarks/scale_resume.py",
    "benchmarks/bm25_bench.py",
    "benchmarks/export_bench.py",
)


@dataclasses.dataclass
class ScaleBenchConfig(ConfigBase):
  """Corpus sizes (blocks), samples, which stages to run or re-run, and the stage settings."""
  sizes: List[int] = dataclasses.field(default_factory=lambda: [20_000, 100_000, 1_000_000])
  corpus_sizes: List[int] = dataclasses.field(
      default_factory=lambda: [100_000, 200_000, 300_000, 1_000_000])
  work_dir: str = "/tmp/scale"
  stages: List[str] = dataclasses.field(default_factory=lambda: ["all"])
  rerun: List[str] = dataclasses.field(default_factory=list)
  annotation_blocks: List[int] = dataclasses.field(default_factory=lambda: [1000, 4000])
  embedding_blocks: int = 256
  trainer_blocks: int = 16
  positions: List[int] = dataclasses.field(default_factory=lambda: [0, 10_000_000])
  resume_records: int = 1_000_000
  resume_positions: List[int] = dataclasses.field(
      default_factory=lambda: [0, 10_000_000, 100_000_000])
  resume_repeats: int = 3
  blocks_per_document: int = 8
  blocks_per_shard: int = 50_000
  seed: int = 0
  preset: str = "minilm"
  embedding_dim: int = 128
  clusters: int = 4096
  rebuilds: int = 10
  recall_queries: int = 1000
  num_questions: int = 1000
  heldout_queries: int = 16
  pipeline_batches: int = 5
  pipeline_repeats: int = 2
  shuffle_window: int = 16384
  beam_args: List[str] = dataclasses.field(default_factory=list)
  output_name: str = "scale"
  stage: Optional[str] = None
  stage_args: Optional[str] = None
  allow_dirty: bool = False


HELP = {
    "sizes": "Corpus sizes in blocks (the largest >= 1,000,000 for the goals).",
    "corpus_sizes": "Corpus sizes (blocks) the corpus build's peak RSS is fitted over (its "
                    "goal: slope + standard error); those not in --sizes run the corpus stage "
                    "only. None above the largest of --sizes.",
    "work_dir": "Where corpora, indexes and stage results are kept between runs.",
    "stages": f"Stages to run: all, or of {SIZE_STAGES + SAMPLE_STAGES}.",
    "rerun": "Stages to measure again although a result is cached (all: every one).",
    "annotation_blocks": "Sample corpus sizes annotated.",
    "embedding_blocks": "Sample blocks embedded by the document tower.",
    "trainer_blocks": "Sample corpus of the trainer stage (the main job at the paper's flags, "
                      "BERT-base, inline and async refresh: benchmarks/scale_trainer.py).",
    "positions": "Data positions the input pipeline is restored at.",
    "resume_records": "Records of the resume stage's synthetic annotation stream.",
    "resume_positions": "Data positions the resume stage restores the query stream at (the "
                        "first is the one the others are compared with).",
    "resume_repeats": "Fresh-process restores per position and kind in the resume stage.",
    "blocks_per_document": "Blocks of each synthetic document.",
    "blocks_per_shard": "Corpus blocks per shard (the shard count follows the size).",
    "seed": "Seed of the synthetic documents and stand-in embeddings.",
    "preset": "Encoder preset of the towers (the main job's retriever: minilm).",
    "embedding_dim": "Embedding size of the index (REALM's 128).",
    "clusters": "Centres of the clustered stand-in embeddings.",
    "rebuilds": "ScaNN rebuilds (and reloads) in one process.",
    "recall_queries": "Queries of the refresher's recall check.",
    "num_questions": "SQuAD dev questions of dense recall and BM25.",
    "heldout_queries": "Held-out masked sentences evaluated.",
    "pipeline_batches": "Batches timed after the input pipeline's first.",
    "pipeline_repeats": "Rebuilds of the input pipeline timed at each position.",
    "shuffle_window": "Shuffle window of the pre-training stream.",
    "beam_args": "Extra Beam pipeline options of corpus building and annotation.",
    "output_name": "Result name: benchmarks/results/<name>.json.",
    "stage": "(internal) run this one stage in this process.",
    "stage_args": "(internal) the stage's arguments, JSON.",
    "allow_dirty": common.ALLOW_DIRTY_HELP,
}


def _log(msg: str) -> None:
  print(f"[scale] {time.strftime('%H:%M:%S')} {msg}", file=sys.stderr, flush=True)


def stage_command(name: str, args: Dict) -> List[str]:
  """The command line of one `scale_stages` stage in its own process."""
  return [sys.executable, "-m", "benchmarks.scale_bench", f"--stage={name}",
          f"--stage_args={json.dumps(args)}"]


def run_stage_process(name: str, args: Dict) -> Dict:
  """Runs a `scale_stages` stage in a fresh process; its result plus wall seconds and peak RSS.
  Raises RuntimeError naming the stage and its last error lines when it fails."""
  from benchmarks.scale_stages import RESULT_MARKER  # pylint: disable=g-import-not-at-top
  p = common.run_process(stage_command(name, args))
  result = common.parse_stage_output(p["stdout"], RESULT_MARKER)
  if p["rc"] != 0 or result is None:
    raise RuntimeError(f"scale stage {name} failed (exit {p['rc']}):\n{p['stderr_tail']}")
  return dict(result, wall_seconds=p["seconds"], peak_rss=p["peak_rss"])


class Bench:
  """One run: the work dir's layout, the stage cache, and each stage's orchestration."""

  def __init__(self, config: ScaleBenchConfig, provenance: Optional[common.Provenance] = None):
    self.c = config
    self.provenance = provenance  # the run's start stamp (None: each stage reads the checkout)
    self.w = os.path.abspath(config.work_dir)
    wanted = set(config.stages)
    self.all = "all" in wanted
    self.wanted = wanted
    self.rerun = set(config.rerun)
    os.makedirs(self.w, exist_ok=True)

  def want(self, stage: str) -> bool:
    return self.all or stage in self.wanted

  def size_dir(self, n: int) -> str:
    return os.path.join(self.w, f"n{n}")

  def cached(self, n: Optional[int], stage: str, fn, family: Optional[str] = None,
             required: bool = False):
    """`fn()`'s result, kept as <size dir>/stages/<stage>.json and read back from there unless
    `stage`'s family (default: the stage) is in --rerun. A stage not in --stages runs only when
    `required` (a prerequisite) and nothing is cached; otherwise it gives None. A stage that
    fails gives {"failed": its error} (not cached, so the next run tries again)."""
    d = os.path.join(self.size_dir(n) if n is not None else self.w, "stages")
    path = os.path.join(d, f"{stage}.json")
    family = family or stage
    again = family in self.rerun or ("all" in self.rerun and self.want(family))
    if os.path.exists(path) and not again:
      with open(path) as f:
        return json.load(f)
    if not (self.want(family) or required or again):
      return None
    where = f"n={n:,}" if n is not None else "global"
    _log(f"{where}: {stage} ...")
    stamp = provenance_start(self.provenance)
    try:
      result = fn()
    except RuntimeError as e:
      _log(f"{where}: {stage} FAILED: {e}")
      return {"failed": str(e)[-3000:], "provenance": provenance_end(stamp)}
    result = dict(result, provenance=provenance_end(stamp))
    os.makedirs(d, exist_ok=True)
    from realm_tf.io import atomic  # pylint: disable=g-import-not-at-top
    atomic.write_json(path, result)
    _log(f"{where}: {stage} done: {json.dumps(_brief(result))[:300]}")
    return result

  # ---- corpora ---------------------------------------------------------------------------------

  def corpus(self, n: int) -> Optional[Dict]:
    """Writes the documents and builds the corpus of `n` blocks (both cached)."""
    from benchmarks import scale_corpus  # pylint: disable=g-import-not-at-top
    d = self.size_dir(n)
    os.makedirs(d, exist_ok=True)
    need = n * DISK_BYTES_PER_BLOCK
    free = shutil.disk_usage(self.w).free
    if not os.path.exists(os.path.join(d, "corpus", "manifest.json")) and free < need:
      raise RuntimeError(f"{self.w} has {free / 1e9:.1f} GB free; a {n:,}-block size needs about "
                         f"{need / 1e9:.1f} GB. Free space or choose another --work_dir.")
    docs = os.path.join(d, "docs.jsonl")
    num_docs = scale_corpus.documents_for(n, self.c.blocks_per_document)
    self.cached(n, "docs", lambda: run_stage_process("docs", {
        "path": docs, "num_documents": num_docs, "seed": self.c.seed,
        "blocks_per_document": self.c.blocks_per_document,
        "text_cache": os.path.join(self.w, "text.json")}), required=True)

    def build():
      out = os.path.join(d, "corpus")
      shutil.rmtree(out, ignore_errors=True)
      shards = max(2, -(-n // self.c.blocks_per_shard))
      p = common.run_process([sys.executable, "-m", "realm_tf.launch.build_corpus",
                              f"--inputs={docs}",
                              "--format=jsonl", f"--output_dir={out}", f"--num_shards={shards}",
                              f"--block_length={BLOCK_LENGTH}",
                              *self.c.beam_args])
      result = {"ok": p["rc"] == 0, "rc": p["rc"], "seconds": p["seconds"],
                "peak_rss": p["peak_rss"], "num_shards": shards, "documents": num_docs}
      if p["rc"] == 0:
        with open(os.path.join(out, "manifest.json")) as f:
          result["num_blocks"] = json.load(f)["num_blocks"]
      else:
        result["error_tail"] = p["stderr_tail"][-2000:]
        result["refused_naming_runner"] = any(
            r in p["stderr_tail"] for r in ("DataflowRunner", "FlinkRunner", "SparkRunner"))
      return result

    return self.cached(n, "corpus", build, required=True)

  # ---- the stages of one size ------------------------------------------------------------------

  def size(self, n: int, export_path: Optional[str], annotations: Optional[str]) -> Dict:
    """Every stage of the corpus of `n` blocks; {stage: result} of those that ran or were cached."""
    d = self.size_dir(n)
    corpus_dir, index_dir = os.path.join(d, "corpus"), os.path.join(d, "index")
    stages = {"corpus": self.corpus(n)}
    if not (stages["corpus"] or {}).get("ok"):
      _log(f"n={n:,}: no corpus; its other stages are skipped.")
      return stages
    blocks = stages["corpus"]["num_blocks"]
    base = {"corpus_dir": corpus_dir}
    stages["lookup_build"] = self.cached(n, "lookup_build",
                                         lambda: run_stage_process("lookup_build", base))
    stages["lookup_rest"] = self.cached(n, "lookup_rest", lambda: self.lookup_rest(corpus_dir))
    embeddings = os.path.join(d, f"standin-{self.c.embedding_dim}.npy")
    if export_path and not os.path.exists(embeddings) and any(
        self.want(s) for s in ("index", "scann_rebuilds")):
      run_stage_process("standin", {"path": embeddings, "num_rows": blocks,
                                    "dim": self.c.embedding_dim, "seed": self.c.seed,
                                    "clusters": self.c.clusters})
    if export_path:
      stages["index"] = self.cached(n, "index", lambda: run_stage_process("index", dict(
          base, export=export_path, embeddings=embeddings, index_dir=index_dir,
          recall_queries=self.c.recall_queries)))
      rebuilds = {"embeddings": embeddings, "rebuilds": self.c.rebuilds,
                  "work": os.path.join(d, "work")}
      # Twice, each in its own process: RSS as it is (the goal's), then with malloc_trim after
      # each reading (`after_malloc_trim`; a trim would change every later reading of the first).
      stages["scann_rebuilds"] = self.cached(n, "scann_rebuilds", lambda: dict(
          run_stage_process("scann_rebuilds", dict(rebuilds, trim=False)),
          after_malloc_trim=run_stage_process("scann_rebuilds", dict(rebuilds, trim=True))))
    have_index = os.path.exists(index_dir) and _ok(stages.get("index"))
    if have_index and annotations:
      common = dict(base, index_dir=index_dir, annotations_dir=annotations)
      stages["pipeline"] = self.cached(n, "pipeline", lambda: run_stage_process(
          "pipeline", dict(common, positions=sorted(self.c.positions),
                           batches=self.c.pipeline_batches, repeats=self.c.pipeline_repeats,
                           shuffle_window=self.c.shuffle_window)))
      stages["heldout_masked"] = self.cached(n, "heldout_masked", lambda: run_stage_process(
          "heldout_masked", dict(common, preset=self.c.preset, dim=self.c.embedding_dim,
                                 num_queries=self.c.heldout_queries)))
      stages["dense_recall"] = self.cached(n, "dense_recall", lambda: run_stage_process(
          "dense_recall", dict(common, num_questions=self.c.num_questions)))
    stages["bm25"] = self.cached(n, "bm25", lambda: self.bm25(blocks))
    if _ok(stages.get("lookup_build")):
      stages["export"] = self.cached(n, "export", lambda: run_stage_process(
          "export", dict(base, work=os.path.join(d, "export"), seed=self.c.seed,
                         components=["searcher", "reader", "query_embedder"],
                         server_timeout_s=1800.0)))
    return {k: v for k, v in stages.items() if v is not None}

  def lookup_rest(self, corpus_dir: str) -> Dict:
    """The lookup at rest in one process, then in a second one while the first still maps it."""
    from benchmarks.scale_stages import RESULT_MARKER  # pylint: disable=g-import-not-at-top
    from realm_tf.utils import command_line  # pylint: disable=g-import-not-at-top
    env = dict(os.environ, **{k: v for k, v in command_line.QUIET_ENV.items()
                              if k not in os.environ})
    holder = subprocess.Popen(stage_command("lookup_rest", {"corpus_dir": corpus_dir,
                                                             "hold": True}),
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
    try:
      first = None
      for line in holder.stdout:
        if line.startswith(RESULT_MARKER):
          first = json.loads(line[len(RESULT_MARKER):])
          break
      if first is None:
        raise RuntimeError("scale stage lookup_rest (first process) failed; see its log above.")
      second = run_stage_process("lookup_rest", {"corpus_dir": corpus_dir})
    finally:
      holder.stdin.close()
      holder.wait()
    return {"first": first, "second": second}

  def bm25(self, blocks: int) -> Dict:
    """`benchmarks.bm25_bench` at this size, in its own process."""
    p = common.run_process([sys.executable, "-m", "benchmarks.bm25_bench", "--child",
                            f"--num_blocks={blocks}", f"--num_questions={self.c.num_questions}",
                            f"--seed={self.c.seed}"])
    result = common.parse_stage_output(p["stdout"], "BM25_BENCH_RESULT ")
    if p["rc"] != 0 or result is None:
      raise RuntimeError(f"bm25_bench failed (exit {p['rc']}):\n{p['stderr_tail']}")
    return dict(result, wall_seconds=p["seconds"], peak_rss=p["peak_rss"])

  # ---- samples ---------------------------------------------------------------------------------

  def annotation(self, n: int) -> Optional[Dict]:
    """Annotates the sample corpus of `n` blocks with the real CLI; returns its figures. Run when
    a stage wanted reads annotations."""
    needed = any(self.want(s) for s in ("annotation", "pipeline", "heldout_masked",
                                        "dense_recall"))
    done = os.path.join(self.size_dir(n), "stages", "annotation.json")
    if not needed and not os.path.exists(done):
      return None
    c = self.corpus(n)
    if not (c or {}).get("ok"):
      return None
    out = os.path.join(self.size_dir(n), "annotations")

    def annotate():
      shutil.rmtree(out, ignore_errors=True)
      p = common.run_process([sys.executable, "-m", "realm_tf.launch.annotate_corpus",
                              f"--corpus_dir={os.path.join(self.size_dir(n), 'corpus')}",
                              f"--output_dir={out}", *self.c.beam_args])
      if p["rc"] != 0:
        raise RuntimeError(f"annotate_corpus failed (exit {p['rc']}):\n{p['stderr_tail']}")
      with open(os.path.join(out, "manifest.json")) as f:
        records = json.load(f)["num_records"]
      return {"seconds": p["seconds"], "peak_rss": p["peak_rss"], "num_blocks": c["num_blocks"],
              "num_records": records, "annotations_dir": out}

    return self.cached(n, "annotation", annotate, required=needed)

  def embedding(self, export_path: str) -> Optional[Dict]:
    """The document tower's blocks/s on the sample corpus (after a warm-up corpus)."""
    warm, timed = self.c.blocks_per_document * 2, self.c.embedding_blocks
    if not self.want("embedding") and not os.path.exists(
        os.path.join(self.size_dir(timed), "stages", "embedding.json")):
      return None
    if not all((self.corpus(k) or {}).get("ok") for k in (warm, timed)):
      return None
    return self.cached(timed, "embedding", lambda: run_stage_process("embedding", {
        "export": export_path, "corpus_dir": os.path.join(self.size_dir(timed), "corpus"),
        "warm_corpus_dir": os.path.join(self.size_dir(warm), "corpus"), "batch_size": 16}))

  def trainer(self) -> Optional[Dict]:
    """The main job at the paper's flags on the sample corpus of `trainer_blocks` blocks
    (`benchmarks.scale_trainer`): the process's peak with inline and with async refresh."""
    n = self.c.trainer_blocks
    if not self.want("trainer") and not os.path.exists(
        os.path.join(self.size_dir(n), "stages", "trainer.json")):
      return None
    if not (self.corpus(n) or {}).get("ok"):
      return None
    from benchmarks import scale_trainer  # pylint: disable=g-import-not-at-top
    d = self.size_dir(n)
    return self.cached(n, "trainer", lambda: scale_trainer.measure(
        os.path.join(d, "corpus"), os.path.join(d, "annotations"), os.path.join(d, "trainer"),
        self.c.beam_args))


def provenance_start(provenance: Optional[common.Provenance] = None) -> Dict:
  """What a stage's provenance records before it runs: the run's start stamp (`provenance`;
  None: the checkout as it is now, dirty or not), the UTC time, the load."""
  provenance = provenance or common.Provenance(allow_dirty=True)
  return {"commit": provenance.commit, "dirty": provenance.start["dirty"],
          "time_utc": common.utc_now(), "load_average_1m": {"before": os.getloadavg()[0]},
          "_provenance": provenance, "_start": time.perf_counter()}


def provenance_end(stamp: Dict) -> Dict:
  """A stage's provenance: its commit (the run's, at its start) and `dirty` (tracked files
  differed from it then, or the checkout changed before this stage ended:
  `changed_during_run`), start time (UTC), the 1-minute load average before and after it, and
  its wall seconds."""
  checked = stamp["_provenance"].record()
  out = {k: v for k, v in stamp.items() if not k.startswith("_")}
  out.update(dirty=checked["dirty"], changed_during_run=checked["changed_during_run"])
  out["load_average_1m"] = dict(stamp["load_average_1m"], after=os.getloadavg()[0])
  out["wall_seconds"] = time.perf_counter() - stamp["_start"]
  return out


def _source(stage: str, result: Dict) -> Dict:
  """Which stage result a figure came from: the stage and its provenance's commit and time."""
  prov = (result or {}).get("provenance") or {}
  return {"stage": stage, "commit": prov.get("commit"), "dirty": prov.get("dirty"),
          "time_utc": prov.get("time_utc")}


def _ok(result) -> bool:
  """Whether a stage result is there and did not fail."""
  return bool(result) and "failed" not in result


def _brief(result) -> Dict:
  """A result's top-level numbers (for the progress log)."""
  if not isinstance(result, dict):
    return {}
  return {k: round(v, 3) if isinstance(v, float) else v for k, v in result.items()
          if isinstance(v, (int, float)) and not isinstance(v, bool)}


def stand_ins(config: ScaleBenchConfig) -> List[str]:
  """What the run measures with stand-ins instead of the real thing."""
  return [
      f"Index-side stages (index, rebuilds, pipeline, held-out evaluation, export) use stand-in "
      f"document embeddings: {config.clusters} random centres + N(0, 0.5^2) noise, "
      f"dim {config.embedding_dim}, float32, seed {config.seed}; the document tower's cost is "
      f"measured on {config.embedding_blocks} sample blocks (it does not depend on N).",
      f"Towers and reader are freshly initialised ({config.preset} preset): cost does not depend "
      "on the weights.",
      f"The pre-training stream and held-out sentences are the annotations of the "
      f"{max(config.annotation_blocks):,}-block sample corpus (a prefix of every corpus, same "
      f"block ids); data positions past its end wrap around, as the repeated stream does.",
      "BM25 is measured by benchmarks.bm25_bench on its own synthetic texts of N blocks "
      "(shuffled shipped sentences, >= 200 words each).",
      "The open-QA export is benchmarks.export_bench's over this corpus: micro towers and its own "
      "random unit embeddings [N, 128] (the export's and server's cost does not depend on the "
      "towers' size or the embeddings' values).",
      f"The trainer stage runs the main job with launch/configs/paper_tpu.flags on a "
      f"{config.trainer_blocks}-block sample corpus: BERT-base towers and reader freshly "
      "initialised (no BERT-base checkpoint is shipped), one ICT and one REALM step of batch 1 "
      "with a checkpoint and a refresh (samples.trainer.overrides says why each flag differs); "
      "what grows with the corpus comes from the other stages' fits.",
      f"The resume stage restores a synthetic annotation stream of {config.resume_records:,} "
      "records in the annotator's format, manifest and sharding (random block ids, one shard "
      f"per {config.shuffle_window:,} records): shipped sentences filled to a block, drawn from "
      "65,536 distinct records, with each sentence's first and last word as stand-in salient "
      "spans (no NER runs); it times the query stream up to the first masked batch (retrieval "
      "and featurizing, whose cost does not depend on the position, are the pipeline stage's).",
  ]


def run(config: ScaleBenchConfig) -> Optional[Dict]:
  """Runs the wanted stages at every size (cached ones are read back), fits and writes the JSON;
  with the internal `stage`, runs that one stage in this process instead."""
  if config.stage:
    from benchmarks import scale_stages  # pylint: disable=g-import-not-at-top
    return scale_stages.run_stage(config.stage, json.loads(config.stage_args or "{}"))
  from benchmarks import bm25_bench  # pylint: disable=g-import-not-at-top
  provenance = common.Provenance(config.allow_dirty)  # refuses a dirty checkout unless allowed
  bench = Bench(config, provenance)
  start = time.time()
  baseline = bench.cached(None, "baseline", lambda: run_stage_process("baseline", {}),
                          required=True)
  export = bench.cached(None, f"embedder-{config.preset}-{config.embedding_dim}",
                        lambda: run_stage_process("embedder", {
                            "preset": config.preset, "dim": config.embedding_dim,
                            "doc_length": BLOCK_LENGTH, "query_length": QUERY_LENGTH,
                            "model_dir": os.path.join(bench.w, f"model-{config.preset}")}),
                        family="index", required=any(bench.want(s) for s in (
                            "index", "scann_rebuilds", "pipeline", "heldout_masked",
                            "dense_recall", "embedding")))
  export_path = (export or {}).get("export")
  samples = {"annotation": {}, "embedding": None}
  for n in sorted(config.annotation_blocks):
    a = bench.annotation(n)
    if _ok(a):
      samples["annotation"][n] = a
  annotations = samples["annotation"][max(samples["annotation"])]["annotations_dir"] \
      if samples["annotation"] else None
  if export_path:
    samples["embedding"] = bench.embedding(export_path)
  samples["trainer"] = bench.trainer()
  from benchmarks import scale_resume  # pylint: disable=g-import-not-at-top
  samples["resume"] = bench.cached(None, "resume", lambda: scale_resume.measure(
      os.path.join(bench.w, "resume"), config.resume_records, config.resume_positions,
      config.shuffle_window, repeats=config.resume_repeats, seed=config.seed,
      text_cache=os.path.join(bench.w, "text.json")))
  sizes = {}
  for n in sorted(config.sizes):
    sizes[n] = bench.size(n, export_path, annotations)
  if config.corpus_sizes and max(config.corpus_sizes) > max(config.sizes):
    raise ValueError(f"--corpus_sizes={max(config.corpus_sizes)} is above the largest of --sizes "
                     f"({max(config.sizes)}).")
  for n in sorted(set(config.corpus_sizes) - set(config.sizes)):  # the corpus stage only
    if bench.want("corpus") or os.path.exists(
        os.path.join(bench.size_dir(n), "stages", "corpus.json")):
      sizes[n] = {"corpus": bench.corpus(n)}
  payload = summarize(config, baseline, sizes, samples, bm25_bench.goals)
  payload["seconds"] = time.time() - start
  common.write_result(config.output_name, payload, provenance)
  return payload


def summarize(config: ScaleBenchConfig, baseline: Dict, sizes: Dict[int, Dict],
              samples: Dict, bm25_goals_fn=None) -> Dict:
  """The result JSON from the stage results: per-size figures, fits, extrapolations and goals."""
  failed = {f"{n}/{k}": v["failed"] for n, s in sizes.items() for k, v in s.items()
            if v and "failed" in v}
  # Every stage result's provenance, keyed "<size>/<stage>" (samples: "sample/<stage>@<size>").
  raw = {str(n): s for n, s in sizes.items()}
  raw["sample"] = {f"annotation@{n}": v for n, v in samples["annotation"].items()}
  raw["sample"].update({k: samples.get(k) for k in ("embedding", "trainer")})
  raw["global"] = {"baseline": baseline}
  sizes = {n: {k: v for k, v in s.items() if _ok(v)} for n, s in sizes.items()}
  blocks = {n: s["corpus"]["num_blocks"] for n, s in sizes.items()
            if (s.get("corpus") or {}).get("ok")}
  figures = {blocks[n]: scale_fit.figures_of(s, baseline, blocks[n], config.positions)
             for n, s in sizes.items() if n in blocks}
  fits = scale_fit.fit_figures(figures)
  annotation = {v["num_blocks"]: {"annotation.seconds": v["seconds"],
                                  "annotation.peak_rss": v["peak_rss"]}
                for v in samples["annotation"].values()}
  fits.update(scale_fit.fit_figures(annotation))
  # Which stage result (commit, time) each figure of each size came from; every fit names them.
  sources = {name: {n: _source("annotation", v) for n, v in
                    ((v["num_blocks"], v) for v in samples["annotation"].values())}
             for name in ("annotation.seconds", "annotation.peak_rss")}
  for n, s in sizes.items():
    if n in blocks:
      for name, stage in scale_fit.figure_stages(s, baseline, blocks[n],
                                                 config.positions).items():
        sources.setdefault(name, {})[blocks[n]] = _source(stage, s[stage])
  for name, fit in fits.items():
    fit["sources"] = [dict(src, blocks=b) for b, src in sorted(sources.get(name, {}).items())]
  emb = samples.get("embedding")
  payload = {"settings": {k: v for k, v in dataclasses.asdict(config).items()
                          if k not in ("stage", "stage_args")},
             "paper_blocks": scale_fit.PAPER_BLOCKS, "units": "bytes and seconds; KB = 1000 "
             "bytes, GB = 1e9 bytes", "baseline_import_tensorflow": baseline,
             "stand_ins": stand_ins(config), "samples": samples, "figures": figures,
             "fits": fits, "stages": {str(n): s for n, s in sizes.items()},
             "failed_stages": failed,
             "provenance": {f"{n}/{k}": v.get("provenance") for n, s in raw.items()
                            for k, v in s.items() if isinstance(v, dict)}}
  if _ok(emb):
    rate = emb.get("marginal_blocks_per_second") or emb["blocks_per_second"]
    payload["embedding_at_paper_scale"] = {
        "blocks_per_second_this_machine": rate, "preset": config.preset,
        "hours_to_embed_paper_corpus_this_machine": scale_fit.PAPER_BLOCKS / rate / 3600}
  if figures:
    # Each goal reads the largest size that has its figures (a stage that failed or was not run
    # at the largest size falls back to a smaller one, named in `figures_from_smaller_sizes`).
    largest_figures, largest_stages, source = {}, {}, {}
    for n in sorted(figures):
      largest_figures.update(figures[n])
      source.update(dict.fromkeys(figures[n], n))
      largest_stages.update(next(s for m, s in sizes.items() if blocks.get(m) == n))
    largest = max(figures)
    bm25 = largest_stages.get("bm25")
    corpus_points = [(blocks[n], sizes[n]["corpus"]["peak_rss"])
                     for n in sorted(set(config.corpus_sizes)) if n in blocks]
    payload["goals"] = scale_fit.goals(
        fits, largest_figures, largest, figures[min(figures)], largest_stages, config.positions,
        bm25_goals_fn(bm25) if bm25 and bm25_goals_fn else None, corpus_points)
    payload["goals"]["figures_from_smaller_sizes"] = {k: n for k, n in sorted(source.items())
                                                      if n != largest}
    payload["goals"]["figures_from"] = {k: dict(sources[k][n], blocks=n)
                                        for k, n in sorted(source.items())}
    trainer = samples.get("trainer")
    payload["host_at_paper_scale"] = scale_fit.host_at_paper_scale(
        fits, trainer if _ok(trainer) else None)
  payload.setdefault("goals", {})["resume_time_flat"] = scale_fit.resume_goal(
      samples.get("resume"))
  return payload


if __name__ == "__main__":
  from realm_tf.launch import config_program  # pylint: disable=g-import-not-at-top
  config_program.main(ScaleBenchConfig, HELP, run)
