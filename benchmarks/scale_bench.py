r"""Wikipedia scale: every host-side stage's seconds and memory at several corpus sizes, fitted as
a + b*N and extrapolated to the paper's 13,353,718 blocks, with the scale goals computed.

    nice python -m benchmarks.scale_bench --sizes=20000,100000,1000000   # hours; alone on the host
    nice python -m benchmarks.scale_bench --sizes=2000,8000 --preset=tiny --output_name=scale_smoke

Each stage runs in a process of its own (`scale_stages`, or the project's CLIs) over synthetic
documents (`scale_corpus`) built by the real corpus builder into 288-wordpiece blocks, and records
wall seconds and the kernel's peak RSS of its process beside what it reads from /proc/self
("added": over a bare `import tensorflow` process or the stage's own start). Per size: corpus
build; block lookup (build, at rest, a second process mapping it); index (ScaNN build + recall
check + publishing, search latency, `rebuilds` rebuilds and reloads); the input pipeline restored
at `positions`; held-out evaluation (masked metrics, dense recall, BM25 by `bm25_bench`); the
open-QA export and its server (`export_bench`). On sample corpora, whose cost per block does not
depend on N: annotation, the document tower, the trainer at the paper's flags (`scale_trainer`)
and the resume stage (`scale_resume`). The stand-ins are listed in the result; every stage result
records its provenance, and each fit and goal names the stage results it read.

Everything is cached under --work_dir (several GB at 1M blocks): a stage whose result is there is
not measured again unless named in --rerun; --stages picks stages. Writes
benchmarks/results/<output_name>.json. The settings are a `ScaleBenchConfig`; `run(config)` runs
the benchmark (or, with the internal --stage, one stage in this process).
"""
import dataclasses
import json
import os
import shutil
import sys
import time
from typing import Dict, List, Optional

from benchmarks import common
from benchmarks import fitting
from benchmarks import procs
from benchmarks import scale_fit
from benchmarks.scale_corpus import BLOCK_LENGTH
from realm_tf.config_base import ConfigBase

SIZE_STAGES = ("corpus", "lookup_build", "lookup_rest", "index", "scann_rebuilds", "pipeline",
               "heldout_masked", "dense_recall", "bm25", "export")
SAMPLE_STAGES = ("annotation", "embedding", "trainer", "resume")
# A generous bound on the work dir's bytes per block, checked against the free space.
DISK_BYTES_PER_BLOCK = 8000
QUERY_LENGTH = 96  # REALM's query length, wordpieces (its block length: scale_corpus's)

MEASURES = ("realm_tf/", "serving/", "launch/configs/paper_tpu.flags",
            "benchmarks/scale_stages.py", "benchmarks/scale_fit.py", "benchmarks/scale_corpus.py",
            "benchmarks/scale_trainer.py", "benchmarks/scale_resume.py",
            "benchmarks/bm25_bench.py", "benchmarks/export_bench.py", "benchmarks/fitting.py",
            "benchmarks/procs.py")


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


def _read(*path: str) -> Dict:
  with open(os.path.join(*path)) as f:
    return json.load(f)


def stage_command(name: str, args: Dict) -> List[str]:
  """The command line of one `scale_stages` stage in its own process."""
  return [sys.executable, "-m", "benchmarks.scale_bench", f"--stage={name}",
          f"--stage_args={json.dumps(args)}"]


def run_stage_process(name: str, args: Dict) -> Dict:
  """A `scale_stages` stage in a fresh process: its result, wall seconds and peak RSS."""
  from benchmarks.scale_stages import RESULT_MARKER  # pylint: disable=g-import-not-at-top
  return procs.run_child(stage_command(name, args), RESULT_MARKER, f"scale stage {name}",
                         usage=True)


