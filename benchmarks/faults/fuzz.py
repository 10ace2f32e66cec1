"""Fuzzed input (docs/RELIABILITY.md, "Fuzzed input"): seeded random mutations of corpus files,
question files and gRPC request protos.

Three rows, each drawing its cases from `config.rng(<row>)`: `config.fuzz_cases` cases for EACH
file format of the two file rows (the formats in turn, counted in the row's `per_format`
figures) and `config.fuzz_cases` requests for the gRPC decoder:

* corpus files in every document format (`realm_tf.data.documents`), built from the shipped
  corpus's first paragraphs and read in-process;
* question files in every question format (`realm_tf.openqa.datasets`) and the TFDS builders'
  own readers (`tfds_builders.openqa_common`);
* PredictRequest bytes sent raw to a real in-process server on a toy model.

A file case passes when the reader raised only the project's one-line error types (naming the
file), within `config.fuzz_timeout_s`, every skip is one line naming the file and a line, and
every record the case left unmutated was read back unchanged. A request case passes when its
status is one a client error gets (never INTERNAL / UNKNOWN, never a hang) and the server still
answers a good request afterwards.
"""
import collections
import gzip
import json
import os
import random
import threading
import time
from typing import Callable, Dict, List, Optional, Tuple

from absl import logging

from benchmarks.faults import FaultConfig, FaultRow

GROUP = "fuzz"
MUTATIONS = ("flip", "truncate", "invalid_utf8", "delete_field", "duplicate_field", "huge_value",
             "wrong_type", "deep_nesting", "control_chars")
LINE_FORMATS = ("jsonl", "beir", "pyserini", "pyserini_title", "dpr_tsv", "jsonl.gz")
WHOLE_FORMATS = ("text", "wikitext", "squad")
QUESTION_FORMATS = ("jsonl", "dpr_qa", "beir_queries", "beir_qrels", "tfds_jsonl", "tfds_dpr")
HUGE = 1_100_000  # characters: over documents.MAX_DOCUMENT_BYTES
NESTING = 50_000
INVALID_UTF8 = (b"\xff", b"\xc3", b"\xed\xa0\x80", b"\xf8\x88\x80\x80\x80", b"\x80\x80")
NUM_RECORDS = 6


class _Hang(Exception):
  pass


def call_with_timeout(fn: Callable, timeout: float):
  """fn()'s result, or raises what it raised; `_Hang` when it takes longer than `timeout`."""
  box = {}

  def target():
    try:
      box["result"] = fn()
    except BaseException as e:  # pylint: disable=broad-except
      box["error"] = e

  thread = threading.Thread(target=target, daemon=True)
  thread.start()
  thread.join(timeout)
  if thread.is_alive():
    raise _Hang(f"no result after {timeout:g} s")
  if "error" in box:
    raise box["error"]
  return box["result"]


def seed_paragraphs(n: int = NUM_RECORDS) -> List[Tuple[str, str]]:
  """(title, text) of the shipped corpus's first `n` paragraphs, cut to 300 characters."""
  from realm_tf.data import documents  # pylint: disable=g-import-not-at-top
  with gzip.open(documents.default_corpus_path(), "rt", encoding="utf-8") as f:
    data = json.load(f)["data"]
  out = []
  for article in data:
    for para in article["paragraphs"]:
      out.append((article["title"].replace("_", " "), para["context"][:300].strip()))
      if len(out) == n:
        return out
  return out


def _json_line(record) -> bytes:
  return json.dumps(record, ensure_ascii=False).encode("utf-8")


def _mutate_bytes(line: bytes, op: str, rng: random.Random) -> bytes:
  """A byte-level mutation of `line` (flip, truncate, invalid UTF-8, or a huge insert)."""
  if op == "flip":
    data = bytearray(line)
    for _ in range(rng.randint(1, 3)):
      if data:
        data[rng.randrange(len(data))] ^= rng.randint(1, 255)
    return bytes(data)
  if op == "truncate":
    return line[:rng.randrange(len(line))] if line else line
  pos = rng.randint(0, len(line))
  if op == "invalid_utf8":
    return line[:pos] + rng.choice(INVALID_UTF8) + line[pos:]
  if op == "huge_value":
    return line[:pos] + b"y" * HUGE + line[pos:]
  if op == "deep_nesting":
    return line[:pos] + b"[" * NESTING + line[pos:]
  return line[:pos] + b"\x00\x1b\t" + line[pos:]  # control_chars


