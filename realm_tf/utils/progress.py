"""Progress lines (step, examples/s, loss, ETA) and TensorBoard scalars for long jobs."""
import time
from typing import Dict, Optional, Sequence

import tensorflow as tf
from absl import logging


class ProgressReporter:
  """Logs a progress line every `log_every` steps and writes TensorBoard scalars.

  `line_keys` picks the scalars the line shows (all of them when None); every scalar goes to
  TensorBoard either way, so a task with many diagnostics keeps its line short.
  """

  def __init__(self, total_steps: int, batch_size: int, log_every: int = 10,
               summary_dir: Optional[str] = None, name: str = "train",
               line_keys: Optional[Sequence[str]] = None):
    self.total_steps = total_steps
    self.line_keys = tuple(line_keys) if line_keys is not None else None
    self.batch_size = batch_size
    self.log_every = max(1, log_every)
    self.name = name
    self.writer = tf.summary.create_file_writer(summary_dir) if summary_dir else None
    self._t0 = None
    self._step0 = None
    self.last_line = ""

  def start(self, step: int):
    self._t0, self._step0 = time.time(), step

  def update(self, step: int, scalars: Dict[str, float], force: bool = False):
    """Records `scalars` at `step`; logs a line every `log_every` steps (or when forced)."""
    if self.writer is not None:
      with self.writer.as_default(step=step):
        for k, v in scalars.items():
          tf.summary.scalar(f"{self.name}/{k}", v)
    if not force and step % self.log_every and step != self.total_steps:
      return
    elapsed = max(time.time() - self._t0, 1e-9)
    done = step - self._step0
    rate = done * self.batch_size / elapsed
    eta = (self.total_steps - step) * elapsed / max(done, 1)
    fields = " ".join(f"{k}={v:.4g}" for k, v in scalars.items()
                      if self.line_keys is None or k in self.line_keys)
    self.last_line = (f"[{self.name}] step {step}/{self.total_steps} "
                      f"{rate:.1f} examples/s {fields} ETA {eta:.0f}s")
    logging.info(self.last_line)
    if self.writer is not None:
      with self.writer.as_default(step=step):
        tf.summary.scalar(f"{self.name}/examples_per_second", rate)
      self.writer.flush()


class ItemProgress:
  """Progress of a job counted in items (blocks, passages): a line with done/total, items/s and
  ETA at most every `every_seconds` (per instance, so two jobs never silence each other) and
  once at the end."""

  def __init__(self, total: Optional[int], name: str, unit: str = "items",
               every_seconds: float = 10.0):
    # total None: not known in advance (e.g. documents still to be read); no ETA then.
    self.total, self.name, self.unit = (None if total is None else int(total)), name, unit
    self.every_seconds = every_seconds
    self.done = 0
    self._t0 = time.time()
    self._logged_at = float("-inf")
    self.last_line = ""

  def line(self) -> str:
    """The current progress line."""
    elapsed = max(time.time() - self._t0, 1e-9)
    rate = self.done / elapsed
    if self.total is None:
      return f"[{self.name}] {self.done} {self.unit} {rate:.1f} {self.unit}/s"
    eta = (self.total - self.done) / rate if rate > 0 else float("inf")
    return (f"[{self.name}] {self.done}/{self.total} {self.unit} {rate:.1f} {self.unit}/s "
            f"ETA {eta:.0f}s")

  def finish(self) -> None:
    """Logs the closing line (where the total was unknown, or the job stopped short of it)."""
    self.last_line = self.line()
    logging.info(self.last_line)

  def add(self, n: int) -> None:
    """Counts `n` more items; logs when `every_seconds` have passed, or when all are done."""
    self.done += int(n)
    self.last_line = self.line()
    now = time.time()
    finished = self.total is not None and self.done >= self.total
    if finished or now - self._logged_at >= self.every_seconds:
      self._logged_at = now
      logging.info(self.last_line)
