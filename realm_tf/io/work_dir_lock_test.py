"""The work-dir lock: a live holder refuses a second writer by name, a dead one blocks nothing,
and `pretrain` / `finetune` refuse a held folder with one line, writing nothing."""
import os
import signal
import subprocess
import sys

import pytest

from realm_tf.io import work_dir_lock
from realm_tf.testing import cli as cli_testing
from realm_tf.testing import lock_holder

start_holder = lock_holder.start_holder


@pytest.fixture
def holder(tmp_path):
  proc = start_holder(str(tmp_path / "work"))
  yield proc
  if proc.poll() is None:
    proc.kill()
  proc.wait()


def test_live_holder_refuses_a_second_writer_by_name(tmp_path, holder):
  with pytest.raises(work_dir_lock.WorkDirBusyError) as e:
    work_dir_lock.WorkDirLock(str(tmp_path / "work")).acquire()
  message = str(e.value)
  assert message.startswith(f"{tmp_path / 'work'} is in use by pid {holder.pid} ")
  assert "(holder-under-test, since 20" in message
  # The refusal rewrote nothing: the file still names the holder.
  assert work_dir_lock.read_holder(str(tmp_path / "work"))["pid"] == holder.pid


def test_lock_of_a_killed_process_does_not_block(tmp_path, holder):
  holder.send_signal(signal.SIGKILL)
  holder.wait()
  directory = str(tmp_path / "work")
  assert work_dir_lock.read_holder(directory)["pid"] == holder.pid  # the file stays behind
  with work_dir_lock.hold(directory, command="next") as lock:
    assert lock.held
    info = work_dir_lock.read_holder(directory)
    assert (info["pid"], info["command"]) == (os.getpid(), "next")
  assert not lock.held


def test_same_process_second_open_is_refused_and_release_frees(tmp_path):
  directory = str(tmp_path / "w")
  first = work_dir_lock.WorkDirLock(directory).acquire()
  with pytest.raises(work_dir_lock.WorkDirBusyError, match=f"pid {os.getpid()} "):
    work_dir_lock.WorkDirLock(directory).acquire()
  first.release()
  work_dir_lock.WorkDirLock(directory).acquire().release()
  assert os.listdir(directory) == [work_dir_lock.LOCK_FILE]


def test_writer_lock_is_reentrant_within_a_process(tmp_path):
  directory = str(tmp_path / "w")
  with work_dir_lock.writer_lock(directory) as outer:
    # The same folder spelt another way, as a stage run inside a job names it.
    with work_dir_lock.writer_lock(os.path.join(directory, "..", "w")) as inner:
      assert inner is outer and outer.held
    assert outer.held  # the inner block's end does not drop the outer holder's lock
    with pytest.raises(work_dir_lock.WorkDirBusyError):
      work_dir_lock.WorkDirLock(directory).acquire()
  assert not outer.held
  work_dir_lock.WorkDirLock(directory).acquire().release()


def _refuse(directory, write=None):
  """Runs a block under `hold(directory)` that (optionally writes `write` there, then) raises, as
  a run refused for bad input after taking the lock does."""
  with pytest.raises(ValueError, match="bad question line"):
    with work_dir_lock.hold(directory) as lock:
      assert lock.held and os.path.exists(os.path.join(directory, work_dir_lock.LOCK_FILE))
      if write:
        with open(os.path.join(directory, write), "w", encoding="utf-8") as f:
          f.write("partial")
      raise ValueError("bad question line")
  assert not lock.held


def test_a_refused_run_leaves_the_folder_as_it_was(tmp_path):
  # Absent, three levels deep: every folder the lock created goes, with the lock file.
  _refuse(str(tmp_path / "runs" / "mine" / "finetune"))
  assert os.listdir(tmp_path) == []
  # There, with files and no lock file: exactly as it was.
  existing = tmp_path / "existing"
  (existing / "sub").mkdir(parents=True)
  (existing / "notes.txt").write_text("mine", encoding="utf-8")
  before = sorted(os.walk(existing))
  _refuse(str(existing))
  assert sorted(os.walk(existing)) == before
  assert (existing / "notes.txt").read_text(encoding="utf-8") == "mine"
  # A lock file that was there before stays.
  with work_dir_lock.hold(str(existing)):
    pass
  _refuse(str(existing))
  assert sorted(os.listdir(existing)) == [work_dir_lock.LOCK_FILE, "notes.txt", "sub"]
  # A run that wrote something before failing keeps its output and its lock file.
  written = tmp_path / "written"
  _refuse(str(written), write="checkpoint")
  assert sorted(os.listdir(written)) == [work_dir_lock.LOCK_FILE, "checkpoint"]
  # After a refusal the path locks again as before.
  again = str(tmp_path / "again")
  _refuse(again)
  with work_dir_lock.hold(again) as lock:
    assert lock.held and work_dir_lock.read_holder(again)["pid"] == os.getpid()
  assert os.listdir(again) == [work_dir_lock.LOCK_FILE]