def _mutate_json(record: dict, op: str, rng: random.Random) -> bytes:
  """A record-level mutation of a JSON-lines record (byte-level ops fall back to the bytes)."""
  record = dict(record)
  key = rng.choice(sorted(record))
  if op == "delete_field":
    del record[key]
  elif op == "duplicate_field":
    return _json_line(record)[:-1] + b", " + json.dumps(key).encode() + b": " + \
        json.dumps(rng.choice([None, 17, "", "dup", ["a"]])).encode() + b"}"
  elif op == "huge_value":
    record[key] = "h" * HUGE
  elif op == "wrong_type":
    record[key] = rng.choice([None, 17, 3.5, [], {}, True, ["a"]])
  elif op == "deep_nesting":
    return _json_line(record)[:-1] + b', "' + key.encode() + b'x": ' + b"[" * NESTING + \
        b"]" * NESTING + b"}" if rng.random() < 0.5 else \
        b'{"' + key.encode() + b'": ' + b"[" * NESTING + b"]" * NESTING + b"}"
  elif op == "control_chars":
    if isinstance(record[key], str):
      pos = rng.randint(0, len(record[key]))
      record[key] = record[key][:pos] + "\x00\t\n\x1b\u2028" + record[key][pos:]
  else:
    return _mutate_bytes(_json_line(record), op, rng)
  return _json_line(record)


def _mutate_cells(cells: List[str], op: str, rng: random.Random) -> bytes:
  """A record-level mutation of a tab-separated row."""
  cells = list(cells)
  i = rng.randrange(len(cells))
  if op == "delete_field":
    del cells[i]
  elif op == "duplicate_field":
    cells.insert(i, cells[i])
  elif op == "huge_value":
    cells[i] = "h" * HUGE
  elif op == "wrong_type":
    cells[i] = rng.choice(["", " ", '"', '""', "['a'", "None", "[1, 2]"])
  elif op == "deep_nesting":
    cells[i] = "[" * NESTING + "]" * NESTING
  elif op == "control_chars":
    cells[i] = cells[i][:1] + "\x00\x1b\r" + cells[i][1:]
  else:
    return _mutate_bytes("\t".join(cells).encode("utf-8"), op, rng)
  return "\t".join(cells).encode("utf-8")


def _one_line_naming(message: str, path: str) -> Optional[str]:
  """What is wrong with an error or skip message (None: one line naming the file)."""
  if "\n" in message or "\r" in message:
    return f"message spans lines: {message[:200]!r}"
  if os.path.basename(path) not in message:
    return f"message does not name {os.path.basename(path)}: {message[:200]!r}"
  return None


# ---------------------------------------------------------------------------------------------
# Corpus files


def _corpus_records(fmt: str, paragraphs) -> Tuple[list, List[Tuple[str, str, str]]]:
  """The records of a corpus file of `fmt` (JSON objects, or rows for DPR TSV), one per
  paragraph, and the (doc_id, title, text) each is read back as."""
  records, expected = [], []
  for i, (title, text) in enumerate(paragraphs):
    doc_id = f"d{i}"
    records.append({"jsonl": {"id": doc_id, "title": title, "text": text},
                    "jsonl.gz": {"id": doc_id, "title": title, "text": text},
                    "beir": {"_id": doc_id, "title": title, "text": text},
                    "pyserini": {"id": doc_id, "contents": text},
                    "pyserini_title": {"id": doc_id, "contents": f'"{title}"\n{text}'},
                    "dpr_tsv": [doc_id, text, title]}[fmt])
    expected.append((doc_id, "" if fmt == "pyserini" else title, text))
  return records, expected


def _record_line(record, op: Optional[str], rng: random.Random) -> bytes:
  """A JSON-lines record (a dict) or a tab-separated row (a list) as its line, mutated by `op`
  (unless None)."""
  if isinstance(record, dict):
    return _json_line(record) if op is None else _mutate_json(record, op, rng)
  return "\t".join(record).encode("utf-8") if op is None else _mutate_cells(record, op, rng)


