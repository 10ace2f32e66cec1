r"""The scale benchmark's `resume` stage: the pre-training query stream restored at data positions
0, 10M and 100M of a synthetic annotation stream of a million records, each restore in a fresh
process, with the default shuffle window.

    nice python -m benchmarks.scale_resume --work_dir=/tmp/scale_resume   # run alone on the host

The stream (`write_stream`, cached in the work dir) is the annotator's format, manifest and
sharding (random 63-bit block ids, shard `(block_id * N) >> 63`, sorted inside a shard, N = the
records over `records_per_shard`), its records drawn from 65,536 distinct ones: shipped sentences
filled to a block, each sentence's first and last word as stand-in salient spans (no NER runs),
serialised byte for byte as `corpus.annotation_example` does, without its per-record cost.

Each restore (`restore`) times, after the imports, the stream's first record or training's first
masked batch from a view in which every shard before the position's window (none of whose
records that window or the next reaches) is unparseable: a finished restore read no record
before its window. Run alone it writes benchmarks/results/scale_resume.json (`run(config)`, a
`ScaleResumeConfig`), with the same stream in the annotator's default 4 shards (`four_shards`).
"""
import dataclasses
import json
import math
import os
import shutil
import sys
import time
from typing import Dict, List, Optional, Sequence

import numpy as np

from benchmarks import common
from benchmarks import procs
from realm_tf.config_base import ConfigBase

MEASURES = ("realm_tf/data/corpus.py", "realm_tf/data/masking.py",
            "realm_tf/data/pretrain_pipeline.py", "realm_tf/data/annotate.py", "realm_tf/text/",
            "benchmarks/scale_corpus.py", "benchmarks/scale_fit.py", "benchmarks/scale_bench.py",
            "benchmarks/procs.py")

KINDS = ("record", "batch")
BODY_PIECES = 285  # a block's 288 wordpieces less [CLS] [SEP] [SEP]
SPAN_TYPES = ("PERSON", "DATE")
# Distinct record texts, drawn for the records at random: a GZIP window (32 KB) holds about 20
# records, so the shards compress as distinct texts do.
POOL = 65536


def shard_of(block_id: int, num_shards: int) -> int:
  """The annotator's shard of a block id (`annotate._block_to_text`): a range of the id space."""
  return (int(block_id) * num_shards) >> 63


def _varint(n: int) -> bytes:
  out = bytearray()
  while n > 0x7F:
    out.append(n & 0x7F | 0x80)
    n >>= 7
  return bytes(out + bytes([n]))


def _field(number: int, payload: bytes) -> bytes:
  """A length-delimited protobuf field."""
  return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _feature_entry(key: str, feature: bytes) -> bytes:
  return _field(1, _field(1, key.encode("utf-8")) + _field(2, feature))


def _ints(values) -> bytes:
  """A Feature holding an Int64List (packed; non-negative values)."""
  packed = b"".join(_varint(int(v)) for v in values)
  return _field(3, _field(1, packed) if packed else b"")


def _strings(values) -> bytes:
  """A Feature holding a BytesList."""
  return _field(1, b"".join(_field(1, v) for v in values))


def _block_id_entry(block_id: int) -> bytes:
  return _feature_entry("block_id", _ints([block_id]))


def _entries_after_block_id(title: bytes, text: bytes, sentences, spans, span_types) -> bytes:
  """The serialized feature-map entries of a record that sort after `block_id`."""
  features = [
      ("sentence_limits", _ints(e for _, e in sentences)),
      ("sentence_starts", _ints(s for s, _ in sentences)),
      ("span_limits", _ints(e for _, e in spans)),
      ("span_starts", _ints(s for s, _ in spans)),
      ("span_types", _strings(span_types)),
      ("text", _strings([text])),
      ("title", _strings([title])),
  ]
  return b"".join(_feature_entry(k, v) for k, v in features)


def example_bytes(title: bytes, text: bytes, sentences, spans, span_types,
                  block_id: int) -> bytes:
  """`corpus.annotation_example`'s bytes (its deterministic serialization: features by key),
  written without building protobuf objects, which takes milliseconds a record here."""
  return _field(1, _block_id_entry(block_id) +
                _entries_after_block_id(title, text, sentences, spans, span_types))


def _with_block_id(block_id: int, entries: bytes) -> bytes:
  """A record from `_record_entries`' bytes and its block id (the bytes `example_bytes` gives)."""
  return _field(1, _block_id_entry(block_id) + entries)


