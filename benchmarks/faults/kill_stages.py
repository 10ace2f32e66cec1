"""The kill group's stage table: each long stage's command line at toy size, the outputs it
writes, and its progress (what of its output is on disk), by which kills are placed.

The stages feed each other: the corpus the reference build wrote is annotated, trained on by ICT,
the main job (`pretrain`: ICT and the reader warm-up, then REALM with inline refresh, or a trainer
with a separate `refresh_index` worker), fine-tuned on, and the fine-tuned model exported.
"""
import glob
import json
import os
import shutil
from typing import Callable, Dict, List, Optional, Tuple

from benchmarks.faults.outputs import checkpoint_step
from benchmarks.procs import Progress

STEPS = 6  # training steps of every toy trainer (checkpoint every step: kills land between)
REFERENCE_DONE = ".reference.json"  # in a reference run's dir: its wall time and timeline

# Four documents of three sentences (the fine-tuning questions' facts), for the corpus build.
_FACT_GROUPS = ((0, 1, 2), (3, 4, 5), (6, 7, 8), (9, 10, 11))

# Which later stages read a stage's reference run.
NEEDS = {
    "build_corpus": ("annotate_corpus", "ict", "reader_warmup", "realm_inline_refresh",
                     "finetune", "export"),
    "annotate_corpus": ("reader_warmup", "realm_inline_refresh", "finetune", "export"),
    "reader_warmup": ("realm_inline_refresh", "refresh_index_worker", "finetune", "export"),
    "realm_inline_refresh": ("finetune", "export"),
    "finetune": ("export",),
}


def write_inputs(work_dir: str) -> Tuple[str, str]:
  """The documents (JSONL) and questions (JSONL, with the document holding each answer)."""
  from realm_tf.testing.openqa_models import FACTS  # pylint: disable=g-import-not-at-top
  docs, questions = os.path.join(work_dir, "docs.jsonl"), os.path.join(work_dir, "qs.jsonl")
  with open(docs, "w", encoding="utf-8") as f:
    for d, group in enumerate(_FACT_GROUPS):
      f.write(json.dumps({"id": f"doc{d}", "title": FACTS[group[0]][0],
                          "text": " ".join(FACTS[i][1] for i in group)}) + "\n")
  with open(questions, "w", encoding="utf-8") as f:
    for d, group in enumerate(_FACT_GROUPS):
      for i in group:
        f.write(json.dumps({"question": FACTS[i][2], "answers": [FACTS[i][3]],
                            "doc_id": f"doc{d}"}) + "\n")
  return docs, questions


# --- a stage's progress: a few series, each a level that only grows while the stage runs ---------


def trainer_progress(*subs: str) -> Progress:
  """Each trainer model dir's newest checkpoint step."""
  return lambda d: {sub: checkpoint_step(os.path.join(d, sub)) for sub in subs}


def beam_progress(output: str) -> Progress:
  """A Beam stage's output `output`: 1 once a file of its shards is on disk (in its
  `<output>.tmp-*` sibling, or moved into `output`), 2 once its manifest is published."""
  def level(d: str) -> Dict[str, int]:
    out = os.path.join(d, output)
    if os.path.exists(os.path.join(out, "manifest.json")):
      return {output: 2}
    written = any(os.path.isdir(p) and any(files for _, _, files in os.walk(p))
                  for p in glob.glob(out + ".tmp-*") + [out])
    return {output: int(written)}
  return level


def bundle_progress(d: str) -> Dict[str, int]:
  """The newest published index bundle's version (0: none)."""
  index = os.path.join(d, "index")
  try:
    versions = [int(v) for v in os.listdir(index) if v.isdigit()
                and os.path.exists(os.path.join(index, v, "manifest.json"))]
  except OSError:
    versions = []
  return {"index": max(versions, default=0)}


def serving_progress(d: str) -> Dict[str, int]:
  """How many model versions an export has published under `serving/` (each a rename)."""
  base = os.path.join(d, "serving")
  models = [os.path.join(base, m) for m in (os.listdir(base) if os.path.isdir(base) else [])
            if not m.startswith(".") and os.path.isdir(os.path.join(base, m))]
  return {"serving": sum(v.isdigit() for m in models for v in os.listdir(m))}


class Stage:
  """One stage's command line, how its run directory is prepared, what its run wrote, and how
  its progress is read (where kills are placed)."""

  def __init__(self, name: str, argv: Callable[[str], List[str]], outputs: List[str],
               deterministic: bool, progress: Progress,
               prepare: Optional[Callable[[str], None]] = None,
               trainer_dirs: Tuple[str, ...] = (),
               companion: Optional[Callable[[str], List[str]]] = None):
    self.name = name
    self.argv = argv  # run dir -> `python -m` arguments
    self.outputs = outputs  # sub-directories of the run dir the stage writes
    self.deterministic = deterministic  # its files are byte-equal across runs
    self.progress = progress
    self.prepare = prepare or (lambda d: None)
    self.trainer_dirs = trainer_dirs  # model dirs whose checkpoints hold step + data position
    # A command that runs beside the stage, started before it and never killed (the trainer a
    # refresh worker serves); it must end with exit status 0 too.
    self.companion = companion

  @property
  def killed_trainers(self) -> Tuple[str, ...]:
    """The trainer dirs of the killed command itself (not a companion's): the ones a re-run
    resumes, whose weights must come out bit-equal."""
    return self.trainer_dirs if self.companion is None else ()

  @property
  def judges_bundle_version(self) -> bool:
    """Whether the newest bundle's version must equal the reference's: when the killed command
    publishes its bundles itself at fixed steps. A separate refresh worker publishes for the
    newest export it finds when it polls, so its version count follows timing (by design: it
    skips exports superseded meanwhile); its bundle's step and rows are still judged."""
    return self.companion is None


