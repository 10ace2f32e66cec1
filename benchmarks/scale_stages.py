"""The scale benchmark's stages that run as child processes of their own, one process a stage.

`python -m benchmarks.scale_bench --stage=<name> --stage_args=<json>` calls `run_stage`, which runs
one function below and prints its result as one line `SCALE_STAGE_RESULT <json>`; the parent
adds the process's wall seconds and peak RSS (`benchmarks.procs.run_child`). Every stage calls the
library as the pipeline does and reads memory from /proc/self (`benchmarks.procs`).
"""
import gc
import json
import os
import shutil
import sys
import time
from typing import Dict

import numpy as np

from benchmarks.procs import (dir_bytes, mapped_file_memory, process_memory, reset_peak,
                              resident_file_bytes)

RESULT_MARKER = "SCALE_STAGE_RESULT "


def _timed(fn):
  t = time.perf_counter()
  out = fn()
  return out, time.perf_counter() - t


def _log(msg: str) -> None:
  print(f"[scale] {msg}", file=sys.stderr, flush=True)


def baseline(a: Dict) -> Dict:
  """A bare `import tensorflow` process: what every other stage's RSS is compared with."""
  del a
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  tf.constant(0.0).numpy()
  return process_memory()


def docs(a: Dict) -> Dict:
  """Writes the synthetic documents of one corpus as JSON lines."""
  from benchmarks import scale_corpus  # pylint: disable=g-import-not-at-top
  text = scale_corpus.shipped_text(a["text_cache"])
  size, seconds = _timed(lambda: scale_corpus.write_jsonl(
      a["path"], a["num_documents"], text, a["seed"], a["blocks_per_document"],
      progress=lambda i: _log(f"documents: {i:,} of {a['num_documents']:,} written")))
  return {"bytes": size, "seconds": seconds, "num_documents": a["num_documents"]}