def _record_entries(rng, text: Dict[str, list]) -> bytes:
  """One record's features but its block id: a shipped title, shipped sentences up to a block's
  body, and each sentence's first and last word as salient spans (stand-ins for NER)."""
  sentences, pieces = text["sentences"], text["sentence_pieces"]
  chosen, used = [], 0
  for s in rng.integers(len(sentences), size=64).tolist():
    if used + pieces[s] > BODY_PIECES:
      break
    chosen.append(sentences[s])
    used += pieces[s]
  raw_sentences, spans, types, at = [], [], [], 0
  for sentence in chosen:
    raw = sentence.encode("utf-8")
    words = raw.split(b" ")
    raw_sentences.append((at, at + len(raw)))
    spans.append((at, at + len(words[0])))
    types.append(SPAN_TYPES[0])
    if len(words) > 2:
      last = words[-1].rstrip(b".!?")
      end = at + len(raw) - (len(words[-1]) - len(last))
      spans.append((end - len(last), end))
      types.append(SPAN_TYPES[1])
    at += len(raw) + 1
  title = text["titles"][int(rng.integers(len(text["titles"])))]
  return _entries_after_block_id(title.encode("utf-8"), " ".join(chosen).encode("utf-8"),
                                 raw_sentences, spans, [t.encode("utf-8") for t in types])


def write_stream(a: Dict) -> Dict:
  """Writes `num_records` synthetic annotation records into `num_shards` shards of `dir` with
  the annotator's manifest; returns the manifest (read back when it is already there)."""
  from benchmarks import scale_corpus  # pylint: disable=g-import-not-at-top
  from realm_tf.data import corpus  # pylint: disable=g-import-not-at-top
  from realm_tf.io import atomic  # pylint: disable=g-import-not-at-top
  out, n, num_shards = a["dir"], int(a["num_records"]), int(a["num_shards"])
  manifest_path = os.path.join(out, corpus.ANNOTATION_MANIFEST)
  if os.path.exists(manifest_path):
    with open(manifest_path) as f:
      return json.load(f)
  start = time.perf_counter()
  text = scale_corpus.shipped_text(a["text_cache"])
  ids = np.random.default_rng([a["seed"], 0]).integers(0, 2**63 - 1, size=n, dtype=np.int64)
  ids = np.unique(ids)  # sorted; a collision (p ~ 1e-7 at 1M) only drops a record
  owners = np.asarray([shard_of(i, num_shards) for i in ids.tolist()])
  tmp = f"{out}.tmp-{os.getpid()}"
  shutil.rmtree(tmp, ignore_errors=True)
  os.makedirs(tmp)
  rng = np.random.default_rng([a["seed"], 1])
  pool = [_record_entries(rng, text) for _ in range(min(n, POOL))]
  picks = rng.integers(len(pool), size=len(ids))
  shards = []
  for k in range(num_shards):
    mine = np.flatnonzero(owners == k).tolist()
    entry = corpus.write_shard(
        os.path.join(tmp, corpus.ANNOTATION_SHARD_PATTERN.format(k, num_shards)),
        (_with_block_id(int(ids[i]), pool[picks[i]]) for i in mine))
    entry["num_records"] = entry.pop("num_blocks")
    shards.append(entry)
    if k % 16 == 0:
      print(f"[scale] resume stream: shard {k + 1}/{num_shards} written", file=sys.stderr,
            flush=True)
  manifest = {"num_records": int(sum(s["num_records"] for s in shards)), "shards": shards,
              "builder": "benchmarks.scale_resume (synthetic: shipped sentences, stand-in "
                         "spans, no NER)", "source": {"seed": a["seed"]},
              "seconds": time.perf_counter() - start}
  atomic.write_json(os.path.join(tmp, corpus.ANNOTATION_MANIFEST), manifest)
  shutil.rmtree(out, ignore_errors=True)
  os.replace(tmp, out)
  return manifest


