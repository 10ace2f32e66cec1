"""Kills: `kill -9` of each long stage's command line at seeded points of its own progress, then
the same command again.

Each stage is its real CLI (`python -m realm_tf.launch.<stage>`) at toy size in a subprocess of
its own process group. One uninterrupted reference run per stage is watched: the moments its
outputs appear (each trainer's checkpoints, a Beam stage's first shard part and then its
manifest, each bundle a refresh worker publishes, each model version an export publishes) are its
progress markers. Each kill waits until a seeded marker k of the n the reference run showed is on
disk, then sends SIGKILL to the whole process group after a seeded random delay within the
reference run's interval to marker k + 1: so every kill comes after the stage's first output and,
but for a run faster than the reference, before its last. A kill that lands outside that window
(after the last marker) is judged all the same and another is drawn, until `points` kills have
landed inside it; a run that ended before its kill is recorded and not judged.

Right after the kill, everything published in the run's directory must be whole (a corpus or
annotation manifest with every shard at its sha256, every checkpoint the `checkpoint` file lists
with its files, every embedder export, index bundle and serving version with its files). Then the
same command runs again and must finish (exit status 0), resume each killed trainer from the
checkpoint the kill left (its log names it), and leave the reference run's artefacts: byte-equal
files where the stage is deterministic (corpus shards, annotations, the export's variables);
for the trainers the final step, the data position every input pipeline reached (the position
counts raw examples: equal positions at equal steps mean every example was consumed exactly once,
none skipped or repeated across the kill) and bit-equal final weights; the newest index bundle's
version, step and row count. Temporaries left beside published names (`*.tmp*`, `.tmp-*`,
`.old-*`, `.import-tmp-*`, checkpoint `*_temp*`) are counted after the re-run.

The stages feed each other: the corpus the reference build wrote is annotated, trained on by ICT,
the main job (`pretrain`: ICT and the reader warm-up, then REALM with inline refresh, or a trainer
with a separate `refresh_index` worker), fine-tuned on, and the fine-tuned model exported.
"""
import glob
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from typing import Callable, Dict, List, Optional, Tuple

from absl import logging

from benchmarks.faults import FaultConfig, FaultRow

GROUP = "kill"
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
STEPS = 6  # training steps of every toy trainer (checkpoint every step: kills land between)
TIMEOUT_S = 900.0
POLL_S = 0.01  # how often a watched run's outputs are looked at

# Four documents of three sentences (the fine-tuning questions' facts), for the corpus build.
_FACT_GROUPS = ((0, 1, 2), (3, 4, 5), (6, 7, 8), (9, 10, 11))

# Names a publisher writes before its rename; none may be read as published.
_TEMP = re.compile(r"(\.tmp$|\.tmp-|^\.tmp-|^\.old-|^\.import-tmp-|_temp)")


def _facts():
  from realm_tf.testing import openqa_models  # pylint: disable=g-import-not-at-top
  return openqa_models.FACTS


def write_inputs(work_dir: str) -> Tuple[str, str]:
  """The documents (JSONL) and questions (JSONL, with the document holding each answer)."""
  facts = _facts()
  docs, questions = os.path.join(work_dir, "docs.jsonl"), os.path.join(work_dir, "qs.jsonl")
  with open(docs, "w", encoding="utf-8") as f:
    for d, group in enumerate(_FACT_GROUPS):
      f.write(json.dumps({"id": f"doc{d}", "title": facts[group[0]][0],
                          "text": " ".join(facts[i][1] for i in group)}) + "\n")
  with open(questions, "w", encoding="utf-8") as f:
    for d, group in enumerate(_FACT_GROUPS):
      for i in group:
        f.write(json.dumps({"question": facts[i][2], "answers": [facts[i][3]],
                            "doc_id": f"doc{d}"}) + "\n")
  return docs, questions


def _pretrain_flags(num_train_steps: int, refresh: str = "inline") -> List[str]:
  """The main job at toy size (tiny towers from scratch, a few steps of every stage)."""
  return ["--retriever_preset=tiny", "--retriever_init=", f"--ict_steps={STEPS}",
          "--ict_batch_size=4",
          "--reader_preset=tiny", "--reader_init=", f"--reader_warmup_steps={STEPS}",
          "--reader_warmup_batch_size=2", "--batch_size=2",
          f"--num_train_steps={num_train_steps}", f"--refresh={refresh}",
          "--refresh_every_steps=2", "--checkpoint_every=1", "--num_candidates=2",
          "--min_recall=0", "--heldout_fraction=0.3", "--heldout_queries=4"]


# --- a stage's progress: what of its output is on disk ------------------------------------------

# Progress is a few series, each a level that only grows while the stage runs: a trainer's newest
# checkpoint step, a Beam stage's 1 (a shard part on disk) then 2 (manifest published), the newest
# index bundle version, the count of published serving versions. Kills are placed by these levels.
Progress = Callable[[str], Dict[str, int]]  # run dir -> {series: level}


