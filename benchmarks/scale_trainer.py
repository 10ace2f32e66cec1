"""The scale benchmark's trainer stage: the peak memory of the process a user runs with the
paper's flags (`launch/configs/paper_tpu.flags`), with `--refresh=inline` and `--refresh=async`.

Each run is the real `python -m realm_tf.launch.pretrain --flagfile=launch/configs/paper_tpu.flags`
in a process of its own on a small sample corpus, the paper's flags overridden only where this CPU
host forces it (`CPU_OVERRIDES`, each with why): freshly initialised BERT-base towers and reader,
one ICT and one REALM step of batch 1 with a checkpoint and an index refresh. The kernel's peak
RSS of the process holds every part that does not grow with the corpus; what grows is measured
by the other stages and added by `scale_fit.pretrain_process_peaks`.
"""
import json
import os
import shutil
import sys
from typing import Dict, List

from benchmarks import procs

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FLAGFILE = os.path.join(REPO, "launch", "configs", "paper_tpu.flags")
MODES = ("inline", "async")
# The paper's flags this host cannot run as they are, each with why (recorded in the result).
CPU_OVERRIDES = (
    ("--retriever_init=", "no BERT-base checkpoint is shipped: freshly initialised BERT-base "
     "towers (--retriever_preset=base)"),
    ("--reader_init=", "no BERT-base checkpoint is shipped: a freshly initialised BERT-base "
     "reader with its MLM head (--reader_preset=base)"),
    ("--ict_steps=1", "ICT's 100k steps of batch 4,096: one step, which exports the towers and "
     "publishes the first index, as the paper's run does"),
    ("--ict_batch_size=2", "the smallest batch with an in-batch negative"),
    ("--batch_size=1", "REALM's batch 512 on a TPU: one query (8 candidates) on this CPU"),
    ("--num_train_steps=1", "one REALM step: the Adam state, a checkpoint and a refresh"),
    ("--warmup_steps=0", "one step"),
    ("--checkpoint_every=1", "a checkpoint write at the step"),
    ("--refresh_every_steps=1", "an index refresh at the step"),
    ("--heldout_queries=2", "the held-out evaluation's cost per corpus block is another stage's"),
)


def pretrain_command(work_dir: str, corpus_dir: str, annotations_dir: str,
                     refresh: str) -> List[str]:
  """The command line of the main job with the paper's flag file and `CPU_OVERRIDES`."""
  if refresh not in MODES:
    raise ValueError(f"refresh must be one of {MODES}, got {refresh!r}.")
  return [sys.executable, "-m", "realm_tf.launch.pretrain", f"--flagfile={FLAGFILE}",
          f"--work_dir={work_dir}", f"--corpus_dir={corpus_dir}",
          f"--annotations_dir={annotations_dir}", *(flag for flag, _ in CPU_OVERRIDES),
          f"--refresh={refresh}"]


def paper_refresh_mode(flagfile: str = FLAGFILE) -> str:
  """The --refresh the paper's flag file sets (the main job's default, inline, if none)."""
  mode = "inline"
  with open(flagfile, encoding="utf-8") as f:
    for line in f:
      if line.strip().startswith("--refresh="):
        mode = line.strip().split("=", 1)[1]
  return mode


def annotate(corpus_dir: str, output_dir: str, beam_args: List[str]) -> Dict:
  """Annotates a corpus with the real CLI; the process's figures (`procs.run_checked`)."""
  return procs.run_checked([sys.executable, "-m", "realm_tf.launch.annotate_corpus",
                            f"--corpus_dir={corpus_dir}", f"--output_dir={output_dir}",
                            *beam_args], "annotate_corpus")


def checkpoint_bytes(model_dir: str) -> Dict:
  """The newest checkpoint under `model_dir`/checkpoints: its name and bytes (variables and Adam
  slots); {} when there is none."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  prefix = tf.train.latest_checkpoint(os.path.join(model_dir, "checkpoints"))
  if not prefix:
    return {}
  return {"name": os.path.basename(prefix),
          "bytes": sum(os.path.getsize(p) for p in tf.io.gfile.glob(prefix + ".*"))}


def measure_mode(work_dir: str, corpus_dir: str, annotations_dir: str, refresh: str) -> Dict:
  """Runs the main job with the paper's flags and `--refresh=refresh` in a fresh work dir: its
  wall seconds, the kernel's peak RSS of the process, and the checkpoint it wrote. A failure is
  kept, not raised: a process killed for memory still has its peak (a lower bound)."""
  shutil.rmtree(work_dir, ignore_errors=True)
  cmd = pretrain_command(work_dir, corpus_dir, annotations_dir, refresh)
  p = procs.run_process(cmd)
  if p["rc"] != 0:
    shutil.rmtree(work_dir, ignore_errors=True)
    return {"refresh": refresh, "failed": f"exit {p['rc']}" + (
        " (killed: SIGKILL, e.g. the kernel's out-of-memory killer)" if p["rc"] == -9 else ""),
            "rc": p["rc"], "peak_rss": p["peak_rss"], "seconds": p["seconds"],
            "stderr_tail": p["stderr_tail"][-2000:], "command": " ".join(cmd[1:])}
  with open(os.path.join(work_dir, "summary.json"), encoding="utf-8") as f:
    summary = json.load(f)
  model_dir = summary["dirs"]["realm"]
  out = {"refresh": refresh, "peak_rss": p["peak_rss"], "seconds": p["seconds"],
         "checkpoint": checkpoint_bytes(model_dir),
         "command": " ".join(cmd[1:])}
  shutil.rmtree(work_dir, ignore_errors=True)
  return out


def measure(corpus_dir: str, annotations_dir: str, work: str, beam_args: List[str]) -> Dict:
  """The trainer stage: the sample corpus's annotations, then the main job at the paper's flags
  in each refresh mode; {"modes": {mode: figures}, "num_blocks", the overrides and why}."""
  from realm_tf.data import corpus as corpus_lib  # pylint: disable=g-import-not-at-top
  with open(os.path.join(corpus_dir, "manifest.json"), encoding="utf-8") as f:
    blocks = json.load(f)["num_blocks"]
  if not os.path.exists(os.path.join(annotations_dir, corpus_lib.ANNOTATION_MANIFEST)):
    annotate(corpus_dir, annotations_dir, beam_args)
  # One after the other: each process holds over 12 GB at the paper's shapes, so two side by
  # side overran this 23 GB host (the kernel killed one).
  modes = {mode: measure_mode(os.path.join(work, mode), corpus_dir, annotations_dir, mode)
           for mode in MODES}
  failed = {mode: m["failed"] for mode, m in modes.items() if "failed" in m}
  if len(failed) == len(modes):
    raise RuntimeError(f"pretrain failed in every refresh mode: {failed}")
  return {"num_blocks": blocks, "modes": modes, "flagfile": os.path.relpath(FLAGFILE, REPO),
          "paper_refresh": paper_refresh_mode(),
          "overrides": {flag: why for flag, why in CPU_OVERRIDES}}