def _read_corpus_case(path: str, fmt: str):
  from realm_tf.data import documents  # pylint: disable=g-import-not-at-top
  return list(documents.read_documents(path, None if fmt == "jsonl.gz" else fmt))


def _corpus_case(work_dir: str, fmt: str, paragraphs, rng: random.Random, timeout: float
                 ) -> Tuple[str, Optional[str], Dict[str, int]]:
  """Writes one mutated corpus file, reads it; (mutation, problem or None, counts)."""
  from realm_tf.data import documents  # pylint: disable=g-import-not-at-top
  counts = {"records_unmutated": 0, "records_kept": 0, "skips": 0}
  op = rng.choice(MUTATIONS)
  if fmt in WHOLE_FORMATS:
    path = os.path.join(work_dir, {"text": "case.txt", "wikitext": "case.wiki.txt",
                                   "squad": "case.json"}[fmt])
    data = _whole_file(fmt, paragraphs)
    data = _mutate_bytes(data, op if op in ("flip", "truncate", "invalid_utf8", "huge_value",
                                            "deep_nesting") else "control_chars", rng)
    unmutated = []
  else:
    path = os.path.join(work_dir, "case." + ("tsv" if fmt == "dpr_tsv" else fmt))
    records, expected = _corpus_records(fmt, paragraphs)
    chosen = set(rng.sample(range(len(records)), rng.randint(1, 3)))
    lines = [b"id\ttext\ttitle"] if fmt == "dpr_tsv" else []
    lines += [_record_line(rec, op if i in chosen else None, rng) for i, rec in enumerate(records)]
    data = b"\n".join(lines) + b"\n"
    unmutated = [e for i, e in enumerate(expected) if i not in chosen]
    if fmt == "jsonl.gz":
      data = gzip.compress(data, mtime=0)
      if rng.random() < 0.5:  # damage the compressed stream itself
        data = _mutate_bytes(data, rng.choice(("flip", "truncate")), rng)
        op = "gzip " + op
        unmutated = []  # a damaged stream may lose any record after the damage
  with open(path, "wb") as f:
    f.write(data)
  counts["records_unmutated"] = len(unmutated)
  try:
    items = call_with_timeout(lambda: _read_corpus_case(path, fmt), timeout)
  except _Hang as e:
    return op, f"hang: {e}", counts
  except documents.BadInputError as e:
    return op, _one_line_naming(str(e), path), counts
  except Exception as e:  # pylint: disable=broad-except
    return op, f"traceback: {type(e).__name__}: {str(e)[:200]}", counts
  docs = {d.doc_id: d for d in items if isinstance(d, documents.Document)}
  for bad in items:
    if isinstance(bad, documents.BadRecord):
      counts["skips"] += 1
      problem = _one_line_naming(str(bad), path)
      if problem or bad.line < 1:
        return op, problem or f"skip without a line: {bad}", counts
  for doc_id, title, text in unmutated:
    doc = docs.get(doc_id)
    if doc is None or doc.title != title or doc.text != text:
      return op, f"unmutated record {doc_id} not kept unchanged (got {doc})", counts
    counts["records_kept"] += 1
  return op, None, counts


def _whole_file(fmt: str, paragraphs) -> bytes:
  if fmt == "text":
    return "\n\n".join(t for _, t in paragraphs).encode("utf-8")
  if fmt == "wikitext":
    return "".join(f" = {title} = \n\n {text} \n\n = = Section = = \n\n {text[:80]} \n"
                   for title, text in paragraphs).encode("utf-8")
  articles = {}
  for title, text in paragraphs:
    articles.setdefault(title, []).append({"context": text, "qas": []})
  return json.dumps({"version": "1.1", "data": [{"title": t, "paragraphs": p}
                                                for t, p in articles.items()]},
                    indent=1).encode("utf-8")


# ---------------------------------------------------------------------------------------------
# Question files

_QUESTION_LAYOUT = {"tfds_jsonl": "jsonl", "tfds_dpr": "dpr_qa"}  # the TFDS readers' files
QUESTIONS = [("who wrote pride and prejudice", ["Jane Austen"]),
             ("what is the capital of france", ["Paris"]),
             ("when was the eiffel tower built", ["1889", "1887"]),
             ("who painted the mona lisa", ["Leonardo da Vinci"]),
             ("how tall is everest", ["8,849 m"]),
             ("which river flows through cairo", ["Nile"])]


