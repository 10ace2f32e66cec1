"""A process that holds a work dir's lock (`realm_tf.io.work_dir_lock`) until it is killed: the
live first writer of the lock tests and of the fault matrix's locking group (absl only, so it
starts in about a second)."""
import subprocess
import sys

from realm_tf.testing import cli as cli_testing

COMMAND = "holder-under-test"  # what the lock file records as the holder's command
_CODE = ("import sys, time\n"
         "from realm_tf.io import work_dir_lock\n"
         f"lock = work_dir_lock.WorkDirLock(sys.argv[1], command={COMMAND!r}).acquire()\n"
         "print('held', flush=True)\n"
         "time.sleep(3600)\n")


def start_holder(directory: str) -> subprocess.Popen:
  """Starts a process that holds `directory`'s lock; returns once it holds it."""
  proc = subprocess.Popen([sys.executable, "-c", _CODE, directory], cwd=cli_testing.ROOT,
                          stdout=subprocess.PIPE, text=True)
  line = proc.stdout.readline().strip()
  if line != "held":
    proc.kill()
    proc.wait()
    raise RuntimeError(f"the lock holder on {directory} did not start (it printed {line!r})")
  return proc
