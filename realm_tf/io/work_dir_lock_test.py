"""The work-dir lock: a live holder refuses a second writer by name, a dead one blocks nothing,
and `pretrain` / `finetune` refuse a held folder with one line, writing nothing."""
import json
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


def test_object_store_folders_are_not_locked(tmp_path):
  lock = work_dir_lock.WorkDirLock("gs://bucket/run").acquire()
  assert not lock.held


@pytest.mark.parametrize("tf_config,chief", [
    (None, True),
    ({"cluster": {"worker": ["a:1", "b:2"]}, "task": {"type": "worker", "index": 0}}, True),
    ({"cluster": {"worker": ["a:1", "b:2"]}, "task": {"type": "worker", "index": 1}}, False),
    ({"cluster": {"chief": ["c:0"], "worker": ["a:1"]}, "task": {"type": "worker", "index": 0}},
     False),
    ({"cluster": {"chief": ["c:0"], "worker": ["a:1"]}, "task": {"type": "chief", "index": 0}},
     True),
])
def test_only_the_chief_takes_the_lock(tmp_path, tf_config, chief):
  env = {} if tf_config is None else {"TF_CONFIG": json.dumps(tf_config)}
  assert work_dir_lock.is_chief_process(env) is chief


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