def _question_case(work_dir: str, fmt: str, rng: random.Random, timeout: float
                   ) -> Tuple[str, Optional[str], Dict[str, int]]:
  """Writes one mutated question file, loads it; (mutation, problem or None, counts)."""
  from realm_tf.openqa import datasets  # pylint: disable=g-import-not-at-top
  from tfds_builders import openqa_common  # pylint: disable=g-import-not-at-top
  counts = {"records_unmutated": 0, "records_kept": 0, "skips": 0}
  op = rng.choice(MUTATIONS)
  chosen = set(rng.sample(range(len(QUESTIONS)), rng.randint(1, 3)))
  folder = os.path.join(work_dir, "beir")
  lines = []
  for i, (q, answers) in enumerate(QUESTIONS):
    record = {"jsonl": {"id": f"q{i}", "question": q, "answers": answers},
              "beir_queries": {"_id": f"q{i}", "text": q}, "beir_qrels": [f"q{i}", f"d{i}", "1"],
              "dpr_qa": [q, repr(answers)]}[_QUESTION_LAYOUT.get(fmt, fmt)]
    lines.append(_record_line(record, op if i in chosen else None, rng))
  data = b"\n".join(lines) + b"\n"
  if fmt.startswith("beir"):  # the mutated file beside an unmutated other one
    os.makedirs(os.path.join(folder, "qrels"), exist_ok=True)
    files = {"queries.jsonl": b"\n".join(_json_line({"_id": f"q{i}", "text": q})
                                         for i, (q, _) in enumerate(QUESTIONS)),
             "qrels/test.tsv": b"\n".join(f"q{i}\td{i}\t1".encode()
                                          for i in range(len(QUESTIONS)))}
    path = os.path.join(folder, "queries.jsonl" if fmt == "beir_queries" else "qrels/test.tsv")
    files[os.path.relpath(path, folder)] = data
    for name, content in files.items():
      with open(os.path.join(folder, name), "wb") as f:
        f.write((b"query-id\tcorpus-id\tscore\n" if name.startswith("qrels") else b"") + content)
    load = lambda: datasets.load_examples(f"beir:{folder}:test", "test")  # noqa: E731
  else:
    path = os.path.join(work_dir, {"jsonl": "q.jsonl", "tfds_jsonl": "q_tfds.jsonl",
                                   "dpr_qa": "q.qa.csv", "tfds_dpr": "q_tfds.qa.csv"}[fmt])
    with open(path, "wb") as f:
      f.write(data)
    load = {"jsonl": lambda: datasets.load_examples(f"jsonl:{path}", "test"),
            "dpr_qa": lambda: datasets.load_examples(f"dpr_qa:{path}", "test"),
            "tfds_jsonl": lambda: openqa_common.read_qa_jsonl(path),
            "tfds_dpr": lambda: openqa_common.read_qa_dpr(path)}[fmt]
  unmutated = [QUESTIONS[i][0] for i in range(len(QUESTIONS)) if i not in chosen]
  counts["records_unmutated"] = len(unmutated)
  skipped = []
  handler = _Capture(skipped)
  logging.get_absl_logger().addHandler(handler)
  try:
    examples = call_with_timeout(load, timeout)
  except _Hang as e:
    return op, f"hang: {e}", counts
  except datasets.DatasetError as e:
    examples, error = [], str(e)
    if "no usable question" not in error:
      return op, _one_line_naming(error, path) or f"unexpected error: {error}", counts
    if unmutated:
      return op, f"no question read though {len(unmutated)} were unmutated: {error}", counts
  except Exception as e:  # pylint: disable=broad-except
    return op, f"traceback: {type(e).__name__}: {str(e)[:200]}", counts
  finally:
    logging.get_absl_logger().removeHandler(handler)
  for message in skipped:
    counts["skips"] += 1
    problem = _one_line_naming(message, path)
    if problem:
      return op, problem, counts
  got = {e.question for e in examples}
  for q in unmutated:
    if q not in got:
      return op, f"unmutated question {q!r} not kept", counts
    counts["records_kept"] += 1
  return op, None, counts