def lookup_build(a: Dict) -> Dict:
  """Builds the corpus's block lookup afresh: seconds, peak RSS, bytes on disk."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top,unused-import
  from realm_tf.data import block_lookup  # pylint: disable=g-import-not-at-top
  target = block_lookup.lookup_dir_for(a["corpus_dir"])
  shutil.rmtree(target, ignore_errors=True)
  base = process_memory()
  reset_peak()
  path, seconds = _timed(lambda: block_lookup.build_lookup(a["corpus_dir"]))
  peak = process_memory()
  lookup = block_lookup.BlockLookup(path)
  sizes = {name: os.path.getsize(os.path.join(path, name)) for name in os.listdir(path)}
  return {"seconds": seconds, "rss_before": base, "after": peak,
          "peak_rss_above_start": peak["VmHWM"] - base["VmRSS"],
          "num_blocks": lookup.size, "num_tokens": lookup.num_tokens,
          "disk_bytes": sum(sizes.values()),
          "disk_bytes_without_text": sum(v for k, v in sizes.items() if not k.startswith("text")),
          "files": sizes, "nbytes": lookup.nbytes()}


def lookup_rest(a: Dict) -> Dict:
  """Opens the lookup and packs every block through its TensorFlow ops, as training does; then
  the memory it holds at rest: what the process added and the lookup files' pages in the page
  cache (shared by every process, in no one process's RSS). With `hold`, prints the result, then
  waits for stdin to close (a second process runs meanwhile)."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from realm_tf.data.block_lookup import BlockLookup  # pylint: disable=g-import-not-at-top
  from realm_tf.text import RealmTokenizer  # pylint: disable=g-import-not-at-top
  tok = RealmTokenizer()
  tf.constant(0.0).numpy()
  start = process_memory()
  lookup, open_seconds = _timed(lambda: BlockLookup.open(a["corpus_dir"]))
  batch = 4096
  # One traced shape: the last batch is padded with an unknown id (-1), which packs to nothing.
  pack = tf.function(lambda ids: tf.reduce_sum(lookup.documents(
      lookup.rows(ids), 288, tok.cls_id, tok.sep_id)["input_mask"]),
                     input_signature=[tf.TensorSpec([batch], tf.int64)])
  ids = np.asarray(lookup.block_ids)

  def touch():
    total = 0
    for lo in range(0, lookup.size, batch):
      chunk = np.full([batch], -1, np.int64)
      chunk[:min(batch, lookup.size - lo)] = ids[lo:lo + batch]
      total += int(pack(tf.constant(chunk)))
    return total

  pieces, seconds = _timed(touch)
  gc.collect()
  rest = process_memory()
  files = {name: {"bytes": os.path.getsize(os.path.join(lookup.path, name)),
                  "resident": resident_file_bytes(os.path.join(lookup.path, name))}
           for name in sorted(os.listdir(lookup.path))}
  # The files the TensorFlow path reads (every one but the text and its offsets).
  used = [v for k, v in files.items() if not k.startswith("text") and k != "meta.json"]
  mapped = mapped_file_memory(lookup.path)
  out = {"open_seconds": open_seconds, "touch_seconds": seconds, "packed_wordpieces": pieces,
         "rss_at_start": start, "rss_at_rest": rest, "lookup_pages_mapped": mapped,
         "files": files, "rss_added": rest["VmRSS"] - start["VmRSS"],
         "anon_added": rest["RssAnon"] - start["RssAnon"],
         "mapped_bytes": sum(v["bytes"] for v in used),
         "resident_file_bytes": sum(v["resident"] for v in used)}
  # Host memory at rest: the process's own growth plus the cached pages no process counts.
  out["host_bytes_at_rest"] = out["rss_added"] - mapped["Rss"] + out["resident_file_bytes"]
  if a.get("hold"):
    print(RESULT_MARKER + json.dumps(out), flush=True)
    sys.stdin.read()
    return {}
  return out


def embedder(a: Dict) -> Dict:
  """Exports freshly initialised towers of the retriever preset (cost does not depend on the
  weights): the bundles' query embedder and the document tower `embedding` times."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top,unused-import
  from realm_tf.modeling.retriever import Retriever, RetrieverConfig  # pylint: disable=g-import-not-at-top
  from realm_tf.retrieval import embedder_export  # pylint: disable=g-import-not-at-top
  from realm_tf.text import RealmTokenizer  # pylint: disable=g-import-not-at-top
  config = RetrieverConfig(encoder=a["preset"], projection_size=a["dim"],
                           doc_seq_length=a["doc_length"], query_seq_length=a["query_length"])
  retriever = Retriever(config)
  retriever.build_towers()
  path = embedder_export.export_embedder(retriever, a["model_dir"], 0, tokenizer=RealmTokenizer())
  return {"export": path, "bytes": dir_bytes(path)}


def standin(a: Dict) -> Dict:
  """Writes stand-in document embeddings [N, dim] float32 as .npy, chunk by chunk: points around
  `clusters` random centres, deterministic in the seed."""
  n, dim = a["num_rows"], a["dim"]
  rng = np.random.default_rng(a["seed"])
  centres = rng.standard_normal([a["clusters"], dim]).astype(np.float32)
  tmp = a["path"] + ".tmp.npy"
  out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=(n, dim))
  for lo in range(0, n, 65536):
    r = np.random.default_rng([a["seed"], lo])
    m = min(65536, n - lo)
    out[lo:lo + m] = centres[r.integers(a["clusters"], size=m)] + 0.5 * r.standard_normal(
        [m, dim]).astype(np.float32)
  out.flush()
  del out
  os.replace(tmp, a["path"])
  return {"rows": n, "dim": dim, "clusters": a["clusters"]}


def index(a: Dict) -> Dict:
  """The refresher's per-corpus work on stand-in embeddings (the matrix loaded, the recall
  check's queries, ScaNN build + check, publishing the bundle), then search latency: seconds and
  RSS of each part."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from realm_tf.data import corpus as corpus_lib  # pylint: disable=g-import-not-at-top
  from realm_tf.data.block_lookup import BlockLookup  # pylint: disable=g-import-not-at-top
  from realm_tf.retrieval import bundle as bundle_lib  # pylint: disable=g-import-not-at-top
  from realm_tf.retrieval import embedder_export, recall_check  # pylint: disable=g-import-not-at-top
  from realm_tf.retrieval.scann_searcher import ScannConfig  # pylint: disable=g-import-not-at-top
  start = process_memory()
  emb_export = embedder_export.load_embedder(a["export"])
  loaded = process_memory()
  embeddings, load_s = _timed(lambda: np.load(a["embeddings"]))
  queries, queries_s = _timed(lambda: recall_check.sample_query_embeddings(
      emb_export, corpus_lib.shard_paths(a["corpus_dir"]), a["recall_queries"]))
  before_build = process_memory()
  (searcher, recall, k), build_s = _timed(lambda: recall_check.build_and_check(
      embeddings, queries, ScannConfig(), 0.0))
  built = process_memory()
  shutil.rmtree(a["index_dir"], ignore_errors=True)
  block_ids = np.asarray(BlockLookup.open(a["corpus_dir"]).block_ids)
  fingerprint = corpus_lib.load_manifest(a["corpus_dir"])["fingerprint"]
  bundle, publish_s = _timed(lambda: bundle_lib.publish(
      a["index_dir"], export_dir=emb_export.path, searcher=searcher, embeddings=embeddings,
      block_ids=block_ids, manifest={"source_export": emb_export.path, "step": 0,
                                     "corpus_dir": a["corpus_dir"],
                                     "corpus_fingerprint": fingerprint,
                                     "stand_in_embeddings": a["embeddings"]}))
  published = process_memory()
  q = tf.constant(queries[:100])
  searcher.search(q, tf.constant(10))[0].numpy()  # warm-up
  _, batch_s = _timed(lambda: searcher.search(q, tf.constant(10))[0].numpy())
  one = [_timed(lambda i=i: searcher.search(q[i:i + 1], tf.constant(10))[0].numpy())[1]
         for i in range(20)]
  parts = {name: (dir_bytes(os.path.join(bundle.path, name))
                  if os.path.isdir(os.path.join(bundle.path, name))
                  else os.path.getsize(os.path.join(bundle.path, name)))
           for name in os.listdir(bundle.path)}
  return {"num_rows": int(embeddings.shape[0]), "dim": int(embeddings.shape[1]),
          "embedding_bytes": int(embeddings.nbytes), "recall_at_10": recall, "recall_k": k,
          "searcher": searcher.info()["config"],
          "seconds": {"load_embeddings": load_s, "query_sample": queries_s,
                      "build_and_check": build_s, "publish": publish_s},
          "rss": {"start": start, "embedder_loaded": loaded, "before_build": before_build,
                  "built": built, "published": published},
          "peak_rss_above_embedder": published["VmHWM"] - loaded["VmRSS"],
          "bundle_bytes": dir_bytes(bundle.path), "bundle_parts": parts,
          "search_ms_per_query_batch100": 1000 * batch_s / 100,
          "search_ms_single_query_median": 1000 * float(np.median(one))}


def scann_rebuilds(a: Dict) -> Dict:
  """`rebuilds` ScaNN builds + searches of one matrix in one process, as the refresher makes them
  (each released once the next is built), then as many loads + searches of the saved searcher as
  the trainer switches bundles: RSS after each, against one index's bytes. Nothing calls
  gc.collect() (a dropped searcher must free its memory with its last reference;
  `gc_collections_by_generation` counts the collector's own runs, none with `disable_gc`) nor
  malloc_trim, unless `trim` (a separate run): then the lists hold the RSS after a trim after each
  reading, and `*_before_trim` the RSS before it."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from realm_tf.io.memory import return_free_memory  # pylint: disable=g-import-not-at-top
  from realm_tf.retrieval.scann_searcher import ScannConfig, ScannSearcher  # pylint: disable=g-import-not-at-top
  from realm_tf.retrieval.searcher import load_searcher, save_searcher  # pylint: disable=g-import-not-at-top
  embeddings = np.load(a["embeddings"])
  q = tf.constant(embeddings[:64])
  collections = [0, 0, 0]  # the collector's own runs, by generation

  def count_collections(phase, info):
    if phase == "start":
      collections[info["generation"]] += 1

  gc.callbacks.append(count_collections)
  if a.get("disable_gc"):
    gc.disable()

  trim = bool(a.get("trim"))

  def rss_now(before_trim, into):
    into.append(process_memory()["VmRSS"])
    if trim:
      before_trim.append(into.pop())
      return_free_memory()
      into.append(process_memory()["VmRSS"])

  rss, untrimmed, searcher = [], [], None
  for i in range(a["rebuilds"]):
    if searcher is not None:
      searcher.release()
      del searcher
    searcher = ScannSearcher(embeddings, ScannConfig())
    searcher.search(q, tf.constant(10))[0].numpy()
    rss_now(untrimmed, rss)
    _log(f"ScaNN build {i + 1}/{a['rebuilds']}: RSS {rss[-1] / 1e6:.0f} MB")
  # One index's bytes, read once the builds' figures are taken (it copies every variable).
  index_bytes = int(sum(np.asarray(v.numpy()).nbytes for v in searcher.state.variables))
  path = os.path.join(a["work"], "searcher")
  shutil.rmtree(path, ignore_errors=True)
  save_searcher(searcher, path)
  loads, loads_untrimmed = [], []
  for i in range(a["rebuilds"]):
    loaded = load_searcher(path)
    loaded.search(q, tf.constant(10))[0].numpy()
    searcher.release()
    del searcher
    searcher = loaded
    del loaded
    rss_now(loads_untrimmed, loads)
  shutil.rmtree(path, ignore_errors=True)
  out = {"rebuilds": a["rebuilds"], "num_rows": int(len(embeddings)), "index_bytes": index_bytes,
         "rss_after_each_build": rss, "rss_after_each_load": loads, "malloc_trim": trim,
         "gc_collections_by_generation": collections, "gc_disabled": bool(a.get("disable_gc")),
         "growth_over_first_build": rss[-1] - rss[0],
         "growth_goal": int(0.1 * index_bytes)}
  if trim:
    out.update(rss_after_each_build_before_trim=untrimmed,
               rss_after_each_load_before_trim=loads_untrimmed)
  return out


def _pipeline_parts(a: Dict):
  from realm_tf.data import masking as masking_lib  # pylint: disable=g-import-not-at-top
  from realm_tf.data.block_lookup import BlockLookup  # pylint: disable=g-import-not-at-top
  from realm_tf.data.pretrain_pipeline import PipelineConfig  # pylint: disable=g-import-not-at-top
  from realm_tf.retrieval import bundle as bundle_lib  # pylint: disable=g-import-not-at-top
  from realm_tf.text import RealmTokenizer  # pylint: disable=g-import-not-at-top
  tokenizer = RealmTokenizer()
  masking = masking_lib.MaskingConfig(seed=0)
  return (tokenizer, masking, BlockLookup.open(a["corpus_dir"]), bundle_lib.latest(a["index_dir"]),
          PipelineConfig())


def pipeline(a: Dict) -> Dict:
  """The REALM pre-training input pipeline as RealmExperiment builds it: seconds to the first
  batch of a fresh process restored at the last position, then rebuilt at each position
  `repeats` times (an index switch), and the annotation stream alone to its first record; seconds
  per batch; the process's RSS (the trainer's input side)."""
  from realm_tf.data import corpus  # pylint: disable=g-import-not-at-top
  from realm_tf.data import masking as masking_lib  # pylint: disable=g-import-not-at-top
  from realm_tf.data.pretrain_pipeline import (  # pylint: disable=g-import-not-at-top
      indexed_masked_examples, make_pretrain_dataset)
  from realm_tf.retrieval.bundle import bundle_retrieve_fn  # pylint: disable=g-import-not-at-top
  start = process_memory()
  t0 = time.perf_counter()
  tokenizer, masking, lookup, bundle, config = _pipeline_parts(a)
  masker = masking_lib.Masker(masking, tokenizer)

  def first_batch(position):
    masked = indexed_masked_examples(a["annotations_dir"], masker, position, seed=0,
                                     shuffle_window=a["shuffle_window"])
    ds = make_pretrain_dataset(masked, bundle_retrieve_fn(bundle, config.num_candidates), lookup,
                               config, tokenizer.cls_id, tokenizer.sep_id)
    it = iter(ds)
    return it, next(it)

  manifest = corpus.load_annotation_manifest(a["annotations_dir"])
  window = max(1, min(a["shuffle_window"], int(manifest["num_records"])))

  def first_record(position):
    ds = corpus.shuffled_stream(corpus.record_paths(a["annotations_dir"], manifest),
                                [x["num_records"] for x in manifest["shards"]], 0, window,
                                position)
    return next(iter(ds))

  late = a["positions"][-1]
  (it, batch), _ = _timed(lambda: first_batch(late))
  cold = time.perf_counter() - t0
  _, per_batch = _timed(lambda: [next(it) for _ in range(a["batches"])])
  del it
  rebuilt = {str(p): [] for p in a["positions"]}
  stream = {str(p): [] for p in a["positions"]}
  for _ in range(a["repeats"]):
    for p in a["positions"]:
      (_, b), seconds = _timed(lambda p=p: first_batch(p))
      rebuilt[str(p)].append(seconds)
      stream[str(p)].append(_timed(lambda p=p: first_record(p))[1])
      _log(f"pipeline rebuilt at position {p:,}: first batch in {seconds:.1f} s "
           f"(data position {int(np.max(b['data_position'])):,})")
  return {"positions": a["positions"], "cold_position": late, "first_batch_seconds_cold": cold,
          "cold_data_position": int(np.max(batch["data_position"])),
          "rebuilt_first_batch_seconds": rebuilt, "stream_first_record_seconds": stream,
          "seconds_per_batch": per_batch / a["batches"], "rss_start": start,
          "rss_end": process_memory()}


def heldout_masked(a: Dict) -> Dict:
  """Held-out masked metrics on a small sample (the evaluator's own path, untrained model)."""
  import tf_keras  # pylint: disable=g-import-not-at-top
  from realm_tf.evaluation.heldout import HeldOutConfig, HeldOutEvaluator  # pylint: disable=g-import-not-at-top
  from realm_tf.modeling.realm_pretrainer import RealmConfig, RealmPretrainer  # pylint: disable=g-import-not-at-top
  start = process_memory()
  tokenizer, masking, lookup, bundle, config = _pipeline_parts(a)
  tf_keras.utils.set_random_seed(0)
  model = RealmPretrainer(RealmConfig(retriever_encoder=a["preset"], reader_encoder=a["preset"],
                                      projection_size=a["dim"]))
  model.build_all()
  built = process_memory()
  evaluator = HeldOutEvaluator(HeldOutConfig(num_queries=a["num_queries"], num_questions=0),
                               a["annotations_dir"], a["corpus_dir"], masking, tokenizer, lookup,
                               config)
  figures, seconds = _timed(lambda: evaluator.masked_metrics(model, bundle))
  return {"seconds": seconds, "num_queries": evaluator.num_queries,
          "utility": figures.get("heldout_retrieval_utility"), "rss_start": start,
          "rss_model_built": built, "rss_end": process_memory()}


def dense_recall(a: Dict) -> Dict:
  """Zero-shot question recall as the held-out evaluator measures it: its set-up, then exact
  top-k over the bundle's embeddings in tiles (memory: the top-k step's peak over its start)."""
  from realm_tf.evaluation import recall as recall_lib  # pylint: disable=g-import-not-at-top
  from realm_tf.retrieval.topk import exact_top_k  # pylint: disable=g-import-not-at-top
  from realm_tf.evaluation.heldout import HeldOutConfig, HeldOutEvaluator  # pylint: disable=g-import-not-at-top
  tokenizer, masking, lookup, bundle, config = _pipeline_parts(a)
  start = process_memory()
  evaluator, setup_s = _timed(lambda: HeldOutEvaluator(
      HeldOutConfig(num_queries=0, num_questions=a["num_questions"]), a["annotations_dir"],
      a["corpus_dir"], masking, tokenizer, lookup, config, with_questions=True))
  set_up = process_memory()
  emb = np.asarray(bundle.embeddings, np.float32)
  float(np.sum(emb[:, 0]))  # the matrix's pages are resident before the peak is reset
  q = recall_lib.embed_texts(
      bundle.query_embedder.embed_queries, [x.question for x in evaluator.questions],
      seq_length=bundle.query_embedder.query_seq_length,
      tokenizer=tokenizer)
  gc.collect()
  base = process_memory()
  reset_peak()
  _, topk_s = _timed(lambda: exact_top_k(q, emb, 20))
  topk_peak = process_memory()["VmHWM"] - base["VmRSS"]
  reset_peak()
  base2 = process_memory()
  figures, recall_s = _timed(lambda: evaluator.question_recall(bundle))
  recall_peak = process_memory()["VmHWM"] - base2["VmRSS"]
  # What open-QA fine-tuning places where the model runs (on every replica): the index's
  # variables, beside which the lookup stays on the host.
  from realm_tf.modeling.openqa_model import FrozenIndex  # pylint: disable=g-import-not-at-top
  replica = {v.name: int(np.prod(v.shape)) * v.dtype.size
             for v in FrozenIndex.from_bundle(bundle, lookup).variables() if v is not None}
  return {"replica_variable_bytes": replica, "num_questions": len(evaluator.questions),
          "setup_seconds": setup_s,
          "setup_rss_added": set_up["VmRSS"] - start["VmRSS"], "topk_seconds": topk_s,
          "topk_peak_above_embeddings": topk_peak, "embedding_bytes": int(emb.nbytes),
          "question_recall_seconds": recall_s,
          "question_recall_peak_above_start": recall_peak,
          "question_recall@20": figures.get("question_recall@20")}


def embedding(a: Dict) -> Dict:
  """Document-tower blocks/s on sample blocks after a warm-up corpus embedded twice (the first
  call traces), and the marginal rate between the last two calls (without per-call start-up)."""
  from realm_tf.data import corpus as corpus_lib  # pylint: disable=g-import-not-at-top
  from realm_tf.retrieval import embed_corpus, embedder_export  # pylint: disable=g-import-not-at-top
  emb = embedder_export.load_embedder(a["export"])
  embed = lambda d: embed_corpus.embed_blocks(  # pylint: disable=unnecessary-lambda-assignment
      emb, corpus_lib.shard_paths(d), batch_size=a["batch_size"])[0]
  embed(a["warm_corpus_dir"])
  small, small_s = _timed(lambda: embed(a["warm_corpus_dir"]))
  ids, seconds = _timed(lambda: embed(a["corpus_dir"]))
  return {"blocks": int(len(ids)), "seconds": seconds, "blocks_per_second": len(ids) / seconds,
          "marginal_blocks_per_second": (len(ids) - len(small)) / max(seconds - small_s, 1e-9),
          "warm_blocks": int(len(small)), "warm_seconds": small_s,
          "batch_size": a["batch_size"], "doc_seq_length": emb.doc_seq_length}


def export(a: Dict) -> Dict:
  """The open-QA export over the corpus and its model server: `export_bench.measure`."""
  from benchmarks import export_bench  # pylint: disable=g-import-not-at-top
  os.makedirs(a["work"], exist_ok=True)
  r = export_bench.measure(a["corpus_dir"], a["work"], list(a["components"]), a["seed"],
                           a["server_timeout_s"])
  shutil.rmtree(os.path.join(a["work"], "exports"), ignore_errors=True)
  return dict(r, export_bytes=r["openqa"]["export_bytes"],
              build_peak_rss=r["openqa"]["export_peak_rss"],
              server_rss=r["server"]["rss_loaded"], block_text_bytes=r["text_bytes"],
              corpus_copies=r["ratios"]["corpus_copies"])


STAGES = {f.__name__: f for f in (baseline, docs, lookup_build, lookup_rest, embedder, standin,
                                   index, scann_rebuilds, pipeline, heldout_masked, dense_recall,
                                   embedding, export)}


def run_stage(name: str, args: Dict) -> Dict:
  """Runs stage `name` with `args` in this process and prints its result line."""
  if name not in STAGES:
    raise ValueError(f"Unknown scale stage {name!r}; choose from {sorted(STAGES)}.")
  result = STAGES[name](args)
  if result:
    result.setdefault("process_rss", process_memory())
    print(RESULT_MARKER + json.dumps(result), flush=True)
  return result
