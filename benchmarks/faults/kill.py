"""Kills: `kill -9` of each long stage's command line at seeded random points, then the same
command again.

Each stage is its real CLI (`python -m realm_tf.launch.<stage>`) at toy size in a subprocess of
its own process group. One uninterrupted reference run per stage gives its wall time T; each kill
point is a seeded random time in (0, T) after the start, when the whole process group gets
SIGKILL. Right after the kill, everything published in the run's directory must be whole (a
corpus or annotation manifest with every shard at its sha256, every checkpoint the `checkpoint`
file lists with its files, every embedder export, index bundle and serving version with its
files). Then the same command runs again and must finish (exit status 0) with the reference run's
artefacts: byte-equal files where the stage is deterministic (corpus shards, annotations, the
export's variables), otherwise equal figures: the final step and the data position every input
pipeline reached (the position counts raw examples: equal positions at equal steps mean every
example was consumed exactly once, none skipped or repeated across the kill). Temporaries left
beside published names (`*.tmp*`, `.tmp-*`, `.old-*`, `.import-tmp-*`, checkpoint `*_temp*`) are
counted after the re-run.

The stages feed each other: the corpus the reference build wrote is annotated, trained on by ICT,
the main job (`pretrain`: reader warm-up, then REALM with inline refresh, or a trainer with a
separate `refresh_index` worker), fine-tuned on, and the fine-tuned model exported.
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
  return ["--retriever_preset=tiny", "--retriever_init=", "--ict_steps=2", "--ict_batch_size=4",
          "--reader_preset=tiny", "--reader_init=", f"--reader_warmup_steps={STEPS}",
          "--reader_warmup_batch_size=2", "--batch_size=2",
          f"--num_train_steps={num_train_steps}", f"--refresh={refresh}",
          "--refresh_every_steps=2", "--checkpoint_every=1", "--num_candidates=2",
          "--min_recall=0", "--heldout_fraction=0.3", "--heldout_queries=4"]


class Stage:
  """One stage's command line, how its run directory is prepared, and what its run wrote."""

  def __init__(self, name: str, argv: Callable[[str], List[str]], outputs: List[str],
               deterministic: bool, prepare: Optional[Callable[[str], None]] = None,
               trainer_dirs: Tuple[str, ...] = (),
               companion: Optional[Callable[[str], List[str]]] = None):
    self.name = name
    self.argv = argv  # run dir -> `python -m` arguments
    self.outputs = outputs  # sub-directories of the run dir the stage writes
    self.deterministic = deterministic  # its files are byte-equal across runs
    self.prepare = prepare or (lambda d: None)
    self.trainer_dirs = trainer_dirs  # model dirs whose checkpoints hold step + data position
    # A command that runs beside the stage, started before it and never killed (the trainer a
    # refresh worker serves); it must end with exit status 0 too.
    self.companion = companion


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
                                       "--block_length=64"], ["corpus"], True),
      Stage("annotate_corpus", lambda d: ["realm_tf.launch.annotate_corpus",
                                          f"--corpus_dir={corpus}",
                                          f"--output_dir={d}/annotations", "--num_shards=2"],
            ["annotations"], True),
      Stage("ict", lambda d: ["realm_tf.launch.ict", f"--corpus_dir={corpus}",
                              f"--model_dir={d}/ict", f"--index_dir={d}/index",
                              "--batch_size=2", f"--num_train_steps={STEPS}",
                              "--checkpoint_every=1", "--min_recall=0"],
            ["ict", "index"], False, trainer_dirs=("ict",)),
      Stage("reader_warmup", pretrain(0), ["corpus", "ict", "index", "reader_warmup"], False,
            trainer_dirs=("ict", "reader_warmup")),
      Stage("realm_inline_refresh", pretrain(STEPS), ["index", "realm"], False,
            prepare=copy_warmup, trainer_dirs=("realm",)),
      Stage("refresh_index_worker",
            lambda d: ["realm_tf.launch.refresh_index", f"--model_dir={d}/realm",
                       f"--corpus_dir={corpus}", f"--index_dir={d}/index", "--min_recall=0",
                       "--poll_min_seconds=1", "--poll_max_seconds=2"],
            ["index", "realm"], False, prepare=copy_warmup, trainer_dirs=("realm",),
            companion=pretrain(STEPS, refresh="async")),
      Stage("finetune", lambda d: ["realm_tf.launch.finetune", f"--dataset=jsonl:{questions}",
                                   f"--index_dir={ref('realm_inline_refresh', 'index')}",
                                   f"--corpus_dir={corpus}", f"--model_dir={d}/finetune",
                                   "--reader_init=", "--reader_preset=tiny", "--batch_size=2",
                                   f"--num_train_steps={STEPS}", "--checkpoint_every=1",
                                   "--reader_seq_length=64", "--reader_query_length=16",
                                   "--span_hidden_size=16", "--retriever_beam_size=8",
                                   "--reader_beam_size=2"],
            ["finetune"], False, trainer_dirs=("finetune",)),
      Stage("export", lambda d: ["realm_tf.launch.export",
                                 f"--model_dir={ref('finetune', 'finetune')}",
                                 f"--export_base={d}/serving", "--variant=stock"],
            ["serving"], False),
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