def checkpoint_step(model_dir: str) -> int:
  """The step of the newest checkpoint a trainer's `checkpoints/checkpoint` file names (0: none).
  TensorFlow writes that file after the checkpoint's own files, atomically."""
  try:
    with open(os.path.join(model_dir, "checkpoints", "checkpoint"), encoding="utf-8") as f:
      found = re.search(r'^model_checkpoint_path: "(?:.*/)?ckpt-(\d+)"', f.read(), re.M)
  except OSError:
    return 0
  return int(found.group(1)) if found else 0


def trainer_progress(*subs: str) -> Progress:
  """Each trainer model dir's newest checkpoint step."""
  return lambda d: {sub: checkpoint_step(os.path.join(d, sub)) for sub in subs}


def beam_progress(output: str) -> Progress:
  """A Beam stage's output `output`: 1 once a file of its shards is on disk (in its
  `<output>.tmp-*` sibling, or moved into `output`), 2 once its manifest is published."""
  def level(d: str) -> Dict[str, int]:
    out = os.path.join(d, output)
    if os.path.exists(os.path.join(out, "manifest.json")):
      return {output: 2}
    for path in glob.glob(out + ".tmp-*") + [out]:
      if os.path.isdir(path) and any(files for _, _, files in os.walk(path)):
        return {output: 1}
    return {output: 0}
  return level


def bundle_progress(d: str) -> Dict[str, int]:
  """The newest published index bundle's version (0: none)."""
  index = os.path.join(d, "index")
  try:
    versions = [int(v) for v in os.listdir(index) if v.isdigit()
                and os.path.exists(os.path.join(index, v, "manifest.json"))]
  except OSError:
    versions = []
  return {"index": max(versions, default=0)}


def serving_progress(d: str) -> Dict[str, int]:
  """How many model versions an export has published under `serving/` (each a rename)."""
  base = os.path.join(d, "serving")
  count = 0
  if os.path.isdir(base):
    for model in os.listdir(base):
      if not model.startswith(".") and os.path.isdir(os.path.join(base, model)):
        count += sum(v.isdigit() for v in os.listdir(os.path.join(base, model)))
  return {"serving": count}


class Stage:
  """One stage's command line, how its run directory is prepared, what its run wrote, and how
  its progress is read (where kills are placed)."""

  def __init__(self, name: str, argv: Callable[[str], List[str]], outputs: List[str],
               deterministic: bool, progress: Progress,
               prepare: Optional[Callable[[str], None]] = None,
               trainer_dirs: Tuple[str, ...] = (),
               companion: Optional[Callable[[str], List[str]]] = None):
    self.name = name
    self.argv = argv  # run dir -> `python -m` arguments
    self.outputs = outputs  # sub-directories of the run dir the stage writes
    self.deterministic = deterministic  # its files are byte-equal across runs
    self.progress = progress
    self.prepare = prepare or (lambda d: None)
    self.trainer_dirs = trainer_dirs  # model dirs whose checkpoints hold step + data position
    # A command that runs beside the stage, started before it and never killed (the trainer a
    # refresh worker serves); it must end with exit status 0 too.
    self.companion = companion

  @property
  def killed_trainers(self) -> Tuple[str, ...]:
    """The trainer dirs of the killed command itself (not a companion's): the ones a re-run
    resumes, whose weights must come out bit-equal."""
    return self.trainer_dirs if self.companion is None else ()

  @property
  def judges_bundle_version(self) -> bool:
    """Whether the newest bundle's version must equal the reference's: when the killed command
    publishes its bundles itself at fixed steps. A separate refresh worker publishes for the
    newest export it finds when it polls, so its version count follows timing (by design: it
    skips exports superseded meanwhile); its bundle's step and rows are still judged."""
    return self.companion is None


