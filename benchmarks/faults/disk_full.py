"""Fault group `disk_full`: the work dir on a small tmpfs filled to leave less than a write needs.

Faults (one row each): an embedder export, one refresh round (a bundle publish) and a trainer
checkpoint, each written with a seeded random share of the space it needs left free
(`FaultConfig.rng`). Checked after each try: the write fails with one error line (exit 2 in a
CLI) saying the disk is full and naming what was being written; the previous version is whole
and loads; nothing half-written is left; once space is freed, the same write succeeds.

Mounting needs root; where it is not allowed, every row says so (survived=False, reason).
"""
import os
import shutil
from typing import Callable, List

from benchmarks.faults import FaultConfig, FaultRow, Tries
from benchmarks.faults import toy_work_dir
from benchmarks.faults.outputs import temporaries
from benchmarks.faults.toy_work_dir import bundle_loads, copy_export, refuses

GROUP = "disk_full"
DISK_BYTES = 160 << 20  # the tmpfs: room for two toy exports or bundles (35 MB each)


def _size(path: str) -> int:
  if os.path.isfile(path):
    return os.path.getsize(path)
  return sum(os.path.getsize(os.path.join(p, f)) for p, _, fs in os.walk(path) for f in fs)


def _try_full(disk: str, needed: int, rng, write: Callable[[], object], what: str,
              intact: Callable[[], object], cleanup_dir: str, tries: Tries) -> None:
  """One try: fill `disk` leaving a seeded share of `needed` bytes, write (must fail: disk
  full, naming `what`), check the old version and leftovers, free the space, write again."""
  from realm_tf.testing import small_disk  # pylint: disable=g-import-not-at-top
  share = rng.uniform(0.0, 0.9)
  left = small_disk.fill(disk, int(needed * share))
  try:
    failed = refuses(write, what, "Disk full")
    old_ok = intact()
    leftovers = temporaries(cleanup_dir)
  finally:
    small_disk.free(disk)
  try:
    write()
    again = True
  except Exception as e:  # pylint: disable=broad-except
    again = f"{type(e).__name__}: {e}"
  tries.check(f"{left} bytes free of {needed} needed (share {share:.2f})", {
      "one error line: disk full, naming the target": failed,
      "previous version whole and loads": old_ok,
      "no temporary left": True if not leftovers else f"left: {leftovers}",
      "succeeds once space is freed": again,
  })


def export_row(work, disk: str, config: FaultConfig) -> FaultRow:
  """An embedder export (the trainer's periodic export) onto a full disk."""
  from realm_tf.retrieval import embedder_export  # pylint: disable=g-import-not-at-top
  name = "disk full during an embedder export"
  rng, tries = config.rng(name), Tries(GROUP, name)
  model_dir = os.path.join(disk, "model")
  first = embedder_export.export_embedder(work.retriever, model_dir, 1)
  needed = _size(first)

  def intact():
    try:
      latest = embedder_export.latest_export(model_dir)
      if latest != first:
        return f"newest export is {latest}"
      embedder_export.load_embedder(first)
      return True
    except Exception as e:  # pylint: disable=broad-except
      return f"{type(e).__name__}: {e}"

  for i in range(config.kill_points):
    step = 2 + i
    target = embedder_export.export_path(model_dir, step)
    _try_full(disk, needed, rng,
              lambda: embedder_export.export_embedder(work.retriever, model_dir, step),
              target, intact, model_dir, tries)
    shutil.rmtree(target, ignore_errors=True)  # room for the next try
  shutil.rmtree(model_dir)
  return tries.row("seeded share in [0, 0.9) of the export's bytes left free", [
      "export_embedder raises DiskFullError naming the export directory (one error line, "
      "exit 2)", "the previous export is the newest and loads", "no temporary directory left",
      "the same export succeeds once the filler is removed"], export_bytes=needed)


