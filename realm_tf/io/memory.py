"""A process's memory, read one way everywhere, and returning freed heap memory to the system.

`process_memory(pid)` reads the kernel's figures from /proc/<pid>/status, in bytes: VmRSS (the
resident set), VmHWM (its peak), RssAnon (what the process allocated), RssFile (mapped files'
pages), RssShmem. Every test and benchmark that counts memory counts it through here.

glibc's allocator keeps memory freed by large, short-lived buffers (a restored checkpoint's
tensors, a replaced search index, warm-up requests' intermediates) in its arenas, where it still
counts as the process's resident memory. A long-running process that has just dropped such
buffers (the model server after loading or unloading a version, the trainer after switching index
bundles) calls `return_free_memory` so that its resident size reflects what it holds.
`release_pages` drops a memory-mapped array's resident pages once its data lives elsewhere.
"""
import ctypes
import ctypes.util
import mmap
from typing import Dict, Union

import numpy as np

_LIBC = None
MEMORY_KEYS = ("VmRSS", "VmHWM", "RssAnon", "RssFile", "RssShmem")


def process_memory(pid: Union[int, str] = "self") -> Dict[str, int]:
  """{VmRSS, VmHWM, RssAnon, RssFile, RssShmem} of process `pid` (default this one), in bytes."""
  out = {}
  with open(f"/proc/{pid}/status", encoding="ascii") as f:
    for line in f:
      key, _, value = line.partition(":")
      if key in MEMORY_KEYS:
        out[key] = int(value.split()[0]) * 1024
  return out


def rss_bytes(pid: Union[int, str] = "self") -> int:
  """The resident set size (VmRSS) of process `pid`, in bytes."""
  return process_memory(pid)["VmRSS"]


def return_free_memory() -> bool:
  """Asks the C allocator to hand its free pages back (glibc's `malloc_trim(0)`); True when it
  released some. A no-op returning False where the C library has no such call."""
  global _LIBC
  if _LIBC is None:
    try:
      _LIBC = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
      _LIBC.malloc_trim  # pylint: disable=pointless-statement
    except (OSError, AttributeError):
      _LIBC = False
  if not _LIBC:
    return False
  return bool(_LIBC.malloc_trim(0))


def release_pages(array: np.ndarray) -> None:
  """Drops the resident pages of a memory-mapped array (clean file pages: the data stays on disk
  and is read again if touched), e.g. after copying it into a variable; a no-op for other
  arrays."""
  obj = array
  while obj is not None and not isinstance(obj, np.memmap):
    obj = getattr(obj, "base", None)
  mapped = getattr(obj, "_mmap", None)
  if mapped is not None:
    mapped.madvise(mmap.MADV_DONTNEED)
