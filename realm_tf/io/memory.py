"""Returning freed heap memory to the operating system.

glibc's allocator keeps memory freed by large, short-lived buffers (a restored checkpoint's
tensors, a replaced search index, warm-up requests' intermediates) in its arenas, where it still
counts as the process's resident memory. A long-running process that has just dropped such
buffers (the model server after loading or unloading a version, the trainer after switching index
bundles) calls `return_free_memory` so that its resident size reflects what it holds.
"""
import ctypes
import ctypes.util

_LIBC = None


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
