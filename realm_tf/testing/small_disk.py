"""A small real disk for out-of-space tests: a tmpfs mounted on a test directory, filled to leave
a chosen number of bytes free.

Mounting needs root (or CAP_SYS_ADMIN); `mount_error()` says why it is not allowed here, so a test
can skip with that reason. Everything mounted is unmounted when the `with` block ends.
"""
import contextlib
import os
import subprocess
from typing import Iterator, Optional

FILLER = "filler.bin"


def mount_error(probe_dir: str) -> Optional[str]:
  """None when a tmpfs can be mounted under `probe_dir`, else the reason it cannot."""
  probe = os.path.join(probe_dir, ".tmpfs-probe")
  os.makedirs(probe, exist_ok=True)
  try:
    with small_tmpfs(probe, 1 << 20):
      return None
  except (OSError, subprocess.CalledProcessError) as e:
    return f"cannot mount a tmpfs here ({' '.join(str(e).split())})"
  finally:
    os.rmdir(probe)


def skip_unless_mountable(probe_dir: str) -> None:
  """Skips the calling test (pytest.skip, with the reason) where a tmpfs cannot be mounted."""
  reason = mount_error(probe_dir)
  if reason:
    import pytest  # pylint: disable=g-import-not-at-top
    pytest.skip(reason)


@contextlib.contextmanager
def small_tmpfs(directory: str, size_bytes: int) -> Iterator[str]:
  """Mounts a tmpfs of `size_bytes` on `directory` (created if needed) and unmounts it after."""
  os.makedirs(directory, exist_ok=True)
  proc = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={int(size_bytes)}", "tmpfs",
                         directory], capture_output=True, text=True, check=False)
  if proc.returncode:
    raise OSError(f"mount -t tmpfs on {directory} failed: {proc.stderr.strip()}")
  try:
    yield directory
  finally:
    subprocess.run(["umount", directory], capture_output=True, check=True)


def free_bytes(directory: str) -> int:
  """Bytes an unprivileged writer can still write under `directory`."""
  st = os.statvfs(directory)
  return st.f_bavail * st.f_frsize


def fill(directory: str, leave_bytes: int) -> int:
  """Writes `<directory>/filler.bin` so that about `leave_bytes` stay free; returns them."""
  path = os.path.join(directory, FILLER)
  size = max(0, free_bytes(directory) - int(leave_bytes))
  with open(path, "ab") as f:
    chunk = b"\0" * (1 << 20)
    while size > 0:
      n = min(size, len(chunk))
      f.write(chunk[:n])
      size -= n
  return free_bytes(directory)


def free(directory: str) -> None:
  """Removes the filler `fill` wrote."""
  path = os.path.join(directory, FILLER)
  if os.path.exists(path):
    os.remove(path)
