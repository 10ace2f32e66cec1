r"""Host-side query embedding: queries/s of the exported query tower in float32 and bfloat16 on CPU.

  python -m benchmarks.host_embedding_bench        # → benchmarks/results/host_embedding.json

REALM's input pipeline embeds every training query on the host CPU with the exported query tower.
For each preset (`minilm`, and `base`: the paper's BERT-base) the towers are built as a bfloat16
trainer builds them (Keras `mixed_bfloat16`), exported in float32 and in bfloat16
(`export_embedder(query_dtype=...)`), and the loaded `embed_queries` is timed on [batch, 96]
queries (one untimed call, then `repeats`); weights are random (time does not depend on them). A
batch predicted to exceed `max_batch_seconds` is skipped. Two child runs, under oneDNN held to
AVX-512 without bfloat16 and with oneDNN off (environment set before TensorFlow starts), show
what decides `host_precision.resolve_query_dtype`. From the measured rate it derives the vCPUs
and TPU-VM hosts that keep up with the paper's consumption (formulas in the JSON).
Settings: `HostEmbeddingBenchConfig`; `run(config)` measures and writes the JSON.
"""
import dataclasses
import gc
import json
import math
import os
import resource
import sys
import tempfile
import time
from typing import Dict, List, Optional

from benchmarks import common
from benchmarks import procs
from realm_tf.config_base import ConfigBase

QUERY_LEN = 96          # the paper's query length (DESIGN.md §1)
PAPER_BATCH = 512       # queries per training step (DESIGN.md §1: batch 512)
PAPER_STEPS = 200_000   # DESIGN.md §1: 200k steps
# Child runs: the environment each sets before TensorFlow starts.
VARIANTS = {
    "onednn_without_bf16_isa": {"ONEDNN_MAX_CPU_ISA": "AVX512_CORE"},
    "onednn_off": {"TF_ENABLE_ONEDNN_OPTS": "0"},
}


MEASURES = ("realm_tf/retrieval/embedder_export.py", "realm_tf/retrieval/host_precision.py",
            "realm_tf/modeling/", "realm_tf/text/")


@dataclasses.dataclass
class HostEmbeddingBenchConfig(ConfigBase):
  """Presets, batch sizes, dtypes, repeats and child runs measured, and the consumption compared."""
  presets: List[str] = dataclasses.field(default_factory=lambda: ["minilm", "base"])
  batch_sizes: List[int] = dataclasses.field(default_factory=lambda: [64, 512])
  dtypes: List[str] = dataclasses.field(default_factory=lambda: ["float32", "bfloat16"])
  repeats: int = 2
  max_batch_seconds: float = 40.0
  variants: List[str] = dataclasses.field(default_factory=lambda: list(VARIANTS))
  variant_preset: str = "minilm"
  variant_batch_size: int = 16
  queries_per_step: int = PAPER_BATCH
  # 200k steps in ~4 days: an assumption, the paper gives no wall-clock time (see `derived`).
  train_steps_per_second: float = PAPER_STEPS / (4 * 86400.0)
  host_vcpus: int = 96
  # A child process (set by the parent on the child's command line).
  child: bool = False
  variant: Optional[str] = None
  allow_dirty: bool = False


HELP = {
    "allow_dirty": common.ALLOW_DIRTY_HELP,
    "presets": "Encoder presets of the query tower.",
    "batch_sizes": "Queries per embed_queries call, smallest first.",
    "dtypes": "Export dtypes of the query tower (export_embedder's query_dtype).",
    "repeats": "Timed calls per batch size (after one untimed call).",
    "max_batch_seconds": "Skip a batch size predicted to take longer than this per call.",
    "variants": f"Child runs under other oneDNN settings: any of {sorted(VARIANTS)}.",
    "variant_preset": "Preset the child runs measure.",
    "variant_batch_size": "Batch size of the child runs.",
    "queries_per_step": "Queries a training step consumes (the paper's batch).",
    "train_steps_per_second": "Training steps per second to keep up with (default: 200k steps "
                              "in 4 days, an assumption).",
    "host_vcpus": "vCPUs of one host running a tf.data service worker.",
    "child": "(internal) measure in this process and print JSON.",
    "variant": "(internal) the child run's name.",
}


def _features(batch: int):
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  ids = tf.random.stateless_uniform([batch, QUERY_LEN], [batch, 0], 1000, 30000, tf.int32)
  return {"input_word_ids": ids, "input_mask": tf.ones_like(ids),
          "input_type_ids": tf.zeros_like(ids)}


def _cpu_seconds() -> float:
  """CPU time this process (all its threads) has used."""
  usage = resource.getrusage(resource.RUSAGE_SELF)
  return usage.ru_utime + usage.ru_stime