def stages(work_dir: str) -> List[Stage]:
  """The long stages in pipeline order; each later stage reads an earlier one's reference run."""
  docs, questions = write_inputs(work_dir)
  ref = lambda name, *sub: os.path.join(work_dir, name, "ref", *sub)  # pylint: disable=unnecessary-lambda-assignment
  corpus, annotations = ref("build_corpus", "corpus"), ref("annotate_corpus", "annotations")

  def pretrain(steps, refresh="inline"):
    return lambda d: ["realm_tf.launch.pretrain", f"--work_dir={d}", f"--corpus_dir={corpus}",
                      f"--annotations_dir={annotations}"] + _pretrain_flags(steps, refresh)

  def copy_warmup(d):
    shutil.copytree(ref("reader_warmup"), d, dirs_exist_ok=True,
                    ignore=shutil.ignore_patterns("*.log", REFERENCE_DONE))

  return [
      Stage("build_corpus", lambda d: ["realm_tf.launch.build_corpus", f"--inputs={docs}",
                                       f"--output_dir={d}/corpus", "--num_shards=2",
                                       "--block_length=64"], ["corpus"], True,
            beam_progress("corpus")),
      Stage("annotate_corpus", lambda d: ["realm_tf.launch.annotate_corpus",
                                          f"--corpus_dir={corpus}",
                                          f"--output_dir={d}/annotations", "--num_shards=2"],
            ["annotations"], True, beam_progress("annotations")),
      Stage("ict", lambda d: ["realm_tf.launch.ict", f"--corpus_dir={corpus}",
                              f"--model_dir={d}/ict", f"--index_dir={d}/index",
                              "--batch_size=2", f"--num_train_steps={STEPS}",
                              "--checkpoint_every=1", "--min_recall=0"],
            ["ict", "index"], False, trainer_progress("ict"), trainer_dirs=("ict",)),
      Stage("reader_warmup", pretrain(0), ["corpus", "ict", "index", "reader_warmup"], False,
            trainer_progress("ict", "reader_warmup"), trainer_dirs=("ict", "reader_warmup")),
      Stage("realm_inline_refresh", pretrain(STEPS), ["index", "realm"], False,
            trainer_progress("realm"), prepare=copy_warmup, trainer_dirs=("realm",)),
      Stage("refresh_index_worker",
            lambda d: ["realm_tf.launch.refresh_index", f"--model_dir={d}/realm",
                       f"--corpus_dir={corpus}", f"--index_dir={d}/index", "--min_recall=0",
                       "--poll_min_seconds=1", "--poll_max_seconds=2"],
            ["index", "realm"], False, bundle_progress, prepare=copy_warmup,
            trainer_dirs=("realm",), companion=pretrain(STEPS, refresh="async")),
      Stage("finetune", lambda d: ["realm_tf.launch.finetune", f"--dataset=jsonl:{questions}",
                                   f"--index_dir={ref('realm_inline_refresh', 'index')}",
                                   f"--corpus_dir={corpus}", f"--model_dir={d}/finetune",
                                   "--reader_init=", "--reader_preset=tiny", "--batch_size=2",
                                   f"--num_train_steps={STEPS}", "--checkpoint_every=1",
                                   "--reader_seq_length=64", "--reader_query_length=16",
                                   "--span_hidden_size=16", "--retriever_beam_size=8",
                                   "--reader_beam_size=2"],
            ["finetune"], False, trainer_progress("finetune"), trainer_dirs=("finetune",)),
      Stage("export", lambda d: ["realm_tf.launch.export",
                                 f"--model_dir={ref('finetune', 'finetune')}",
                                 f"--export_base={d}/serving", "--variant=stock"],
            ["serving"], False, serving_progress),
  ]


# --- running and killing -------------------------------------------------------------------------


def _env() -> Dict[str, str]:
  return dict(os.environ, CUDA_VISIBLE_DEVICES="", TF_CPP_MIN_LOG_LEVEL="3", PYTHONUNBUFFERED="1")


def start(args: List[str], log: str) -> subprocess.Popen:
  """`python -m <args>` from the repository root in a new process group, output to `log`."""
  with open(log, "ab") as out:
    return subprocess.Popen([sys.executable, "-m", *args], cwd=ROOT, env=_env(), stdout=out,
                            stderr=subprocess.STDOUT, start_new_session=True)


def kill_group(proc: subprocess.Popen) -> None:
  """SIGKILL to the process's whole group (its workers too), then reaps it."""
  try:
    os.killpg(proc.pid, signal.SIGKILL)
  except ProcessLookupError:
    pass
  proc.wait()


def run_to_end(args: List[str], log: str) -> Tuple[int, float]:
  """Runs a command to its end; returns (exit status, wall seconds)."""
  begin = time.perf_counter()
  proc = start(args, log)
  try:
    rc = proc.wait(timeout=TIMEOUT_S)
  except subprocess.TimeoutExpired:
    kill_group(proc)
    rc = -9
  return rc, time.perf_counter() - begin


def run_watched(args: List[str], log: str, run_dir: str,
                progress: Progress) -> Tuple[int, float, Dict[str, List[List[float]]]]:
  """Runs a command to its end, reading its progress every POLL_S seconds; returns (exit status,
  wall seconds, timeline): the timeline maps each series to [level, seconds after the start] for
  every level first seen above the one before (levels already there at the start are no
  marker of this run)."""
  last = progress(run_dir)
  timeline: Dict[str, List[List[float]]] = {series: [] for series in last}
  begin = time.perf_counter()
  proc = start(args, log)
  rc = None
  while rc is None:
    rc = proc.poll()  # read before the outputs: a run's last outputs are on disk when it ends
    now = time.perf_counter() - begin
    for series, level in progress(run_dir).items():
      if level > last.get(series, 0):
        timeline.setdefault(series, []).append([level, round(now, 3)])
        last[series] = level
    if rc is None and now > TIMEOUT_S:
      kill_group(proc)
      rc = -9
    elif rc is None:
      time.sleep(POLL_S)
  return rc, time.perf_counter() - begin, timeline


def run_and_kill_after(args: List[str], log: str, run_dir: str, progress: Progress,
                       series: str, level: int, delay_s: float) -> Optional[Tuple[float, float]]:
  """Starts a command, waits until `series` of its progress reaches `level`, and kills its
  process group `delay_s` seconds later; returns (seconds after the start when the level was
  seen, when the kill came), or None when the run ended first (the kill found nothing)."""
  begin = time.perf_counter()
  proc = start(args, log)
  while progress(run_dir).get(series, 0) < level:
    if proc.poll() is not None:
      return None
    if time.perf_counter() - begin > TIMEOUT_S:
      break  # never reached: killed now, judged as any other kill
    time.sleep(POLL_S)
  seen = time.perf_counter() - begin
  try:
    proc.wait(timeout=delay_s)
    return None
  except subprocess.TimeoutExpired:
    at = time.perf_counter() - begin
    kill_group(proc)
    return seen, at


