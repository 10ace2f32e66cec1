"""Atomic publication of a converted checkpoint's output directory.

A thin wrapper over `realm_tf.io.publish.publish_dir`: the directory is written under a hidden
temporary name beside `output_dir` and renamed into place, so readers never see a half-written
directory, and a failure leaves nothing behind.
"""
import contextlib
from typing import Iterator

from absl import logging

from realm_tf.io import paths
from realm_tf.io import publish as publish_lib


@contextlib.contextmanager
def publish_directory(output_dir: str, overwrite: bool = False) -> Iterator[str]:
  """Yields a fresh temporary directory that becomes `output_dir` when the block succeeds.

  Args:
    output_dir: the final path (a relative local path is made absolute first).
    overwrite: replace an existing `output_dir` (the old one is deleted only once the new one is in
      place). Otherwise an existing one is an error, raised before any work is done.

  On an exception the temporary directory is removed and `output_dir` is untouched.

  Raises:
    FileExistsError: `output_dir` exists and `overwrite` is False.
  """
  output_dir = paths.absolute(output_dir)
  try:
    with publish_lib.publish_dir(output_dir, replace=overwrite) as tmp:
      yield tmp
  except publish_lib.TargetExistsError as e:
    raise publish_lib.TargetExistsError(
        f"Output directory already exists: {output_dir} (pass overwrite)") from e
  logging.info("Published %s", output_dir)