def unread_shards(counts: Sequence[int], window: int, position: int) -> List[int]:
  """The shards a restore at `position` must not read: those before its window's first record's
  shard that neither that window nor the next (wrapping past the end) reaches."""
  from realm_tf.data import corpus  # pylint: disable=g-import-not-at-top
  origin = corpus.stream_origin(counts, window, position)
  offsets = np.concatenate([[0], np.cumsum(np.asarray(counts, np.int64))])
  total = int(offsets[-1])
  reach = origin.first_record + 2 * window  # one past the next window's last element
  out = []
  for k in range(origin.shard):
    lo, hi = int(offsets[k]), int(offsets[k + 1])
    # Records lo..hi-1 are before the window; the two windows reach them only by wrapping.
    if hi > lo and not any(lo + e * total < reach for e in range(1, 1 + reach // total)):
      out.append(k)
  return out


def _view(stream_dir: str, manifest: Dict, unread: Sequence[int], view_dir: str) -> str:
  """`view_dir`: the stream's manifest, links to its shards, and the `unread` shards replaced by
  bytes that no TFRecord reader parses."""
  shutil.rmtree(view_dir, ignore_errors=True)
  os.makedirs(view_dir)
  shutil.copy(os.path.join(stream_dir, "manifest.json"), view_dir)
  for k, shard in enumerate(manifest["shards"]):
    path = os.path.join(view_dir, shard["file"])
    if k in unread:
      with open(path, "wb") as f:
        f.write(b"not a shard: a restore must not read it")
    else:
      os.symlink(os.path.join(os.path.abspath(stream_dir), shard["file"]), path)
  return view_dir


def restore(a: Dict) -> Dict:
  """One restore in this fresh process: seconds from opening the stream at `position` to its
  first record (`kind` "record") or first masked batch ("batch"), through `_view`."""
  t_import = time.perf_counter()
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from realm_tf.data import corpus  # pylint: disable=g-import-not-at-top
  from realm_tf.data import masking  # pylint: disable=g-import-not-at-top
  from realm_tf.data.pretrain_pipeline import indexed_masked_examples  # pylint: disable=g-import-not-at-top
  from realm_tf.text import RealmTokenizer  # pylint: disable=g-import-not-at-top
  imported = time.perf_counter() - t_import
  manifest = corpus.load_annotation_manifest(a["stream_dir"])
  counts = [s["num_records"] for s in manifest["shards"]]
  window, position = min(a["shuffle_window"], manifest["num_records"]), a["position"]
  unread = unread_shards(counts, window, position)
  view = _view(a["stream_dir"], manifest, unread, a["view_dir"])
  origin = corpus.stream_origin(counts, window, position)
  masker = masking.Masker(masking.MaskingConfig(seed=a["seed"]), RealmTokenizer())
  tf.constant(0).numpy()
  start = time.perf_counter()
  if a["kind"] == "record":
    ds = corpus.positioned_stream(corpus.record_paths(view, manifest), counts, a["seed"], window,
                                  position)
    first_position = int(next(iter(ds))[0])
  else:
    ds = indexed_masked_examples(view, masker, position, a["seed"], a["shuffle_window"],
                                 a["heldout_fraction"], a["realm_query_fraction"], role="realm")
    first_position = int(np.min(next(iter(ds.batch(a["batch_size"])))["index"]))
  seconds = time.perf_counter() - start
  shutil.rmtree(view, ignore_errors=True)
  return {"kind": a["kind"], "position": position, "seconds": seconds,
          "import_seconds": imported, "first_position": first_position, "window": window,
          "first_window": origin.first_window, "first_record": origin.first_record,
          "shard": origin.shard, "skip_in_shard": origin.skip_in_shard,
          "shard_records": counts[origin.shard], "unreadable_shards": len(unread),
          "unreadable_records": int(sum(counts[k] for k in unread)),
          "records_read_before_window": 0}


def measure(work_dir: str, num_records: int = 1_000_000,
            positions: Sequence[int] = (0, 10_000_000, 100_000_000),
            shuffle_window: int = 16384, records_per_shard: Optional[int] = None,
            repeats: int = 3, seed: int = 0, batch_size: int = 8,
            heldout_fraction: float = 0.1, realm_query_fraction: float = 0.3,
            text_cache: Optional[str] = None) -> Dict:
  """The `resume` stage: writes (or reuses) the stream under `work_dir` (`records_per_shard`
  defaults to the window), then restores it at each position `repeats` times per kind, each in a
  fresh process (positions interleaved, so a slow spell of a loaded host spreads over them)."""
  per_shard = records_per_shard or shuffle_window
  num_shards = max(1, math.ceil(num_records / per_shard))
  stream_dir = os.path.join(work_dir, f"stream-{num_records}-{num_shards}")
  os.makedirs(work_dir, exist_ok=True)
  stream = procs.call("benchmarks.scale_resume", "write_stream", {
      "dir": stream_dir, "num_records": num_records, "num_shards": num_shards, "seed": seed,
      "text_cache": text_cache or os.path.join(work_dir, "text.json")}, usage=True)
  restores = []
  times = {kind: {str(p): [] for p in positions} for kind in KINDS}
  for _ in range(repeats):
    for kind in KINDS:
      for p in positions:
        r = procs.call("benchmarks.scale_resume", "restore", {
            "stream_dir": stream_dir, "view_dir": os.path.join(work_dir, "view"),
            "position": int(p), "kind": kind, "seed": seed, "shuffle_window": shuffle_window,
            "batch_size": batch_size, "heldout_fraction": heldout_fraction,
            "realm_query_fraction": realm_query_fraction}, usage=True)
        restores.append(r)
        times[kind][str(p)].append(r["seconds"])
        print(f"[scale] resume: {kind} at {p:,} in {r['seconds']:.2f} s (shard {r['shard']}, "
              f"{r['skip_in_shard']:,} records skipped in it, {r['unreadable_shards']} earlier "
              "shards unreadable)", file=sys.stderr, flush=True)
  return {"num_records": stream.get("num_records"), "num_shards": len(stream["shards"]),
          "stream_seconds": stream.get("seconds"), "stream_dir": stream_dir,
          "positions": [int(p) for p in positions], "shuffle_window": shuffle_window,
          "repeats": repeats, "batch_size": batch_size, "heldout_fraction": heldout_fraction,
          "realm_query_fraction": realm_query_fraction,
          "first_batch_seconds": times["batch"], "first_record_seconds": times["record"],
          "skip_in_shard": {str(r["position"]): r["skip_in_shard"] for r in restores},
          "unreadable_shards": {str(r["position"]): r["unreadable_shards"] for r in restores},
          "records_read_before_window": 0, "restores": restores}


@dataclasses.dataclass
class ScaleResumeConfig(ConfigBase):
  """The resume stage run alone: the stream's size, sharding and window, the positions restored,
  restores per position and kind, and whether the annotator's default 4 shards are measured too."""
  work_dir: str = "/tmp/scale_resume"
  num_records: int = 1_000_000
  positions: List[int] = dataclasses.field(
      default_factory=lambda: [0, 10_000_000, 100_000_000])
  shuffle_window: int = 16384
  records_per_shard: int = 0
  repeats: int = 3
  four_shards: bool = True
  four_shards_repeats: int = 1
  seed: int = 0
  output_name: str = "scale_resume"
  allow_dirty: bool = False


HELP = {
    "work_dir": "Where the streams and the restores' views are kept (streams are reused).",
    "num_records": "Records of the synthetic annotation stream.",
    "positions": "Data positions restored (the first is the one the others are compared with).",
    "shuffle_window": "Shuffle window of the query stream (the main job's default).",
    "records_per_shard": "Records per shard of the stream (0: one window's).",
    "repeats": "Fresh-process restores per position and kind.",
    "four_shards": "Also restore the same stream in the annotator's default 4 shards "
                   "(`four_shards`, goal `resume_time_flat_four_shards`).",
    "four_shards_repeats": "Fresh-process restores per position and kind in 4 shards.",
    "seed": "Seed of the stream's block ids and records.",
    "output_name": "Result name: benchmarks/results/<name>.json.",
    "allow_dirty": common.ALLOW_DIRTY_HELP,
}


def run(config: ScaleResumeConfig) -> Dict:
  """Measures the resume stage (`measure`), and in 4 shards with `four_shards`; writes
  benchmarks/results/<output_name>.json with `goals.resume_time_flat` (and
  `resume_time_flat_four_shards`, `scale_fit.resume_goal`); returns the result."""
  from benchmarks import scale_fit  # pylint: disable=g-import-not-at-top
  provenance = common.Provenance(config.allow_dirty)  # refuses a dirty checkout unless allowed
  load_start, start = os.getloadavg()[0], time.perf_counter()
  settings = dict(num_records=config.num_records, positions=config.positions,
                  shuffle_window=config.shuffle_window, seed=config.seed,
                  text_cache=os.path.join(config.work_dir, "text.json"))
  result = {"resume": measure(config.work_dir, repeats=config.repeats,
                              records_per_shard=config.records_per_shard or None, **settings)}
  result["goals"] = {"resume_time_flat": scale_fit.resume_goal(result["resume"])}
  if config.four_shards:
    result["four_shards"] = measure(config.work_dir, repeats=config.four_shards_repeats,
                                    records_per_shard=math.ceil(config.num_records / 4),
                                    **settings)
    result["goals"]["resume_time_flat_four_shards"] = scale_fit.resume_goal(
        result["four_shards"])
  result["what"] = (
      "the scale benchmark's resume stage (benchmarks.scale_resume.measure), run alone: "
      f"training's query stream restored at data positions {config.positions} of a synthetic "
      f"{config.num_records:,}-record annotation stream, shuffle window {config.shuffle_window:,}, "
      "each restore in a fresh process reading a view with the shards before the window "
      "unreadable" + ("; then the same stream in 4 shards" if config.four_shards else ""))
  result["load_average_1m"] = {"start": load_start, "end": os.getloadavg()[0]}
  result["seconds"] = time.perf_counter() - start
  common.write_result(config.output_name, result, provenance)
  return result


if __name__ == "__main__":
  from realm_tf.launch import config_program  # pylint: disable=g-import-not-at-top
  config_program.main(ScaleResumeConfig, HELP, run)
