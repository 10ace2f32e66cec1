"""Tests of returning freed heap memory to the operating system."""
import numpy as np

from realm_tf.io import memory


def test_freed_heap_buffers_leave_the_resident_set_only_when_returned():
  # 64 KB buffers come from the heap (below glibc's mmap threshold); freeing every other one
  # leaves ~128 MB of free pages between live ones, which the allocator keeps until trimmed.
  buffers = [np.ones(64_000, np.uint8).tobytes() for _ in range(4_000)]
  kept = buffers[1::2]
  held = memory.rss_bytes()
  del buffers
  assert memory.rss_bytes() > held - 20e6  # freed, yet still resident
  assert memory.return_free_memory()
  assert memory.rss_bytes() < held - 100e6
  assert len(kept) == 2_000