def _time_calls(embed, batch: int, repeats: int) -> Dict:
  """One untimed call, then `repeats` timed calls of `embed` on a [batch, 96] batch: wall and CPU
  seconds (queries per CPU second, one vCPU's rate, is the steadier on a shared machine)."""
  feats = _features(batch)
  t = time.perf_counter()
  embed(feats).numpy()
  first = time.perf_counter() - t
  times, cpu = [], []
  for _ in range(repeats):
    t, c = time.perf_counter(), _cpu_seconds()
    embed(feats).numpy()
    times.append(time.perf_counter() - t)
    cpu.append(_cpu_seconds() - c)
  best = min(times)
  return {"batch_size": batch, "first_call_s": first, "seconds": times, "cpu_seconds": cpu,
          "ms_per_query": 1e3 * best / batch, "queries_per_second": batch / best,
          "queries_per_second_mean": batch * len(times) / sum(times),
          "queries_per_cpu_second": batch / min(cpu),
          "load_average_1m": os.getloadavg()[0]}


def measure_preset(preset: str, batch_sizes: List[int], dtypes: List[str], repeats: int,
                   max_batch_seconds: float, tmp: str) -> Dict:
  """Builds `preset`'s towers as a bfloat16 trainer does, exports the query tower in each dtype
  and times the loaded `embed_queries` at each batch size."""
  from realm_tf.modeling.retriever import (  # pylint: disable=g-import-not-at-top
      Retriever, RetrieverConfig)
  from realm_tf.retrieval import embedder_export, host_precision  # pylint: disable=g-import-not-at-top
  # One shared tower and short documents: only the query tower is timed.
  config = RetrieverConfig(encoder=preset, query_seq_length=QUERY_LEN, doc_seq_length=16,
                           share_towers=True)
  with host_precision.keras_policy("mixed_bfloat16"):
    retriever = Retriever(config).build_towers()
  out = {"trainer_policy": "mixed_bfloat16", "query_seq_length": QUERY_LEN,
         "parameters": int(sum(v.shape.num_elements() for v in
                               host_precision.query_variables(retriever)))}
  for step, dtype in enumerate(dtypes, 1):
    t = time.perf_counter()
    path = embedder_export.export_embedder(retriever, os.path.join(tmp, preset), step,
                                           vocab_fingerprint="bench", query_dtype=dtype)
    export_s = time.perf_counter() - t
    emb = embedder_export.load_embedder(path)
    rows, per_query = [], None
    for batch in sorted(batch_sizes):
      predicted = None if per_query is None else per_query * batch
      if predicted is not None and predicted > max_batch_seconds:
        rows.append({"batch_size": batch, "skipped": f"predicted {predicted:.3g} s per call "
                                                     f"> max_batch_seconds={max_batch_seconds:g}"})
        continue
      rows.append(_time_calls(emb.embed_queries, batch, repeats))
      per_query = rows[-1]["ms_per_query"] / 1e3
      print(f"[host_embedding] {preset} {dtype} batch {batch}: "
            f"{rows[-1]['queries_per_second']:.1f} queries/s", file=sys.stderr, flush=True)
    out[dtype] = {"export_seconds": export_s, "query_dtype": emb.metadata["query_dtype"],
                  "batches": rows,
                  "queries_per_second": max(r.get("queries_per_second", 0.0) for r in rows),
                  "queries_per_cpu_second": max(r.get("queries_per_cpu_second", 0.0)
                                                for r in rows)}
    del emb
    gc.collect()
  if "float32" in out and "bfloat16" in out:
    for key, rate in (("bf16_over_fp32", "queries_per_second"),
                      ("bf16_over_fp32_per_cpu_second", "queries_per_cpu_second")):
      out[key] = out["bfloat16"][rate] / out["float32"][rate]
  return out


def host_facts() -> Dict:
  """This CPU's model and the flags that decide bfloat16 speed, oneDNN's state, and the rule's
  pick for a bfloat16 trainer here."""
  from realm_tf.retrieval import host_precision  # pylint: disable=g-import-not-at-top
  flags = host_precision.cpu_flags()
  model = ""
  try:
    with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
      model = next((l.split(":", 1)[1].strip() for l in f if l.startswith("model name")), "")
  except OSError:
    pass
  return {"cpu_model": model,
          "cpu_flags": {k: k in flags for k in ("avx2", "avx512f", "avx512_bf16", "amx_bf16",
                                                "amx_tile", "avx512_fp16")},
          "onednn_enabled": host_precision.onednn_enabled(),
          "env": {k: os.environ.get(k) for k in ("TF_ENABLE_ONEDNN_OPTS", "ONEDNN_MAX_CPU_ISA")},
          "native_bf16": host_precision.native_bf16(),
          "auto_query_dtype_for_bf16_trainer":
              host_precision.resolve_query_dtype("auto", "bfloat16")}


