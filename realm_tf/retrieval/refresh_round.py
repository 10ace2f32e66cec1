"""Refresh rounds: how the refresher's workers agree on one export and keep up with the trainer.

A refresh round is one full re-embedding of the document set with one embedder export, from its
declaration to the publishing of its bundle. Worker 0 (the chief) declares it in
`<index_dir>/.work/ROUND.json` (`Round`: the export, the corpus directories, when and at which
trainer step it began, the export lease it holds); the other shard workers embed their shards
for the declared round only, so every worker's parts belong to the same export.

The rule that lets the index keep up with a trainer that exports faster than a round takes:
**a round, once declared, is finished, never abandoned for a newer export.** The chief then
declares the next round with the newest export at that moment; the exports in between are
skipped. A chief restarted mid-round resumes it while training goes on (finished parts are
skipped; once training is done, only the final export is indexed). Hence the staleness of a
bundle (the trainer's step when it is published minus its export's step) is bounded by

    the steps between two exports + the steps the trainer takes during one round

and `staleness` records its parts in the bundle manifest. The trainer's step is the newest of its
embedder exports and its checkpoints (`trainer_step`).

While a round runs, its export is leased (`embedder_export.lease_export`) so the trainer's
export pruning leaves it alone. `prune_exports` takes a lease untouched for `lease_seconds` (a
day) for one a crashed refresher left behind, and a round over a whole Wikipedia can take longer
than that: the chief renews the lease (`renew_lease`) at every part it finishes, at every poll
while it waits for the other workers' parts, and before it publishes. When a round ends (published, or refused for bad input) the lease
is released and every part under `.work/` is removed; declaring a round removes the parts of
any other (abandoned) round (`remove_parts`).
"""
import dataclasses
import json
import os
import time
import uuid
from typing import Dict, List, Optional, Sequence

import tensorflow as tf
from absl import logging

from realm_tf.io import atomic
from realm_tf.retrieval import embedder_export

WORK_SUBDIR = ".work"
ROUND_FILE = "ROUND.json"
CHECKPOINTS_SUBDIR = "checkpoints"  # the trainer's CheckpointManager directory (ckpt-<step>)


@dataclasses.dataclass
class Round:
  """One declared refresh round (the contents of `ROUND.json`).

  `final` marks the file the chief leaves when its watch loop stops: no round is under way and
  the shard workers may stop too.
  """
  id: str = ""
  export: str = ""
  step: int = -1
  corpus_dirs: List[str] = dataclasses.field(default_factory=list)
  declared: float = 0.0
  trainer_step: int = -1   # the trainer's step when the round was declared
  lease: str = ""          # the export lease this round holds ("" when the export is not leased)
  final: bool = False

  def work_prefix(self) -> str:
    """The name prefix of this round's part directories under `.work/` (`<step:08d>-`)."""
    return f"{self.step:08d}-"


def work_root(index_dir: str) -> str:
  """`<index_dir>/.work`: refresh rounds' parts and `ROUND.json`."""
  return os.path.join(index_dir, WORK_SUBDIR)


def round_path(index_dir: str) -> str:
  """`<index_dir>/.work/ROUND.json`."""
  return os.path.join(work_root(index_dir), ROUND_FILE)


def read_round(index_dir: str) -> Optional[Round]:
  """The declared round, or None when there is none (or its file is unreadable: logged)."""
  path = round_path(index_dir)
  try:
    with tf.io.gfile.GFile(path, "r") as f:
      fields = dataclasses.fields(Round)
      data = json.load(f)
      return Round(**{k.name: data[k.name] for k in fields if k.name in data})
  except tf.errors.NotFoundError:
    return None
  except (ValueError, TypeError) as e:
    logging.warning("Ignoring the unreadable refresh round file %s: %s", path, e)
    return None


def write_round(index_dir: str, rnd: Round) -> None:
  """Publishes `rnd` as the declared round (atomic rename)."""
  tf.io.gfile.makedirs(work_root(index_dir))
  atomic.write_json(round_path(index_dir), dataclasses.asdict(rnd), unique=True)


def trainer_step(model_dir: str) -> Optional[int]:
  """The trainer's newest known step: the larger of its newest embedder export's step and its
  newest checkpoint's number (the trainer numbers checkpoints by step); None when it has neither."""
  steps = []
  export = embedder_export.latest_export(model_dir)
  if export is not None:
    steps.append(int(os.path.basename(export)))
  try:
    ckpt = tf.train.latest_checkpoint(os.path.join(model_dir, CHECKPOINTS_SUBDIR))
  except (tf.errors.OpError, ValueError):  # a checkpoint state file being rewritten
    ckpt = None
  if ckpt and ckpt.rsplit("-", 1)[-1].isdigit():
    steps.append(int(ckpt.rsplit("-", 1)[-1]))
  return max(steps) if steps else None