def stages(work_dir: str) -> List[Stage]:
  """The long stages in pipeline order; each later stage reads an earlier one's reference run."""
  docs, questions = write_inputs(work_dir)

  def ref(name, *sub):
    return os.path.join(work_dir, name, "ref", *sub)

  corpus, annotations = ref("build_corpus", "corpus"), ref("annotate_corpus", "annotations")

  def pretrain(steps, refresh="inline"):
    """The main job at toy size (tiny towers from scratch, a few steps of every stage)."""
    return lambda d: [
        "realm_tf.launch.pretrain", f"--work_dir={d}", f"--corpus_dir={corpus}",
        f"--annotations_dir={annotations}", "--retriever_preset=tiny", "--retriever_init=",
        f"--ict_steps={STEPS}", "--ict_batch_size=4", "--reader_preset=tiny", "--reader_init=",
        f"--reader_warmup_steps={STEPS}", "--reader_warmup_batch_size=2", "--batch_size=2",
        f"--num_train_steps={steps}", f"--refresh={refresh}", "--refresh_every_steps=2",
        "--checkpoint_every=1", "--num_candidates=2", "--min_recall=0",
        "--heldout_fraction=0.3", "--heldout_queries=4"]

  def copy_warmup(d):
    shutil.copytree(ref("reader_warmup"), d, dirs_exist_ok=True,
                    ignore=shutil.ignore_patterns("*.log", REFERENCE_DONE))

  return [
      Stage("build_corpus", lambda d: ["realm_tf.launch.build_corpus", f"--inputs={docs}",
                                       f"--output_dir={d}/corpus", "--num_shards=2",
                                       "--block_length=64"], ["corpus"], True,
            beam_progress("corpus")),
      Stage("annotate_corpus", lambda d: ["realm_tf.launch.annotate_corpus",
                                          f"--corpus_dir={corpus}",
                                          f"--output_dir={d}/annotations", "--num_shards=2"],
            ["annotations"], True, beam_progress("annotations")),
      Stage("ict", lambda d: ["realm_tf.launch.ict", f"--corpus_dir={corpus}",
                              f"--model_dir={d}/ict", f"--index_dir={d}/index",
                              "--batch_size=2", f"--num_train_steps={STEPS}",
                              "--checkpoint_every=1", "--min_recall=0"],
            ["ict", "index"], False, trainer_progress("ict"), trainer_dirs=("ict",)),
      Stage("reader_warmup", pretrain(0), ["corpus", "ict", "index", "reader_warmup"], False,
            trainer_progress("ict", "reader_warmup"), trainer_dirs=("ict", "reader_warmup")),
      Stage("realm_inline_refresh", pretrain(STEPS), ["index", "realm"], False,
            trainer_progress("realm"), prepare=copy_warmup, trainer_dirs=("realm",)),
      Stage("refresh_index_worker",
            lambda d: ["realm_tf.launch.refresh_index", f"--model_dir={d}/realm",
                       f"--corpus_dir={corpus}", f"--index_dir={d}/index", "--min_recall=0",
                       "--poll_min_seconds=1", "--poll_max_seconds=2"],
            ["index", "realm"], False, bundle_progress, prepare=copy_warmup,
            trainer_dirs=("realm",), companion=pretrain(STEPS, refresh="async")),
      Stage("finetune", lambda d: ["realm_tf.launch.finetune", f"--dataset=jsonl:{questions}",
                                   f"--index_dir={ref('realm_inline_refresh', 'index')}",
                                   f"--corpus_dir={corpus}", f"--model_dir={d}/finetune",
                                   "--reader_init=", "--reader_preset=tiny", "--batch_size=2",
                                   f"--num_train_steps={STEPS}", "--checkpoint_every=1",
                                   "--reader_seq_length=64", "--reader_query_length=16",
                                   "--span_hidden_size=16", "--retriever_beam_size=8",
                                   "--reader_beam_size=2"],
            ["finetune"], False, trainer_progress("finetune"), trainer_dirs=("finetune",)),
      Stage("export", lambda d: ["realm_tf.launch.export",
                                 f"--model_dir={ref('finetune', 'finetune')}",
                                 f"--export_base={d}/serving", "--variant=stock"],
            ["serving"], False, serving_progress),
  ]
