"""What a run left on disk, as a reader would see it: files' digests and JSON, temporaries, what
is published but not whole, and how a killed-then-rerun stage's outputs compare with those of
its uninterrupted reference run (the kill group's checks; the other groups use the helpers)."""
import glob
import hashlib
import json
import os
import re
from typing import Dict, List, Optional, Tuple

# Names a publisher writes before its rename; none may be read as published.
TEMP = re.compile(r"(\.tmp$|\.tmp-|^\.tmp-|^\.old-|^\.import-tmp-|_temp)")

# Files a later stage's reader adds to an earlier stage's output: the block lookup built in a
# corpus dir on its first use (`block_lookup.LOOKUP_DIR`), so a reference corpus that later stages
# read holds it and a re-run's does not.
_ADDED_BY_READERS = ("corpus/lookup/",)

# When a file was written: the one field of a manifest that differs between equal runs.
_VOLATILE = ("created",)


def sha256(path: str) -> str:
  """sha256 of a file's bytes."""
  h = hashlib.sha256()
  with open(path, "rb") as f:
    for chunk in iter(lambda: f.read(1 << 20), b""):
      h.update(chunk)
  return h.hexdigest()


def read_json(path: str) -> Optional[Dict]:
  """A JSON file's content; None when it is missing or not JSON."""
  try:
    with open(path, encoding="utf-8") as f:
      return json.load(f)
  except (OSError, ValueError):
    return None


def checkpoint_step(model_dir: str) -> int:
  """The step of the newest checkpoint a trainer's `checkpoints/checkpoint` file names (0: none).
  TensorFlow writes that file after the checkpoint's own files, atomically."""
  try:
    with open(os.path.join(model_dir, "checkpoints", "checkpoint"), encoding="utf-8") as f:
      found = re.search(r'^model_checkpoint_path: "(?:.*/)?ckpt-(\d+)"', f.read(), re.M)
  except OSError:
    return 0
  return int(found.group(1)) if found else 0


def temporaries(root: str) -> List[str]:
  """Names under `root` that a publisher writes before its rename (left by a killed writer)."""
  found = []
  for dirpath, dirnames, filenames in os.walk(root):
    found += [os.path.relpath(os.path.join(dirpath, n), root) for n in dirnames + filenames
              if TEMP.search(n)]
    dirnames[:] = [n for n in dirnames if not TEMP.search(n)]
  return sorted(found)


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
      manifest = read_json(os.path.join(dirpath, "manifest.json"))
      if manifest is None:
        problems.append(f"{dirpath}/manifest.json unreadable")
      for shard in (manifest or {}).get("shards", []):
        path = os.path.join(dirpath, shard["file"])
        if not os.path.exists(path) or sha256(path) != shard["sha256"]:
          problems.append(f"{path} missing or not at its manifest's sha256")
    if name == "checkpoints" and "checkpoint" in filenames:
      problems += _checkpoints_not_whole(dirpath)
    if not name.isdigit():
      continue
    if parent == "embedder_exports":
      problems += [f"embedder export {dirpath} has no {need}"
                   for need in ("saved_model.pb", "realm_export.json") if need not in filenames]
    if parent == "index" and not (
        {"manifest.json", "block_ids.npy"} <= set(filenames)
        and {"searcher", "query_embedder"} <= set(dirnames)
        and os.path.exists(os.path.join(dirpath, "query_embedder", "saved_model.pb"))):
      problems.append(f"index bundle {dirpath} without its files")
    if os.path.basename(os.path.dirname(os.path.dirname(dirpath))) == "serving" and (
        "saved_model.pb" not in filenames or "variables" not in dirnames):
      problems.append(f"serving version {dirpath} without saved_model.pb and variables/")
  return problems


def _content_digest(path: str) -> str:
  """sha256 of a file's bytes; of a JSON file's content without its write time."""
  obj = read_json(path) if path.endswith(".json") else None
  if isinstance(obj, dict):
    kept = {k: v for k, v in obj.items() if k not in _VOLATILE}
    return hashlib.sha256(json.dumps(kept, sort_keys=True).encode()).hexdigest()
  return sha256(path)


def file_digests(root: str, subdirs: List[str]) -> Dict[str, str]:
  """{relative path: sha256} of every published (not hidden, not temporary) file; a JSON
  manifest's write time is left out."""
  def published(name: str) -> bool:
    return not name.startswith(".") and not TEMP.search(name)

  out = {}
  for sub in subdirs:
    for dirpath, dirnames, filenames in os.walk(os.path.join(root, sub)):
      dirnames[:] = filter(published, dirnames)
      for path in (os.path.join(dirpath, n) for n in filenames if published(n)):
        out[os.path.relpath(path, root)] = _content_digest(path)
  return out


def _latest_checkpoint(model_dir: str):
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  latest = tf.train.latest_checkpoint(os.path.join(model_dir, "checkpoints"))
  return latest and tf.train.load_checkpoint(latest)