def _run_variant(name: str, config: HostEmbeddingBenchConfig) -> Dict:
  """One child run under `VARIANTS[name]`'s environment; its JSON ({"error"} when it fails)."""
  try:
    return procs.run_child(
        [sys.executable, "-m", "benchmarks.host_embedding_bench", "--child", f"--variant={name}",
         f"--presets={config.variant_preset}", f"--batch_sizes={config.variant_batch_size}",
         f"--dtypes={','.join(config.dtypes)}", "--repeats=1"], what=f"variant {name}",
        environ=procs.env(quiet=False, **VARIANTS[name]))
  except RuntimeError as e:
    return {"error": str(e)[-2000:]}


def derived(results: Dict, config: HostEmbeddingBenchConfig, cores: int) -> Dict:
  """The paper's consumption against the `base` rates measured here: vCPUs and hosts needed."""
  consumption = config.queries_per_step * config.train_steps_per_second
  out = {
      "consumption_queries_per_second": consumption,
      "formula_consumption": "queries_per_step * train_steps_per_second",
      "formula_vcpus_needed": "consumption_queries_per_second / base queries_per_cpu_second "
                              "(queries per CPU second measured here: one vCPU's rate)",
      "formula_vcpus_needed_from_wall_rate": "consumption_queries_per_second / (base "
                                             "queries_per_second / cores here)",
      "formula_hosts_needed": "ceil(vcpus_needed / host_vcpus)",
      "assumptions": [
          "queries_per_step=512 and 200k steps are the paper's (DESIGN.md §1: 200k steps, batch "
          "512, 64 TPUs); the paper states no wall-clock time or TPU generation, so "
          f"train_steps_per_second={config.train_steps_per_second:.4f} (200k steps in 4 days) "
          "is an assumption: scale the figures by the real step rate.",
          f"host_vcpus={config.host_vcpus}: a v3-8 TPU VM host as reported outside Google's "
          "documentation (96 vCPUs, 335 GB; the Cloud TPU pages consulted list chips and HBM, "
          "not host vCPUs).",
          "Embedding speed scales linearly with vCPUs and a TPU host's vCPU is as fast as one "
          "here (same ISA): the bf16 figure holds only on hosts with native bfloat16 "
          "(avx512_bf16/amx_bf16); elsewhere use the float32 one (the export's rule picks it).",
          "Query embedding only: the pipeline's masking, block lookup and ScaNN search also "
          "use the hosts' CPUs.",
          f"This machine's {cores} vCPUs were shared with other jobs (load averages recorded): "
          "wall rates are lower bounds; per-CPU-second rates count the CPU time the process "
          "got (thread-pool spinning included, so still conservative).",
      ],
      "host_vcpus": config.host_vcpus,
      "train_steps_per_second": config.train_steps_per_second,
      "queries_per_step": config.queries_per_step,
  }
  base = results.get("base", {})
  for dtype in config.dtypes:
    rate = base.get(dtype, {}).get("queries_per_second")
    per_vcpu = base.get(dtype, {}).get("queries_per_cpu_second")
    if not rate or not per_vcpu:
      continue
    vcpus = consumption / per_vcpu
    out[dtype] = {"base_queries_per_second_here": rate, "queries_per_cpu_second": per_vcpu,
                  "vcpus_needed": vcpus, "hosts_needed": math.ceil(vcpus / config.host_vcpus),
                  "host_fraction": vcpus / config.host_vcpus,
                  "vcpus_needed_from_wall_rate": consumption / (rate / cores)}
  return out


def run(config: HostEmbeddingBenchConfig) -> Optional[str]:
  """Measures, runs the child variants and writes benchmarks/results/host_embedding.json (its
  path); with `child`, prints the measurement as one JSON line instead."""
  provenance = None if config.child else common.Provenance(config.allow_dirty)
  start = time.time()
  results = {"host": host_facts()}
  with tempfile.TemporaryDirectory() as tmp:
    for preset in config.presets:
      results[preset] = measure_preset(preset, config.batch_sizes, config.dtypes, config.repeats,
                                       config.max_batch_seconds, tmp)
  if config.child:
    print(json.dumps(dict(results, variant=config.variant)))
    return None
  results["variants"] = {name: _run_variant(name, config) for name in config.variants}
  results["derived_paper_configuration"] = derived(results, config, os.cpu_count() or 1)
  results["note"] = ("Random weights (time does not depend on them). The trainer's towers are "
                     "built under the mixed_bfloat16 policy; the float32 export is "
                     "export_embedder's float32 copy of the query tower. Each rate is the best "
                     "of the timed calls over the batch sizes measured.")
  results["seconds"] = time.time() - start
  return common.write_result("host_embedding", results, provenance)


if __name__ == "__main__":
  from realm_tf.launch import config_program  # pylint: disable=g-import-not-at-top
  config_program.main(HostEmbeddingBenchConfig, HELP, run)