def run_and_kill(args: List[str], log: str, at_s: float) -> bool:
  """Starts a command and kills its process group `at_s` seconds later; False when it had
  already ended by then (the kill found nothing to kill)."""
  proc = start(args, log)
  try:
    proc.wait(timeout=at_s)
    return False
  except subprocess.TimeoutExpired:
    kill_group(proc)
    return True


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
      with open(os.path.join(dirpath, "checkpoint"), encoding="utf-8") as f:
        listed = re.findall(r'all_model_checkpoint_paths: "([^"]+)"', f.read())
      for prefix in listed:
        prefix = prefix if os.path.isabs(prefix) else os.path.join(dirpath, prefix)
        if not os.path.exists(prefix + ".index") or not glob.glob(prefix + ".data-*"):
          problems.append(f"checkpoint {prefix} listed without its files")
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


def weights_equal(model_dir: str, ref_dir: str) -> bool:
  """Whether the final checkpoints hold the same model weights, bit for bit."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  a = tf.train.load_checkpoint(tf.train.latest_checkpoint(os.path.join(model_dir, "checkpoints")))
  b = tf.train.load_checkpoint(tf.train.latest_checkpoint(os.path.join(ref_dir, "checkpoints")))
  names = [n for n in a.get_variable_to_shape_map() if n.startswith("model/")]
  return all(np.array_equal(a.get_tensor(n), b.get_tensor(n)) for n in names)


def compare(stage: Stage, run_dir: str, ref_dir: str) -> Tuple[List[str], Dict[str, object]]:
  """What differs from the reference run (empty: equal), and the figures compared."""
  diffs, figures = [], {}
  if stage.deterministic:
    mine, ref = file_digests(run_dir, stage.outputs), file_digests(ref_dir, stage.outputs)
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
      figures[sub]["weights_bit_equal"] = weights_equal(os.path.join(run_dir, sub),
                                                        os.path.join(ref_dir, sub))
  if "index" in stage.outputs:
    mine, ref = _newest_bundle(run_dir), _newest_bundle(ref_dir)
    figures["newest_bundle"] = mine
    if mine["step"] != ref["step"] or mine["rows"] != ref["rows"]:
      diffs.append(f"newest index bundle {mine} != the uninterrupted run's {ref}")
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


def reference_run(stage: Stage, work_dir: str) -> Tuple[str, float]:
  """The stage's uninterrupted run (once per work dir); returns its dir and wall seconds."""
  ref_dir = os.path.join(work_dir, stage.name, "ref")
  done = _json(os.path.join(ref_dir, REFERENCE_DONE))
  if done is not None:
    return ref_dir, done["wall_s"]
  shutil.rmtree(ref_dir, ignore_errors=True)
  os.makedirs(ref_dir)
  stage.prepare(ref_dir)
  companion = _start_companion(stage, ref_dir)
  rc, wall = run_to_end(stage.argv(ref_dir), os.path.join(ref_dir, "run.log"))
  if rc != 0 or _end_companion(companion) != 0:
    raise RuntimeError(f"{stage.name}: the uninterrupted run failed (exit status {rc}); see "
                       f"{ref_dir}/*.log")
  with open(os.path.join(ref_dir, REFERENCE_DONE), "w", encoding="utf-8") as f:
    json.dump({"wall_s": wall}, f)
  return ref_dir, wall