# --- what a reader could see ------------------------------------------------------------------


def _sha256(path: str) -> str:
  h = hashlib.sha256()
  with open(path, "rb") as f:
    for chunk in iter(lambda: f.read(1 << 20), b""):
      h.update(chunk)
  return h.hexdigest()


def _json(path: str) -> Optional[Dict]:
  try:
    with open(path, encoding="utf-8") as f:
      return json.load(f)
  except (OSError, ValueError):
    return None


def _checkpoints_not_whole(dirpath: str) -> List[str]:
  """The checkpoints a `checkpoint` state file in `dirpath` lists without their files. The
  latest (`model_checkpoint_path`, what every restore reads) must be whole. An older listed one
  may be gone: `tf.train.CheckpointManager.save` records its new state, then deletes the
  checkpoints past `max_to_keep`, then records the state again, so a kill during that sweep
  leaves a deleted older checkpoint listed (TensorFlow's order, chosen so that a kill never
  loses the new checkpoint; the next save's sweep skips the missing files)."""
  with open(os.path.join(dirpath, "checkpoint"), encoding="utf-8") as f:
    text = f.read()
  latest = re.findall(r'^model_checkpoint_path: "([^"]+)"', text, flags=re.M)
  listed = re.findall(r'all_model_checkpoint_paths: "([^"]+)"', text)

  def whole(prefix: str) -> bool:
    return os.path.exists(prefix + ".index") and bool(glob.glob(prefix + ".data-*"))

  def step(prefix: str) -> int:
    tail = re.search(r"-(\d+)$", prefix)
    return int(tail.group(1)) if tail else -1

  absolute = lambda p: p if os.path.isabs(p) else os.path.join(dirpath, p)
  problems = []
  newest = absolute(latest[0]) if latest else None
  if newest is not None and not whole(newest):
    problems.append(f"checkpoint {newest} (the latest) listed without its files")
  for prefix in map(absolute, listed):
    if prefix != newest and not whole(prefix) and (newest is None or step(prefix) >= step(newest)):
      problems.append(f"checkpoint {prefix} listed without its files (not older than the latest)")
  return problems


def half_published(root: str) -> List[str]:
  """What a reader would find published but not whole under `root`: a manifest whose shards are
  missing or differ from their sha256, a listed checkpoint without its files, an embedder export,
  index bundle or serving version without its files. Hidden (temporary) names are skipped: no
  reader lists them."""
  problems = []
  for dirpath, dirnames, filenames in os.walk(root):
    dirnames[:] = [n for n in dirnames if not n.startswith(".")]
    name = os.path.basename(dirpath)
    parent = os.path.basename(os.path.dirname(dirpath))
    if "manifest.json" in filenames:
      manifest = _json(os.path.join(dirpath, "manifest.json"))
      if manifest is None:
        problems.append(f"{dirpath}/manifest.json unreadable")
      elif "shards" in manifest:
        for shard in manifest["shards"]:
          path = os.path.join(dirpath, shard["file"])
          if not os.path.exists(path) or _sha256(path) != shard["sha256"]:
            problems.append(f"{path} missing or not at its manifest's sha256")
    if name == "checkpoints" and "checkpoint" in filenames:
      problems += _checkpoints_not_whole(dirpath)
    if name.isdigit() and parent == "embedder_exports":
      for need in ("saved_model.pb", "realm_export.json"):
        if need not in filenames:
          problems.append(f"embedder export {dirpath} has no {need}")
    if name.isdigit() and parent == "index" and not _bundle_whole(dirpath, filenames, dirnames):
      problems.append(f"index bundle {dirpath} without its files")
    if name.isdigit() and os.path.basename(os.path.dirname(os.path.dirname(dirpath))) == \
        "serving" and ("saved_model.pb" not in filenames or "variables" not in dirnames):
      problems.append(f"serving version {dirpath} without saved_model.pb and variables/")
  return problems


def _bundle_whole(path: str, filenames, dirnames) -> bool:
  return ("manifest.json" in filenames and "block_ids.npy" in filenames
          and "searcher" in dirnames and "query_embedder" in dirnames
          and os.path.exists(os.path.join(path, "query_embedder", "saved_model.pb")))


def temporaries(root: str) -> List[str]:
  """Names under `root` that a publisher writes before its rename (left by a killed writer)."""
  found = []
  for dirpath, dirnames, filenames in os.walk(root):
    for n in dirnames + filenames:
      if _TEMP.search(n):
        found.append(os.path.relpath(os.path.join(dirpath, n), root))
    dirnames[:] = [n for n in dirnames if not _TEMP.search(n)]
  return sorted(found)


# --- comparing with the reference -------------------------------------------------------------