def trainer_figures(model_dir: str) -> Dict[str, object]:
  """The final checkpoint's step and data position(s), and TRAINING_DONE's step."""
  reader = _latest_checkpoint(model_dir)
  if reader is None:
    return {"checkpoint": None}
  done = read_json(os.path.join(model_dir, "TRAINING_DONE"))
  return {"step": int(reader.get_tensor("step/.ATTRIBUTES/VARIABLE_VALUE")),
          "data_position": reader.get_tensor(
              "data_position/.ATTRIBUTES/VARIABLE_VALUE").tolist(),
          "done_step": done and done.get("step")}


def differing_weights(model_dir: str, ref_dir: str) -> List[str]:
  """The model variables whose values in the two final checkpoints are not bit-equal (a variable
  one of them lacks included); [] when all are."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  a, b = _latest_checkpoint(model_dir), _latest_checkpoint(ref_dir)
  names_a = {n for n in a.get_variable_to_shape_map() if n.startswith("model/")}
  names_b = {n for n in b.get_variable_to_shape_map() if n.startswith("model/")}
  return sorted((names_a ^ names_b) | {n for n in names_a & names_b
                                       if not np.array_equal(a.get_tensor(n), b.get_tensor(n))})


def newest_bundle(run_dir: str) -> Dict[str, object]:
  """The newest index bundle's version, the trainer step of its export, and its row count."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  index = os.path.join(run_dir, "index")
  versions = sorted(v for v in os.listdir(index) if v.isdigit()) if os.path.isdir(index) else []
  if not versions:
    return {"version": None, "step": None, "rows": None}
  path = os.path.join(index, versions[-1])
  return {"version": int(versions[-1]),
          "step": (read_json(os.path.join(path, "manifest.json")) or {}).get("step"),
          "rows": int(np.load(os.path.join(path, "block_ids.npy")).shape[0])}


def serving_layout(run_dir: str) -> Dict[str, List[str]]:
  """{model: its version directories} under the run's `serving/`."""
  base = os.path.join(run_dir, "serving")
  if not os.path.isdir(base):
    return {}
  return {m: sorted(v for v in os.listdir(os.path.join(base, m)) if v.isdigit())
          for m in sorted(os.listdir(base)) if not m.startswith(".")}


def resumed_from(log_text: str, sub: str, step: int) -> bool:
  """Whether a run's log says trainer `sub` restored its checkpoint of `step` (the Trainer's
  `Restored <model_dir>/checkpoints/ckpt-<step> at step <step>` line)."""
  pattern = rf"Restored \S*/{re.escape(sub)}/checkpoints/ckpt-{step} at step {step}\b"
  return re.search(pattern, log_text) is not None


def compare(stage, run_dir: str, ref_dir: str) -> Tuple[List[str], Dict[str, object]]:
  """What differs between a `kill_stages.Stage`'s run and its reference run (empty: equal), and
  the figures compared. A killed trainer's final weights and (when the killed command publishes
  its own bundles) the newest bundle's version are judged; a companion trainer's weights are
  recorded only."""
  diffs, figures = [], {}
  if stage.deterministic:
    # Less what later stages' readers add to a reference's output (not the stage's own).
    mine, ref = ({k: v for k, v in file_digests(d, stage.outputs).items()
                  if not k.startswith(_ADDED_BY_READERS)} for d in (run_dir, ref_dir))
    differing = sorted(k for k in set(mine) | set(ref) if mine.get(k) != ref.get(k))
    figures["files_compared"] = len(ref)
    if differing:
      diffs.append(f"files differ from the uninterrupted run: {differing[:5]}")
  for sub in stage.trainer_dirs:
    mine, ref = (trainer_figures(os.path.join(d, sub)) for d in (run_dir, ref_dir))
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
    mine, ref = newest_bundle(run_dir), newest_bundle(ref_dir)
    figures["newest_bundle"] = mine
    judged = ("version", "step", "rows") if stage.judges_bundle_version else ("step", "rows")
    if any(mine[k] != ref[k] for k in judged):
      diffs.append(f"newest index bundle {mine} != the uninterrupted run's {ref} (compared: "
                   f"{', '.join(judged)})")
  if stage.name == "export":
    mine, ref = serving_layout(run_dir), serving_layout(ref_dir)
    figures["versions"] = mine
    if mine != ref:
      diffs.append(f"serving versions {mine} != the uninterrupted run's {ref}")
    mine, ref = ({k: v for k, v in file_digests(d, ["serving"]).items() if "/variables/" in k}
                 for d in (run_dir, ref_dir))
    figures["variables_files_byte_equal"] = mine == ref and bool(ref)
    if mine != ref:
      diffs.append("exported variables differ from the uninterrupted run's")
  return diffs, figures