def run_stage(stage: Stage, config: FaultConfig, points: int) -> FaultRow:
  """The reference run, then kills at seeded random times in (0, T) until `points` have
  landed while the run was alive, each followed by the same command to its end and the checks."""
  begin = time.perf_counter()
  base = os.path.join(config.work_dir, stage.name)
  ref_dir, wall = reference_run(stage, config.work_dir)
  rng = config.rng(f"{GROUP}/{stage.name}")
  # Points are drawn until `points` kills have landed: a time drawn after the run has ended hits
  # no point of the stage (a re-run may be faster than the reference), so another one is drawn,
  # at most MAX_DRAWS_PER_POINT × points in all.
  times: List[float] = []
  checked = ["published after the kill: manifests at their shards' sha256, listed checkpoints, "
             "embedder exports, index bundles, serving versions whole",
             "the same command re-run exits 0"]
  checked.append("every output file byte-equal to the uninterrupted run's" if stage.deterministic
                 else "final step and data position(s) equal to the uninterrupted run's"
                 + (", exported variables byte-equal" if stage.name == "export" else ""))
  failures, notes, landed, leftovers, tries_figures = 0, [], 0, 0, []
  while landed < points and len(times) < MAX_DRAWS_PER_POINT * points:
    i, at = len(times), round(rng.uniform(0.0, wall), 2)
    times.append(at)
    run_dir = os.path.join(base, f"kill-{i}")
    shutil.rmtree(run_dir, ignore_errors=True)
    os.makedirs(run_dir)
    stage.prepare(run_dir)
    log = os.path.join(run_dir, "run.log")
    companion = _start_companion(stage, run_dir)
    killed = run_and_kill(stage.argv(run_dir), log, at)
    landed += killed
    if not killed:
      # The run ended before its drawn time: no point of the stage was hit, so there is nothing
      # to survive (a second run of a finished command is another case: e.g. export's next
      # version). Recorded, not judged.
      tries_figures.append({"kill_s": at, "killed": False})
      shutil.rmtree(run_dir, ignore_errors=True)
      continue
    problems = [f"after the kill: {p}" for p in half_published(run_dir)]
    # Where each trainer stood when killed: a try resumed from a step between its first and last
    # is the one that tests an exact mid-run resume (its weights, its dropout streams).
    at_kill = {sub: trainer_figures(os.path.join(run_dir, sub)).get("step")
               for sub in stage.trainer_dirs}
    rc, rerun_s = run_to_end(stage.argv(run_dir), log)
    if rc != 0:
      problems.append(f"re-run exit status {rc} (see {log})")
    if _end_companion(companion) != 0:
      problems.append(f"the companion (trainer) failed (see {run_dir}/companion.log)")
      rc = rc or 1
    else:
      diffs, figures = compare(stage, run_dir, ref_dir)
      problems += diffs
      problems += [f"after the re-run: {p}" for p in half_published(run_dir)]
      left = temporaries(run_dir)
      leftovers += bool(left)
      tries_figures.append({"kill_s": at, "killed": killed, "rerun_s": round(rerun_s, 1),
                            "temporaries_left": left[:5], "checkpoint_step_at_kill": at_kill,
                            **figures})
    if problems:
      failures += 1
      notes.append(f"kill at {at} s: " + "; ".join(problems))
      logging.warning("%s: kill at %.2f s: %s", stage.name, at, problems)
    else:
      shutil.rmtree(run_dir, ignore_errors=True)  # keep the disk small; failures are kept
  return FaultRow(
      group=GROUP, fault=f"kill -9 of `{stage.argv('<dir>')[0].split('.')[-1]}` "
      f"({stage.name}), then the same command again",
      injected_at=f"seeded random times in (0, {wall:.1f} s) after the start (the uninterrupted "
      f"run's wall time; seed {config.seed}): {times}; tries counts the kills that landed while "
      f"the run was alive ({len(times) - landed} drawn after it had ended; drawn until "
      f"{points} landed)",
      tries=landed, checked=checked, survived=failures == 0,
      failures=failures,
      reason="; ".join(notes)[:2000],
      figures={"reference_wall_s": round(wall, 1), "kills_landed": landed,
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