# Files a later stage's reader adds to an earlier stage's output: the block lookup built in a
# corpus dir on its first use (`block_lookup.LOOKUP_DIR`), so a reference corpus that later stages
# read holds it and a re-run's does not.
_ADDED_BY_READERS = ("corpus/lookup/",)

# When a file was written: the one field of a manifest that differs between equal runs.
_VOLATILE = ("created",)


def _content_digest(path: str) -> str:
  """sha256 of a file's bytes; of a JSON file's content without its write time."""
  if path.endswith(".json"):
    obj = _json(path)
    if isinstance(obj, dict):
      kept = {k: v for k, v in obj.items() if k not in _VOLATILE}
      return hashlib.sha256(json.dumps(kept, sort_keys=True).encode()).hexdigest()
  return _sha256(path)


def file_digests(root: str, subdirs: List[str]) -> Dict[str, str]:
  """{relative path: sha256} of every published (not hidden, not temporary) file; a JSON
  manifest's write time is left out."""
  out = {}
  for sub in subdirs:
    for dirpath, dirnames, filenames in os.walk(os.path.join(root, sub)):
      dirnames[:] = [n for n in dirnames if not n.startswith(".") and not _TEMP.search(n)]
      for n in filenames:
        if not n.startswith(".") and not _TEMP.search(n):
          path = os.path.join(dirpath, n)
          out[os.path.relpath(path, root)] = _content_digest(path)
  return out


def trainer_figures(model_dir: str) -> Dict[str, object]:
  """The final checkpoint's step and data position(s), and TRAINING_DONE's step."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  latest = tf.train.latest_checkpoint(os.path.join(model_dir, "checkpoints"))
  if latest is None:
    return {"checkpoint": None}
  reader = tf.train.load_checkpoint(latest)
  done = _json(os.path.join(model_dir, "TRAINING_DONE"))
  return {"step": int(reader.get_tensor("step/.ATTRIBUTES/VARIABLE_VALUE")),
          "data_position": reader.get_tensor(
              "data_position/.ATTRIBUTES/VARIABLE_VALUE").tolist(),
          "done_step": done and done.get("step")}


def differing_weights(model_dir: str, ref_dir: str) -> List[str]:
  """The model variables whose values in the two final checkpoints are not bit-equal (a variable
  one of them lacks included); [] when all are."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  a = tf.train.load_checkpoint(tf.train.latest_checkpoint(os.path.join(model_dir, "checkpoints")))
  b = tf.train.load_checkpoint(tf.train.latest_checkpoint(os.path.join(ref_dir, "checkpoints")))
  names_a = {n for n in a.get_variable_to_shape_map() if n.startswith("model/")}
  names_b = {n for n in b.get_variable_to_shape_map() if n.startswith("model/")}
  return sorted((names_a ^ names_b) | {n for n in names_a & names_b
                                       if not np.array_equal(a.get_tensor(n), b.get_tensor(n))})


def compare(stage: Stage, run_dir: str, ref_dir: str) -> Tuple[List[str], Dict[str, object]]:
  """What differs from the reference run (empty: equal), and the figures compared. A killed
  trainer's final weights and (when the killed command publishes its own bundles) the newest
  bundle's version are judged; a companion trainer's weights are recorded only."""
  diffs, figures = [], {}
  if stage.deterministic:
    mine, ref = file_digests(run_dir, stage.outputs), file_digests(ref_dir, stage.outputs)
    # Not the stage's own: what later stages' readers add to a reference's output.
    mine, ref = ({k: v for k, v in d.items() if not k.startswith(_ADDED_BY_READERS)}
                 for d in (mine, ref))
    differing = sorted(k for k in set(mine) | set(ref) if mine.get(k) != ref.get(k))
    figures["files_compared"] = len(ref)
    if differing:
      diffs.append(f"files differ from the uninterrupted run: {differing[:5]}")
  for sub in stage.trainer_dirs:
    mine, ref = trainer_figures(os.path.join(run_dir, sub)), \
        trainer_figures(os.path.join(ref_dir, sub))
    figures[sub] = mine
    if mine != ref:
      diffs.append(f"{sub}: {mine} != the uninterrupted run's {ref}")
    elif mine.get("step"):
      differing = differing_weights(os.path.join(run_dir, sub), os.path.join(ref_dir, sub))
      figures[sub]["weights_bit_equal"] = not differing
      if differing and sub in stage.killed_trainers:
        diffs.append(f"{sub}: final weights differ from the uninterrupted run's in "
                     f"{len(differing)} variable(s), e.g. {differing[:3]}")
  if "index" in stage.outputs:
    mine, ref = _newest_bundle(run_dir), _newest_bundle(ref_dir)
    figures["newest_bundle"] = mine
    judged = ("version", "step", "rows") if stage.judges_bundle_version else ("step", "rows")
    if any(mine[k] != ref[k] for k in judged):
      diffs.append(f"newest index bundle {mine} != the uninterrupted run's {ref} (compared: "
                   f"{', '.join(judged)})")
  if stage.name == "export":
    mine, ref = _serving_layout(run_dir), _serving_layout(ref_dir)
    figures["versions"] = mine
    if mine != ref:
      diffs.append(f"serving versions {mine} != the uninterrupted run's {ref}")
    digests = lambda d: {k: v for k, v in file_digests(d, ["serving"]).items()  # pylint: disable=unnecessary-lambda-assignment
                         if "/variables/" in k}
    mine_v, ref_v = digests(run_dir), digests(ref_dir)
    figures["variables_files_byte_equal"] = mine_v == ref_v and bool(ref_v)
    if mine_v != ref_v:
      diffs.append("exported variables differ from the uninterrupted run's")
  return diffs, figures