class Bench:
  """One run: the work dir's layout, the stage cache, and each stage's orchestration."""

  def __init__(self, config: ScaleBenchConfig, provenance: Optional[common.Provenance] = None):
    self.c, self.provenance = config, provenance  # None: each stage stamps the checkout as it is
    self.w = os.path.abspath(config.work_dir)
    self.wanted, self.rerun = set(config.stages), set(config.rerun)
    os.makedirs(self.w, exist_ok=True)

  def want(self, stage: str) -> bool:
    return "all" in self.wanted or stage in self.wanted

  def size_dir(self, n: int, *parts: str) -> str:
    return os.path.join(self.w, f"n{n}", *parts)

  def done(self, n: int, stage: str) -> bool:
    return os.path.exists(self.size_dir(n, "stages", f"{stage}.json"))

  def cached(self, n: Optional[int], stage: str, fn, family: Optional[str] = None,
             required: bool = False):
    """`fn()`'s result, stamped (`Provenance.stamp_part`) and kept as <size dir>/stages/
    <stage>.json, read back from there unless `stage`'s family (default: the stage) is in
    --rerun. A stage not in --stages runs only when `required` and nothing is cached (else None);
    one that fails gives {"failed": its error}, not cached."""
    d = os.path.join(self.size_dir(n) if n is not None else self.w, "stages")
    path = os.path.join(d, f"{stage}.json")
    family = family or stage
    again = family in self.rerun or ("all" in self.rerun and self.want(family))
    if os.path.exists(path) and not again:
      return _read(path)
    if not (self.want(family) or required or again):
      return None
    where = f"n={n:,}" if n is not None else "global"
    _log(f"{where}: {stage} ...")
    result, stamp = (self.provenance or common.Provenance(allow_dirty=True)).stamp_part(fn)
    if isinstance(result, RuntimeError):
      _log(f"{where}: {stage} FAILED: {result}")
      return {"failed": str(result)[-3000:], "provenance": stamp}
    result = dict(result, provenance=stamp)
    os.makedirs(d, exist_ok=True)
    from realm_tf.io import atomic  # pylint: disable=g-import-not-at-top
    atomic.write_json(path, result)
    _log(f"{where}: {stage} done: {json.dumps(_brief(result))[:300]}")
    return result

  def corpus(self, n: int) -> Optional[Dict]:
    """Writes the documents and builds the corpus of `n` blocks (both cached)."""
    from benchmarks import scale_corpus  # pylint: disable=g-import-not-at-top
    d = self.size_dir(n)
    os.makedirs(d, exist_ok=True)
    need, free = n * DISK_BYTES_PER_BLOCK, shutil.disk_usage(self.w).free
    if not os.path.exists(os.path.join(d, "corpus", "manifest.json")) and free < need:
      raise RuntimeError(f"{self.w} has {free / 1e9:.1f} GB free; a {n:,}-block size needs about "
                         f"{need / 1e9:.1f} GB. Free space or choose another --work_dir.")
    docs, out = os.path.join(d, "docs.jsonl"), os.path.join(d, "corpus")
    num_docs = scale_corpus.documents_for(n, self.c.blocks_per_document)
    self.cached(n, "docs", lambda: run_stage_process("docs", {
        "path": docs, "num_documents": num_docs, "seed": self.c.seed,
        "blocks_per_document": self.c.blocks_per_document,
        "text_cache": os.path.join(self.w, "text.json")}), required=True)

    def build():
      shutil.rmtree(out, ignore_errors=True)
      shards = max(2, -(-n // self.c.blocks_per_shard))
      p = procs.run_process([sys.executable, "-m", "realm_tf.launch.build_corpus",
                             f"--inputs={docs}", "--format=jsonl", f"--output_dir={out}",
                             f"--num_shards={shards}", f"--block_length={BLOCK_LENGTH}",
                             *self.c.beam_args])
      result = {"ok": p["rc"] == 0, "rc": p["rc"], "seconds": p["seconds"],
                "peak_rss": p["peak_rss"], "num_shards": shards, "documents": num_docs}
      if p["rc"] == 0:
        result["num_blocks"] = _read(out, "manifest.json")["num_blocks"]
      else:
        result["error_tail"] = p["stderr_tail"][-2000:]
        result["refused_naming_runner"] = any(
            r in p["stderr_tail"] for r in ("DataflowRunner", "FlinkRunner", "SparkRunner"))
      return result

    return self.cached(n, "corpus", build, required=True)

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
    stage = lambda name, args: self.cached(  # pylint: disable=unnecessary-lambda-assignment
        n, name, lambda: run_stage_process(name, args))
    stages["lookup_build"] = stage("lookup_build", base)
    stages["lookup_rest"] = self.cached(n, "lookup_rest", lambda: self.lookup_rest(corpus_dir))
    embeddings = os.path.join(d, f"standin-{self.c.embedding_dim}.npy")
    if export_path and not os.path.exists(embeddings) and any(
        self.want(s) for s in ("index", "scann_rebuilds")):
      run_stage_process("standin", {"path": embeddings, "num_rows": blocks,
                                    "dim": self.c.embedding_dim, "seed": self.c.seed,
                                    "clusters": self.c.clusters})
    if export_path:
      stages["index"] = stage("index", dict(base, export=export_path, embeddings=embeddings,
                                            index_dir=index_dir,
                                            recall_queries=self.c.recall_queries))
      rebuilds = {"embeddings": embeddings, "rebuilds": self.c.rebuilds,
                  "work": os.path.join(d, "work")}
      # Twice, each in its own process: RSS as it is (the goal's), then with malloc_trim after
      # each reading (`after_malloc_trim`; a trim would change every later reading of the first).
      stages["scann_rebuilds"] = self.cached(n, "scann_rebuilds", lambda: dict(
          run_stage_process("scann_rebuilds", dict(rebuilds, trim=False)),
          after_malloc_trim=run_stage_process("scann_rebuilds", dict(rebuilds, trim=True))))
    if annotations and os.path.exists(index_dir) and _ok(stages.get("index")):
      indexed = dict(base, index_dir=index_dir, annotations_dir=annotations)
      stages["pipeline"] = stage("pipeline", dict(
          indexed, positions=sorted(self.c.positions), batches=self.c.pipeline_batches,
          repeats=self.c.pipeline_repeats, shuffle_window=self.c.shuffle_window))
      stages["heldout_masked"] = stage("heldout_masked", dict(
          indexed, preset=self.c.preset, dim=self.c.embedding_dim,
          num_queries=self.c.heldout_queries))
      stages["dense_recall"] = stage("dense_recall",
                                     dict(indexed, num_questions=self.c.num_questions))
    stages["bm25"] = self.cached(n, "bm25", lambda: procs.run_child(
        [sys.executable, "-m", "benchmarks.bm25_bench", "--child", f"--num_blocks={blocks}",
         f"--num_questions={self.c.num_questions}", f"--seed={self.c.seed}"],
        "BM25_BENCH_RESULT ", "bm25_bench", usage=True))
    if _ok(stages.get("lookup_build")):
      stages["export"] = stage("export", dict(
          base, work=os.path.join(d, "export"), seed=self.c.seed,
          components=["searcher", "reader", "query_embedder"], server_timeout_s=1800.0))
    return {k: v for k, v in stages.items() if v is not None}

  def lookup_rest(self, corpus_dir: str) -> Dict:
    """The lookup at rest in one process, then in a second one while the first still maps it."""
    from benchmarks.scale_stages import RESULT_MARKER  # pylint: disable=g-import-not-at-top
    with procs.held(stage_command("lookup_rest", {"corpus_dir": corpus_dir, "hold": True}),
                    RESULT_MARKER, "scale stage lookup_rest (first process)") as first:
      return {"first": first,
              "second": run_stage_process("lookup_rest", {"corpus_dir": corpus_dir})}

  def sample(self, stage: str, corpora: List[int], fn, needed: Optional[bool] = None):
    """A stage on sample corpora of `corpora` blocks (its result kept with the last): measured
    when wanted (or `needed`) once they are built, else read back if cached, else None."""
    needed = self.want(stage) if needed is None else needed
    if not needed and not self.done(corpora[-1], stage):
      return None
    if not all((self.corpus(k) or {}).get("ok") for k in corpora):
      return None
    return self.cached(corpora[-1], stage, fn, required=needed)

  def annotation(self, n: int) -> Optional[Dict]:
    """Annotates the sample corpus of `n` blocks with the real CLI (when a stage wanted reads
    annotations); returns its figures."""
    out = self.size_dir(n, "annotations")

    def annotate():
      from benchmarks import scale_trainer  # pylint: disable=g-import-not-at-top
      shutil.rmtree(out, ignore_errors=True)
      p = scale_trainer.annotate(self.size_dir(n, "corpus"), out, self.c.beam_args)
      return {"seconds": p["seconds"], "peak_rss": p["peak_rss"],
              "num_blocks": self.corpus(n)["num_blocks"],
              "num_records": _read(out, "manifest.json")["num_records"], "annotations_dir": out}

    return self.sample("annotation", [n], annotate, any(self.want(s) for s in (
        "annotation", "pipeline", "heldout_masked", "dense_recall")))

  def embedding(self, export_path: str) -> Optional[Dict]:
    """The document tower's blocks/s on the sample corpus (after a warm-up corpus)."""
    warm, timed = self.c.blocks_per_document * 2, self.c.embedding_blocks
    return self.sample("embedding", [warm, timed], lambda: run_stage_process("embedding", {
        "export": export_path, "corpus_dir": self.size_dir(timed, "corpus"),
        "warm_corpus_dir": self.size_dir(warm, "corpus"), "batch_size": 16}))

  def trainer(self) -> Optional[Dict]:
    """The main job at the paper's flags on the `trainer_blocks` sample corpus, inline and async
    refresh (`benchmarks.scale_trainer`)."""
    from benchmarks import scale_trainer  # pylint: disable=g-import-not-at-top
    n = self.c.trainer_blocks
    return self.sample("trainer", [n], lambda: scale_trainer.measure(
        self.size_dir(n, "corpus"), self.size_dir(n, "annotations"), self.size_dir(n, "trainer"),
        self.c.beam_args))


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
  from benchmarks import bm25_bench, scale_resume  # pylint: disable=g-import-not-at-top
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
  samples["resume"] = bench.cached(None, "resume", lambda: scale_resume.measure(
      os.path.join(bench.w, "resume"), config.resume_records, config.resume_positions,
      config.shuffle_window, repeats=config.resume_repeats, seed=config.seed,
      text_cache=os.path.join(bench.w, "text.json")))
  sizes = {n: bench.size(n, export_path, annotations) for n in sorted(config.sizes)}
  if config.corpus_sizes and max(config.corpus_sizes) > max(config.sizes):
    raise ValueError(f"--corpus_sizes={max(config.corpus_sizes)} is above the largest of --sizes "
                     f"({max(config.sizes)}).")
  for n in sorted(set(config.corpus_sizes) - set(config.sizes)):  # the corpus stage only
    if bench.want("corpus") or bench.done(n, "corpus"):
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
  figures = {blocks[n]: scale_fit.figures_of(s, baseline, config.positions)
             for n, s in sizes.items() if n in blocks}
  fits = fitting.fit_figures(figures)
  annotation = {v["num_blocks"]: {"annotation.seconds": v["seconds"],
                                  "annotation.peak_rss": v["peak_rss"]}
                for v in samples["annotation"].values()}
  fits.update(fitting.fit_figures(annotation))
  # Which stage result (commit, time) each figure of each size came from; every fit names them.
  sources = {name: {v["num_blocks"]: _source("annotation", v)
                    for v in samples["annotation"].values()}
             for name in ("annotation.seconds", "annotation.peak_rss")}
  for n, s in sizes.items():
    if n in blocks:
      for name, stage in scale_fit.figure_stages(s, baseline, config.positions).items():
        sources.setdefault(name, {})[blocks[n]] = _source(stage, s[stage])
  for name, fit in fits.items():
    fit["sources"] = [dict(src, blocks=b) for b, src in sorted(sources.get(name, {}).items())]
  emb = samples.get("embedding")
  payload = {"settings": {k: v for k, v in dataclasses.asdict(config).items()
                          if k not in ("stage", "stage_args")},
             "paper_blocks": fitting.PAPER_BLOCKS, "units": "bytes and seconds; KB = 1000 "
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
        "hours_to_embed_paper_corpus_this_machine": fitting.PAPER_BLOCKS / rate / 3600}
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
        fits, largest_figures, largest, largest_stages,
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