def refresh_row(work, disk: str, config: FaultConfig) -> FaultRow:
  """One refresh round publishing its bundle onto a full disk."""
  from realm_tf.retrieval import bundle  # pylint: disable=g-import-not-at-top
  from realm_tf.retrieval.refresh import IndexRefresher  # pylint: disable=g-import-not-at-top
  name = "disk full during a refresh round"
  rng, tries = config.rng(name), Tries(GROUP, name)
  index_dir = os.path.join(disk, "index")
  shutil.copytree(work.index_dir, index_dir)
  needed = _size(bundle.version_path(index_dir, 1))
  cfg = work.refresh_config(index_dir=index_dir)
  for i in range(config.kill_points):
    step = 10 + i
    export = copy_export(work, step)
    live = bundle.latest_version(index_dir)
    _try_full(disk, needed, rng, lambda: IndexRefresher(cfg).run_once(), index_dir,
              lambda live=live: bundle_loads(index_dir, live), index_dir, tries)
    shutil.rmtree(export)
    for version in bundle.list_versions(index_dir)[:-1]:  # keep the tmpfs from filling up
      shutil.rmtree(bundle.version_path(index_dir, version))
  shutil.rmtree(index_dir)
  return tries.row("seeded share in [0, 0.9) of a bundle's bytes left free", [
      "refresh_index --once raises DiskFullError naming the index directory (one error line, "
      "exit 2)", "the live bundle stays the newest and loads", "no temporary left",
      "the same refresh publishes its bundle once the filler is removed"], bundle_bytes=needed)


def checkpoint_row(work, disk: str, config: FaultConfig) -> FaultRow:
  """A trainer checkpoint onto a full disk."""
  del work
  name = "disk full during a checkpoint save"
  rng, tries = config.rng(name), Tries(GROUP, name)
  model_dir = os.path.join(disk, "trainer")
  trainer = toy_work_dir.make_trainer(model_dir)
  first = toy_work_dir.save_checkpoint(trainer, 2)
  needed = sum(_size(p) for p in [first + ".index"] + [
      os.path.join(os.path.dirname(first), f) for f in os.listdir(os.path.dirname(first))
      if f.startswith(os.path.basename(first) + ".data")])
  checkpoints = os.path.join(model_dir, "checkpoints")
  for i in range(config.kill_points):
    step = 3 + i
    previous = trainer.manager.latest_checkpoint
    previous_step = int(previous.rsplit("-", 1)[1])

    def intact():
      restored = toy_work_dir.make_trainer(model_dir).restore()
      return True if restored == previous_step else f"restored step {restored}"

    def save():
      trainer.step.assign(step)
      trainer.save(step)

    _try_full(disk, needed, rng, save, checkpoints, intact, model_dir, tries)
  shutil.rmtree(model_dir)
  return tries.row("seeded share in [0, 0.9) of a checkpoint's bytes left free", [
      "Trainer.save raises DiskFullError naming the checkpoint directory (one error line, "
      "exit 2)", "the previous checkpoint restores at its step", "no temporary left",
      "the same save succeeds once the filler is removed"], checkpoint_bytes=needed)


ROWS = (export_row, refresh_row, checkpoint_row)


def run(config: FaultConfig) -> List[FaultRow]:
  """Builds the toy work dir, mounts a small tmpfs, and runs each row on it (unmounted after)."""
  from realm_tf.testing import small_disk  # pylint: disable=g-import-not-at-top
  reason = small_disk.mount_error(config.work_dir)
  if reason:
    return [FaultRow(group=GROUP, fault=f.__doc__.splitlines()[0], injected_at="not run",
                     tries=0, checked=[], survived=False, reason=reason) for f in ROWS]
  work = toy_work_dir.build(os.path.join(config.work_dir, "work"), serving=False,
                            checkpoint=False)
  with small_disk.small_tmpfs(os.path.join(config.work_dir, "disk"), DISK_BYTES) as disk:
    return [row(work, disk, config) for row in ROWS]