class _Capture(logging.logging.Handler):
  """Collects the warning lines a reader logs for its skips (absl's logger)."""

  def __init__(self, out: List[str]):
    super().__init__(level=logging.logging.WARNING)
    self.out = out

  def emit(self, record):
    if record.levelno >= logging.logging.WARNING:
      self.out.append(record.getMessage())


# ---------------------------------------------------------------------------------------------
# gRPC request protos

GRPC_OK = ("OK", "INVALID_ARGUMENT", "NOT_FOUND", "FAILED_PRECONDITION", "RESOURCE_EXHAUSTED")


def _proto_mutation(request, op: str, rng: random.Random) -> bytes:
  """Serialized `request` with one seeded mutation."""
  from tensorflow.core.framework import types_pb2  # pylint: disable=g-import-not-at-top
  r = type(request)()
  r.CopyFrom(request)
  tensor = r.inputs["questions"]
  if op == "delete_field":
    field = rng.choice(["model_spec", "inputs", "dtype", "tensor_shape", "string_val"])
    if field in ("model_spec",):
      r.ClearField(field)
    elif field == "inputs":
      r.inputs.clear()
    else:
      tensor.ClearField(field)
  elif op == "duplicate_field":
    data = r.SerializeToString()
    return data + data[:rng.randint(1, len(data))] if rng.random() < 0.5 else data + data
  elif op == "huge_value":
    which = rng.choice(["dim", "string", "version"])
    if which == "dim":
      tensor.tensor_shape.dim[0].size = rng.choice([2**31, 2**40, 2**62, -5])
    elif which == "string":
      tensor.string_val[0] = b"q" * rng.choice([70_000, 3 << 20])
    else:
      r.model_spec.version.value = rng.choice([2**62, -1])
  elif op == "wrong_type":
    tensor.dtype = rng.choice([types_pb2.DT_FLOAT, types_pb2.DT_INT64, types_pb2.DT_RESOURCE,
                               types_pb2.DT_VARIANT, 77, types_pb2.DT_INVALID])
  elif op == "deep_nesting":
    return b"\x0a\x80\x01" * rng.randint(100, 5000) + r.SerializeToString()
  elif op == "control_chars":
    tensor.string_val[0] = b"\x00\x1b\t" + tensor.string_val[0]
  else:
    return _mutate_bytes(r.SerializeToString(), op, rng)
  return r.SerializeToString()


def _proto_cases(config: FaultConfig) -> FaultRow:
  """The gRPC row: mutated PredictRequest bytes sent raw to an in-process server."""
  import grpc  # pylint: disable=g-import-not-at-top
  from tensorflow_serving.apis import predict_pb2  # pylint: disable=g-import-not-at-top
  from realm_tf.testing import toy_models  # pylint: disable=g-import-not-at-top
  from serving import model_config, server as server_lib  # pylint: disable=g-import-not-at-top
  base = os.path.join(config.work_dir, "models", "qa")
  toy_models.write_qa_model(base, 1, "qa")
  server = server_lib.ModelServer(server_lib.ServerOptions(
      models=[model_config.ModelConfig("qa", base)], port=0, bind_address="127.0.0.1",
      file_system_poll_wait_seconds=0, max_receive_message_bytes=4 << 20))
  port = server.start()
  rng = config.rng("gRPC PredictRequest protos")
  seeds = [toy_models.string_request("qa", qs) for qs in
           (["who wrote hamlet"], ["what is the capital of france", "how tall is everest"])]
  statuses, ops, distinct = collections.Counter(), collections.Counter(), collections.Counter()
  start = time.perf_counter()
  try:
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
      call = channel.unary_unary("/tensorflow.serving.PredictionService/Predict",
                                 request_serializer=None, response_deserializer=None)
      for _ in range(config.fuzz_cases):
        op = rng.choice(MUTATIONS)
        data = _proto_mutation(rng.choice(seeds), op, rng)
        ops[op] += 1
        try:
          call(data, timeout=config.fuzz_timeout_s)
          code = "OK"
        except grpc.RpcError as e:
          code = e.code().name
          detail = e.details() or ""
        statuses[code] += 1
        if code not in GRPC_OK:
          distinct[f"{op}: {code} {detail[:200]}"] += 1
      good = predict_pb2.PredictResponse.FromString(call(seeds[0].SerializeToString(),
                                                         timeout=config.fuzz_timeout_s))
      alive = good.outputs["answers"].string_val == [b"v1:HAMLET"]
  finally:
    server.stop(1)
  failures = sum(distinct.values())
  return FaultRow(
      GROUP, "gRPC PredictRequest protos: mutated bytes sent raw",
      f"{config.fuzz_cases} seeded random mutations (seed {config.seed}) of 2 well-formed "
      f"requests: {json.dumps(ops, sort_keys=True)}", config.fuzz_cases,
      ["status OK or a client error (INVALID_ARGUMENT, NOT_FOUND, FAILED_PRECONDITION, "
       "RESOURCE_EXHAUSTED), never INTERNAL / UNKNOWN", f"answered within "
       f"{config.fuzz_timeout_s:g} s (no hang)", "a good request still answered afterwards"],
      survived=failures == 0 and alive, failures=failures + int(not alive),
      reason=next(iter(distinct)) if failures else ("" if alive else "server stopped answering"),
      figures={"cases": config.fuzz_cases, "statuses": dict(statuses),
               "failed_kinds": dict(distinct),
               "seconds": round(time.perf_counter() - start, 1)})