def test_a_lock_file_removed_by_a_refusal_is_told_from_the_one_at_the_path(tmp_path):
  """A process that opened the lock file just before a refused holder removed it would get the
  `flock` of a file no one else opens; `acquire` checks that the path still names it."""
  import fcntl  # pylint: disable=g-import-not-at-top
  directory = str(tmp_path / "w")
  path = os.path.join(directory, work_dir_lock.LOCK_FILE)
  first = work_dir_lock.WorkDirLock(directory).acquire()
  with open(path, "a+", encoding="utf-8") as opened:  # the other process's open
    assert work_dir_lock._same_file(opened, path)  # pylint: disable=protected-access
    assert first.discard_if_unused() and not os.path.exists(directory)
    fcntl.flock(opened.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)  # granted: the file is orphaned
    assert not work_dir_lock._same_file(opened, path)  # pylint: disable=protected-access
    with work_dir_lock.hold(directory) as lock:  # the path's own lock is free and taken
      assert lock.held and work_dir_lock.read_holder(directory)["pid"] == os.getpid()


def test_object_store_folders_are_not_locked(tmp_path):
  lock = work_dir_lock.WorkDirLock("gs://bucket/run").acquire()
  assert not lock.held


def test_pretrain_and_finetune_refuse_a_held_work_dir_writing_nothing(tmp_path):
  work = str(tmp_path / "work")
  finetune_dir = os.path.join(work, "finetune")
  holders = [start_holder(work), start_holder(finetune_dir)]
  try:
    before = sorted(os.walk(work))
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="")
    procs = [subprocess.Popen([sys.executable, "-m", f"realm_tf.launch.{name}",
                               f"--work_dir={work}", *extra], cwd=cli_testing.ROOT, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             # Inputs that do not exist: an unlocked run would stop on them, with another line.
             for name, extra in (("pretrain", (f"--inputs={tmp_path / 'missing.jsonl'}",)),
                                 ("finetune", ("--dataset=squad_open",)))]
    for proc, held_dir, holder_proc in zip(procs, (work, finetune_dir), holders):
      out, err = proc.communicate(timeout=300)
      done = subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
      cli_testing.assert_one_line_error(
          done, f"error: {held_dir} is in use by pid {holder_proc.pid} (holder-under-test, since")
    assert sorted(os.walk(work)) == before  # nothing written by either refused program
  finally:
    for h in holders:
      h.kill()
      h.wait()


@pytest.mark.slow  # two more program starts; the default run checks pretrain and finetune above
def test_ict_and_export_refuse_a_held_dir_writing_nothing(tmp_path):
  work = str(tmp_path / "work")
  serving = str(tmp_path / "serving")
  holders = [start_holder(work), start_holder(serving)]
  try:
    before = sorted(os.walk(tmp_path))
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="")
    runs = (("ict", (f"--work_dir={work}",), work),
            ("export", (f"--model_dir={tmp_path / 'missing'}", f"--export_base={serving}"),
             serving))
    for name, args, held_dir in runs:
      # Inputs that do not exist: an unlocked run would stop on them, with another line.
      done = subprocess.run([sys.executable, "-m", f"realm_tf.launch.{name}", *args],
                            cwd=cli_testing.ROOT, env=env, capture_output=True, text=True,
                            timeout=300, check=False)
      holder = holders[0] if held_dir == work else holders[1]
      cli_testing.assert_one_line_error(
          done, f"error: {held_dir} is in use by pid {holder.pid} (holder-under-test, since")
    assert sorted(os.walk(tmp_path)) == before
  finally:
    for h in holders:
      h.kill()
      h.wait()