def _newest_bundle(run_dir: str) -> Dict[str, object]:
  """The newest index bundle's version, the trainer step of its export, and its row count."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  index = os.path.join(run_dir, "index")
  versions = sorted(v for v in os.listdir(index) if v.isdigit()) if os.path.isdir(index) else []
  if not versions:
    return {"version": None, "step": None, "rows": None}
  path = os.path.join(index, versions[-1])
  manifest = _json(os.path.join(path, "manifest.json")) or {}
  return {"version": int(versions[-1]), "step": manifest.get("step"),
          "rows": int(np.load(os.path.join(path, "block_ids.npy")).shape[0])}


def _serving_layout(run_dir: str) -> Dict[str, List[str]]:
  base = os.path.join(run_dir, "serving")
  if not os.path.isdir(base):
    return {}
  return {m: sorted(v for v in os.listdir(os.path.join(base, m)) if v.isdigit())
          for m in sorted(os.listdir(base)) if not m.startswith(".")}


# --- the matrix -------------------------------------------------------------------------------


MAX_DRAWS_PER_POINT = 3  # kill times drawn per landed kill wanted, at most
REFERENCE_DONE = ".reference.json"  # in a reference run's dir: its wall time
ROWS_LOG = "rows.jsonl"  # in the group's work dir: each row as it is measured


def reference_run(stage: Stage, work_dir: str) -> Tuple[str, Dict[str, object]]:
  """The stage's uninterrupted, watched run (once per work dir); returns its dir and record:
  `wall_s` and the progress `timeline` (`run_watched`)."""
  ref_dir = os.path.join(work_dir, stage.name, "ref")
  done = _json(os.path.join(ref_dir, REFERENCE_DONE))
  if done is not None and "timeline" in done:
    return ref_dir, done
  shutil.rmtree(ref_dir, ignore_errors=True)
  os.makedirs(ref_dir)
  stage.prepare(ref_dir)
  companion = _start_companion(stage, ref_dir)
  rc, wall, timeline = run_watched(stage.argv(ref_dir), os.path.join(ref_dir, "run.log"),
                                   ref_dir, stage.progress)
  if rc != 0 or _end_companion(companion) != 0:
    raise RuntimeError(f"{stage.name}: the uninterrupted run failed (exit status {rc}); see "
                       f"{ref_dir}/*.log")
  done = {"wall_s": wall, "timeline": timeline}
  with open(os.path.join(ref_dir, REFERENCE_DONE), "w", encoding="utf-8") as f:
    json.dump(done, f)
  return ref_dir, done


def kill_windows(reference: Dict[str, object]) -> Dict[str, List[List[float]]]:
  """Each progress series of the reference run with at least one marker: its markers, [level,
  seconds after the start], followed by the run's end when it has one marker only (the window
  is then from that marker to the end)."""
  windows = {}
  for series, marks in reference["timeline"].items():
    if len(marks) == 1:
      marks = marks + [[None, reference["wall_s"]]]
    if marks:
      windows[series] = marks
  return windows


def plan_kill(windows: Dict[str, List[List[float]]], landed: Dict[str, int],
              rng) -> Dict[str, object]:
  """The next kill: the series with the fewest kills landed in its window so far (the first in
  order on a tie), a marker k drawn from its first n - 1, and a delay drawn in (0, the reference's
  time from marker k to marker k + 1)."""
  series = min(windows, key=lambda name: landed.get(name, 0))
  marks = windows[series]
  k = rng.randrange(len(marks) - 1)
  interval = max(marks[k + 1][1] - marks[k][1], POLL_S)
  n = sum(m[0] is not None for m in marks)  # one marker: its window ends with the run
  return {"series": series, "after_level": marks[k][0], "marker": f"{k + 1} of {n}",
          "delay_s": round(rng.uniform(0.0, interval), 3)}


def in_window(windows: Dict[str, List[List[float]]], series: str, level: int,
              killed: bool) -> bool:
  """Whether a kill that left `series` at `level` came after the reference's first marker of it
  and before its last (with one marker: while the run was still alive)."""
  marks = windows[series]
  last = marks[-1][0]
  return killed and level >= marks[0][0] and (last is None or level < last)


def resumed_from(log_text: str, sub: str, step: int) -> bool:
  """Whether a run's log says trainer `sub` restored its checkpoint of `step` (the Trainer's
  `Restored <model_dir>/checkpoints/ckpt-<step> at step <step>` line)."""
  pattern = rf"Restored \S*/{re.escape(sub)}/checkpoints/ckpt-{step} at step {step}\b"
  return re.search(pattern, log_text) is not None


def run_stage(stage: Stage, config: FaultConfig, points: int) -> FaultRow:
  """The watched reference run, then kills placed by the stage's own progress (`plan_kill`)
  until `points` have landed between its first output and its last, each followed by the same
  command to its end and the checks."""
  begin = time.perf_counter()
  base = os.path.join(config.work_dir, stage.name)
  ref_dir, reference = reference_run(stage, config.work_dir)
  wall = reference["wall_s"]
  windows = kill_windows(reference)
  if not windows:
    raise RuntimeError(f"{stage.name}: the uninterrupted run showed no progress marker "
                       f"({reference['timeline']}); nothing to place a kill by")
  ref_steps = {sub: checkpoint_step(os.path.join(ref_dir, sub)) for sub in stage.trainer_dirs}
  rng = config.rng(f"{GROUP}/{stage.name}")
  checked = ["published after the kill: manifests at their shards' sha256, listed checkpoints, "
             "embedder exports, index bundles, serving versions whole",
             "the same command re-run exits 0"]
  if stage.killed_trainers:
    checked.append("the re-run resumed each killed trainer from the checkpoint the kill left "
                   "(its log names it)")
  checked.append("every output file byte-equal to the uninterrupted run's" if stage.deterministic
                 else "final step and data position(s) equal to the uninterrupted run's"
                 + (", exported variables byte-equal" if stage.name == "export" else ""))
  if stage.killed_trainers:
    checked.append("final weights bit-equal to the uninterrupted run's")
  if "index" in stage.outputs:
    checked.append("newest index bundle's " + ("version, step and rows" if
                                                stage.judges_bundle_version else "step and rows")
                   + " equal to the uninterrupted run's")
  failures, notes, leftovers, tries_figures, plans = 0, [], 0, [], []
  landed: Dict[str, int] = {}  # kills landed in their series' window, by series
  killed_count = 0
  # Kills are drawn until `points` have landed in their windows: one that lands after the last
  # marker (a run faster than the reference) is judged but counts for no window, and a run that
  # ended before its kill is recorded, not judged; at most MAX_DRAWS_PER_POINT × points draws.
  while sum(landed.values()) < points and len(plans) < MAX_DRAWS_PER_POINT * points:
    i, plan = len(plans), plan_kill(windows, landed, rng)
    plans.append(plan)
    run_dir = os.path.join(base, f"kill-{i}")
    shutil.rmtree(run_dir, ignore_errors=True)
    os.makedirs(run_dir)
    stage.prepare(run_dir)
    log = os.path.join(run_dir, "run.log")
    companion = _start_companion(stage, run_dir)
    kill = run_and_kill_after(stage.argv(run_dir), log, run_dir, stage.progress, plan["series"],
                              plan["after_level"], plan["delay_s"])
    level = stage.progress(run_dir).get(plan["series"], 0)
    plan.update(kill_s=kill and round(kill[1], 2), level_at_kill=level,
                in_window=in_window(windows, plan["series"], level, kill is not None))
    if kill is None:
      # The run ended before its kill: no point of the stage was hit, so there is nothing to
      # survive (a second run of a finished command is another case). Recorded, not judged.
      tries_figures.append({**plan, "killed": False})
      _end_companion(companion)
      shutil.rmtree(run_dir, ignore_errors=True)
      continue
    killed_count += 1
    landed[plan["series"]] = landed.get(plan["series"], 0) + plan["in_window"]
    problems = [f"after the kill: {p}" for p in half_published(run_dir)]
    # Where each trainer stood when killed: a try resumed from a step between its first and last
    # checkpoint is the one that tests an exact mid-run resume (its weights, its dropout streams).
    at_kill = {sub: checkpoint_step(os.path.join(run_dir, sub)) for sub in stage.trainer_dirs}
    rerun_log = os.path.join(run_dir, "rerun.log")
    rc, rerun_s = run_to_end(stage.argv(run_dir), rerun_log)
    if rc != 0:
      problems.append(f"re-run exit status {rc} (see {rerun_log})")
    with open(rerun_log, encoding="utf-8", errors="replace") as f:
      rerun_text = f.read()
    for sub in stage.killed_trainers:
      if at_kill[sub] and not resumed_from(rerun_text, sub, at_kill[sub]):
        problems.append(f"{sub}: the re-run did not resume from the checkpoint of step "
                        f"{at_kill[sub]} the kill left (no 'Restored .../{sub}/checkpoints/"
                        f"ckpt-{at_kill[sub]}' in {rerun_log})")
    figures: Dict[str, object] = {}
    if _end_companion(companion) != 0:
      problems.append(f"the companion (trainer) failed (see {run_dir}/companion.log)")
    else:
      diffs, figures = compare(stage, run_dir, ref_dir)
      problems += diffs
      problems += [f"after the re-run: {p}" for p in half_published(run_dir)]
      left = temporaries(run_dir)
      leftovers += bool(left)
      figures["temporaries_left"] = left[:5]
    tries_figures.append({**plan, "killed": True, "rerun_s": round(rerun_s, 1),
                          "checkpoint_step_at_kill": at_kill,
                          "between_checkpoints": {sub: 0 < at_kill[sub] < ref_steps[sub]
                                                  for sub in stage.killed_trainers},
                          **figures})
    if problems:
      failures += 1
      notes.append(f"kill {plan['delay_s']} s after {plan['series']} reached "
                   f"{plan['after_level']} (at {plan['kill_s']} s): " + "; ".join(problems))
      logging.warning("%s: kill %d: %s", stage.name, i, problems)
    else:
      shutil.rmtree(run_dir, ignore_errors=True)  # keep the disk small; failures are kept
  judged = [t for t in tries_figures if t["killed"]]
  between = {sub: sum(t["between_checkpoints"][sub] for t in judged)
             for sub in stage.killed_trainers}
  drawn = "; ".join(f"{p['delay_s']} s after {p['series']} marker {p['marker']} "
                    f"(level {p['after_level']})" for p in plans)
  return FaultRow(
      group=GROUP, fault=f"kill -9 of `{stage.argv('<dir>')[0].split('.')[-1]}` "
      f"({stage.name}), then the same command again",
      injected_at=f"by the stage's own progress (seed {config.seed}): each kill waits until a "
      f"seeded marker k of the n its uninterrupted run showed (series: "
      f"{', '.join(f'{k} {[m[0] for m in v if m[0] is not None]}' for k, v in windows.items())}"
      f"; T = {wall:.1f} s) "
      f"is on disk, then comes after a seeded delay within that run's interval to marker k + 1: "
      f"{drawn}. Drawn until {points} landed after the first marker and before the last "
      f"({sum(landed.values())} did; {killed_count} killed a live run, "
      f"{len(plans) - killed_count} found it ended)",
      tries=killed_count, checked=checked, survived=failures == 0 and killed_count > 0,
      failures=failures,
      reason="; ".join(notes)[:2000] or ("" if killed_count else "no kill found the run alive"),
      figures={"reference_wall_s": round(wall, 1), "reference_timeline": reference["timeline"],
               "kills_landed": killed_count, "kills_in_window": landed,
               "kills_between_checkpoints": between,
               "reruns_leaving_temporaries": leftovers, "tries": tries_figures},
      seconds=round(time.perf_counter() - begin, 1))


def _start_companion(stage: Stage, run_dir: str) -> Optional[subprocess.Popen]:
  if stage.companion is None:
    return None
  return start(stage.companion(run_dir), os.path.join(run_dir, "companion.log"))


def _end_companion(proc: Optional[subprocess.Popen]) -> int:
  if proc is None:
    return 0
  try:
    return proc.wait(timeout=TIMEOUT_S)
  except subprocess.TimeoutExpired:
    kill_group(proc)
    return -9


def run(config: FaultConfig, only: Optional[List[str]] = None) -> List[FaultRow]:
  """Every stage's row (or the stages named in `only`, else in `config.kill_stages`, with the
  reference runs they read)."""
  if only is None and config.kill_stages:
    only = list(config.kill_stages)
  os.makedirs(config.work_dir, exist_ok=True)
  rows = []
  all_stages = stages(config.work_dir)
  unknown = set(only or ()) - {stage.name for stage in all_stages}
  if unknown:
    raise ValueError(f"unknown kill stage(s) {', '.join(sorted(unknown))}; known: "
                     f"{', '.join(stage.name for stage in all_stages)}")
  for stage in all_stages:
    if only is not None and stage.name not in only:
      # Its reference run still feeds the later stages.
      needed = any(o in NEEDS.get(stage.name, ()) for o in only)
      if needed:
        reference_run(stage, config.work_dir)
      continue
    try:
      rows.append(run_stage(stage, config, config.kill_points))
    except (RuntimeError, OSError) as e:  # a stage that cannot run is a row, not a lost group
      logging.exception("kill %s could not run", stage.name)
      rows.append(FaultRow(group=GROUP, fault=f"kill -9 of {stage.name}, then the same command "
                           "again", injected_at="(not reached)", tries=0, checked=[],
                           survived=False, failures=1, reason=f"{type(e).__name__}: {e}"))
    logging.info("kill %s: survived=%s %s", stage.name, rows[-1].survived, rows[-1].reason)
    # Each row as soon as it is measured, so a long run's finished stages are never lost.
    with open(os.path.join(config.work_dir, ROWS_LOG), "a", encoding="utf-8") as f:
      f.write(json.dumps(rows[-1].to_json()) + "\n")
  return rows


# Which later stages read a stage's reference run.
NEEDS = {
    "build_corpus": ("annotate_corpus", "ict", "reader_warmup", "realm_inline_refresh",
                     "finetune", "export"),
    "annotate_corpus": ("reader_warmup", "realm_inline_refresh", "finetune", "export"),
    "reader_warmup": ("realm_inline_refresh", "refresh_index_worker", "finetune", "export"),
    "realm_inline_refresh": ("finetune", "export"),
    "finetune": ("export",),
}