# ---------------------------------------------------------------------------------------------


def _file_row(config: FaultConfig, fault: str, formats, case_fn) -> FaultRow:
  """One file row: `config.fuzz_cases` cases for each of `formats`, the formats in turn, each
  case's outcome counted under its format (so every parser gets the full count, not a share)."""
  rng = config.rng(fault)
  failures, first, per_format, ops = 0, "", {}, collections.Counter()
  totals = {"records_unmutated": 0, "records_kept": 0, "skips": 0}
  start = time.perf_counter()
  tries = config.fuzz_cases * len(formats)
  for i in range(tries):
    fmt = formats[i % len(formats)]
    op, problem, counts = case_fn(fmt, rng)
    ops[op] += 1
    stats = per_format.setdefault(fmt, {"cases": 0, "failures": 0, **dict.fromkeys(totals, 0)})
    stats["cases"] += 1
    for k, v in counts.items():
      totals[k] += v
      stats[k] += v
    if problem:
      failures += 1
      stats["failures"] += 1
      first = first or f"case {i} ({fmt}, {op}): {problem}"
  return FaultRow(
      GROUP, fault, f"{config.fuzz_cases} seeded random cases for each of {len(formats)} formats "
      f"({tries} in all, seed {config.seed}), formats in turn; mutations: "
      f"{json.dumps(ops, sort_keys=True)}", tries,
      ["no exception but the project's one-line error types", f"each case within "
       f"{config.fuzz_timeout_s:g} s (no hang)", "every skip or error is one line naming the file "
       "(and a line number for a skipped record)", "every unmutated record read back unchanged"],
      survived=failures == 0, failures=failures, reason=first,
      figures={"per_format": per_format, **totals,
               "seconds": round(time.perf_counter() - start, 1)})


def run(config: FaultConfig) -> List[FaultRow]:
  """The group's three rows: corpus files, question files, gRPC request protos."""
  paragraphs = seed_paragraphs()
  files = os.path.join(config.work_dir, "files")
  os.makedirs(files, exist_ok=True)
  verbosity, absl_logger = logging.get_verbosity(), logging.get_absl_logger()
  logging.set_verbosity(logging.WARNING)
  absl_logger.propagate = False  # thousands of skip warnings: captured per case, not printed
  try:
    rows = [
        _file_row(config, "corpus files: mutated records in every document format",
                  LINE_FORMATS + WHOLE_FORMATS,
                  lambda fmt, rng: _corpus_case(files, fmt, paragraphs, rng,
                                                config.fuzz_timeout_s)),
        _file_row(config, "question files: mutated records in every question format",
                  QUESTION_FORMATS,
                  lambda fmt, rng: _question_case(files, fmt, rng, config.fuzz_timeout_s))]
  finally:
    absl_logger.propagate = True
    logging.set_verbosity(verbosity)
  rows.append(_proto_cases(config))
  return rows