def declare(index_dir: str, export_dir: str, step: int, corpus_dirs: Sequence[str],
            model_dir: str, lease: bool) -> Round:
  """Declares (or resumes) the round that embeds `corpus_dirs` with `export_dir`.

  A declared, unfinished round with the same export and directories is resumed (its id kept, its
  lease renewed); otherwise a new round replaces it (its lease released). Either way the parts of
  every other round are removed. `lease=False` for exports outside the watched model directory.
  """
  old = read_round(index_dir)
  if (old is not None and not old.final and old.export == export_dir
      and list(old.corpus_dirs) == list(corpus_dirs)):
    rnd = old
    if rnd.lease:
      embedder_export.lease_export(export_dir, rnd.lease)
    logging.info("Resuming refresh round %s (export step %d, declared %.0f s ago).", rnd.id,
                 rnd.step, time.time() - rnd.declared)
  else:
    if old is not None and old.lease:
      embedder_export.release_lease(old.lease)
    now_step = trainer_step(model_dir)
    rnd = Round(id=uuid.uuid4().hex[:12], export=export_dir, step=int(step),
                corpus_dirs=list(corpus_dirs), declared=time.time(),
                trainer_step=int(step if now_step is None else now_step),
                lease=embedder_export.lease_export(export_dir) if lease else "")
    logging.info("Refresh round %s: export step %d, the trainer at step %d.", rnd.id, rnd.step,
                 rnd.trainer_step)
  write_round(index_dir, rnd)
  remove_parts(index_dir, keep_prefix=rnd.work_prefix())
  return rnd


def renew_lease(rnd: Round) -> None:
  """Renews the export lease `rnd` holds (none: nothing to do), so that `prune_exports` does not
  take it for a lease a crashed refresher left behind however long the round runs."""
  if rnd.lease:
    embedder_export.lease_export(rnd.export, rnd.lease)


def finish(index_dir: str, rnd: Round) -> None:
  """Ends `rnd`: releases its lease and removes every round's parts and the round file."""
  if rnd.lease:
    embedder_export.release_lease(rnd.lease)
  current = read_round(index_dir)
  if current is not None and current.id == rnd.id:
    tf.io.gfile.remove(round_path(index_dir))
  remove_parts(index_dir)


def stop(index_dir: str) -> None:
  """Marks the chief's watch loop as stopped (`Round.final`), keeping an unfinished round's file
  (a restarted chief resumes it)."""
  current = read_round(index_dir)
  if current is None or current.final:
    write_round(index_dir, Round(id=uuid.uuid4().hex[:12], final=True))


def remove_parts(index_dir: str, keep_prefix: Optional[str] = None) -> List[str]:
  """Removes everything under `.work/` but the round file and the entries named `keep_prefix...`
  (the current round's parts); returns what was removed."""
  root = work_root(index_dir)
  if not tf.io.gfile.isdir(root):
    return []
  removed = []
  for name in tf.io.gfile.listdir(root):
    name = name.rstrip("/")
    if name == ROUND_FILE or (keep_prefix and name.startswith(keep_prefix)):
      continue
    path = os.path.join(root, name)
    try:
      if tf.io.gfile.isdir(path):
        tf.io.gfile.rmtree(path)
      else:
        tf.io.gfile.remove(path)
      removed.append(path)
    except tf.errors.NotFoundError:
      pass  # removed meanwhile
  if removed:
    logging.info("Removed refresh parts no round needs: %s.",
                 [os.path.basename(p) for p in removed])
  return removed


def staleness(rnd: Round, model_dir: str) -> Dict:
  """How stale a bundle of `rnd` is as it goes live (for its manifest): `steps` = the trainer's
  step now minus the export's step = `lag_at_start` (the trainer's lead when the round was
  declared) + `steps_during_round`."""
  now_step = trainer_step(model_dir)
  now_step = rnd.step if now_step is None else max(now_step, rnd.step)
  newest = embedder_export.latest_export(model_dir)
  return {
      "export_step": rnd.step,
      "trainer_step": now_step,
      "steps": now_step - rnd.step,
      "lag_at_start": rnd.trainer_step - rnd.step,
      "steps_during_round": now_step - rnd.trainer_step,
      "round_seconds": round(time.time() - rnd.declared, 3),
      "newest_export_step": int(os.path.basename(newest)) if newest else rnd.step,
  }
