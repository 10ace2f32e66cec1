"""Atomic publication of an output directory: write to `<out>.tmp-<pid>`, then `os.rename`.

Readers never see a half-written directory, and a failure leaves nothing behind.
"""
import contextlib
import os
import shutil

from absl import logging


@contextlib.contextmanager
def publish_directory(output_dir: str, overwrite: bool = False):
  """Yields a fresh temporary directory that becomes `output_dir` when the block succeeds.

  Args:
    output_dir: the final path (local filesystem; `os.rename` is atomic there).
    overwrite: replace an existing `output_dir`. Otherwise an existing one is an error, raised
      before any work is done.

  On an exception the temporary directory is removed and `output_dir` is untouched.
  """
  output_dir = os.path.abspath(output_dir)
  if os.path.exists(output_dir) and not overwrite:
    raise FileExistsError(f"Output directory already exists: {output_dir} (pass overwrite)")
  parent = os.path.dirname(output_dir)
  os.makedirs(parent, exist_ok=True)
  tmp = f"{output_dir}.tmp-{os.getpid()}"
  if os.path.exists(tmp):
    shutil.rmtree(tmp)
  os.makedirs(tmp)
  try:
    yield tmp
  except BaseException:
    shutil.rmtree(tmp, ignore_errors=True)
    raise
  old = None
  if os.path.exists(output_dir):
    old = f"{output_dir}.old-{os.getpid()}"
    os.rename(output_dir, old)
  try:
    os.rename(tmp, output_dir)
  except BaseException:
    if old is not None:
      os.rename(old, output_dir)
    shutil.rmtree(tmp, ignore_errors=True)
    raise
  if old is not None:
    shutil.rmtree(old, ignore_errors=True)
  logging.info("Published %s", output_dir)
