"""The work-directory layout every stage and CLI shares, and what a work dir was built with.

Every command-line program takes `--work_dir` and finds its inputs and outputs in the layout
below; writing the layout once here keeps the main job (`stages.pretrain_job`), the recall
evaluator, the stand-alone stage CLIs, fine-tuning, evaluation, export, the model server and
`launch/local_all_in_one.sh` from drifting apart. Explicitly given folders win over the layout.

    <work_dir>/corpus/         block corpus (its manifest records the block length: the one
                               source of truth for it)
              annotations/     salient-span annotations
              ict/             the retriever's warm start (ICT run and first embedder export)
              reader_warmup/   the reader's MLM warm-up
              realm/           REALM pre-training (checkpoints, embedder exports, held-out log)
              index/           index bundles (ScaNN searcher, embeddings, query embedder)
              finetune/        open-QA fine-tuning (checkpoints, config.json, eval/)
              serving/         TF Serving exports (<model>/<version>/)
              settings.json    the settings the pre-training stages were built with
              summary.json     the main job's closing figures

A work dir holds one pre-training run: `check_settings` refuses a run whose inputs or shapes
differ from what the work dir was built with (one line naming each difference), before any work.
"""
import dataclasses
import json
import os
import shlex
import sys
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

from realm_tf.io import paths

# Stage → folder name under the work directory.
LAYOUT = {"corpus": "corpus", "annotations": "annotations", "index": "index", "ict": "ict",
          "reader": "reader_warmup", "realm": "realm", "finetune": "finetune",
          "serving": "serving"}
DEFAULT_ROOT = "runs/default"  # every CLI's --work_dir default
SUMMARY_FILE = "summary.json"  # the main job's closing figures
RECALL_LOG = "recall.jsonl"    # the recall evaluator's record of measured bundles
SETTINGS_FILE = "settings.json"  # what the pre-training stages were built with
# A trainer's model dir holds this marker ({"step": N}) once its run reached its last step.
TRAINING_DONE = "TRAINING_DONE"
# The main job's shapes (2 CPU cores) where neither the command line nor the work dir says:
# blocks of 128 wordpieces ([CLS] title [SEP] body [SEP]; REALM's: 288) and 32-wordpiece queries
# (REALM's: 96). A corpus records its own block length, which every later stage reads.
DEFAULT_BLOCK_LENGTH = 128
DEFAULT_QUERY_LENGTH = 32


class WorkDirMismatchError(ValueError):
  """A work dir (or corpus) was built with other inputs or shapes than a run asks for."""


@dataclasses.dataclass(frozen=True)
class WorkDir:
  """A work directory and any stage folders placed elsewhere (None: the layout's)."""
  root: str
  corpus_dir: Optional[str] = None
  annotations_dir: Optional[str] = None
  index_dir: Optional[str] = None
  ict_dir: Optional[str] = None
  reader_dir: Optional[str] = None
  model_dir: Optional[str] = None  # the REALM trainer's
  finetune_dir: Optional[str] = None
  serving_dir: Optional[str] = None

  def path(self, stage: str) -> str:
    """The folder of `stage` (one of LAYOUT)."""
    if stage not in LAYOUT:
      raise ValueError(f"Unknown stage {stage!r}; expected one of {sorted(LAYOUT)}.")
    explicit = getattr(self, "model_dir" if stage == "realm" else f"{stage}_dir")
    return explicit or os.path.join(self.root, LAYOUT[stage])

  @property
  def corpus(self) -> str:
    return self.path("corpus")

  @property
  def annotations(self) -> str:
    return self.path("annotations")

  @property
  def index(self) -> str:
    return self.path("index")

  @property
  def ict(self) -> str:
    return self.path("ict")

  @property
  def reader(self) -> str:
    return self.path("reader")

  @property
  def realm(self) -> str:
    return self.path("realm")

  @property
  def finetune(self) -> str:
    return self.path("finetune")

  @property
  def serving(self) -> str:
    return self.path("serving")

  @property
  def summary_file(self) -> str:
    return os.path.join(self.root, SUMMARY_FILE)

  @property
  def recall_log(self) -> str:
    return os.path.join(self.root, RECALL_LOG)

  @property
  def settings_file(self) -> str:
    return os.path.join(self.root, SETTINGS_FILE)

  def as_dict(self) -> Dict[str, str]:
    """{stage: folder} for every stage (recorded in the main job's summary)."""
    return {stage: self.path(stage) for stage in LAYOUT}

  def shell_assignments(self) -> str:
    """`CORPUS=… ANNOTATIONS=… INDEX=… ICT=… READER=… MODEL=… FINETUNE=… SERVING=…` for shell
    recipes to `eval`."""
    names = {"realm": "MODEL"}
    return " ".join(f"{names.get(stage, stage.upper())}={shlex.quote(path)}"
                    for stage, path in self.as_dict().items())


def derive(root: str, explicit: Mapping[str, Tuple[str, Optional[str]]]) -> Dict[str, str]:
  """{flag: folder} for a CLI's path flags: each explicit value, else its layout folder.

  `explicit` maps a CLI's path flag to (stage, value), e.g.
  {"index_dir": ("index", FLAGS.index_dir)}; an empty value counts as unset.
  """
  layout = WorkDir(root)
  return {name: value or layout.path(stage) for name, (stage, value) in explicit.items()}


def normalize_inputs(inputs: Sequence[str]) -> List[str]:
  """Input globs as a corpus manifest records them: local paths absolute, URLs as given."""
  return [paths.absolute(p) for p in inputs]


def _read_json(path: str) -> Optional[Dict]:
  """The JSON object at `path` (any TensorFlow filesystem), or None when there is none."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  if not tf.io.gfile.exists(path):
    return None
  with tf.io.gfile.GFile(path) as f:
    return json.load(f)


def corpus_manifest(corpus_dir: str) -> Optional[Dict]:
  """The corpus manifest in `corpus_dir`, or None when no corpus is there yet."""
  return _read_json(os.path.join(corpus_dir, "manifest.json"))


def block_length_of(corpus_dir: str, requested: Optional[int] = None,
                    flag: str = "--block_length") -> Optional[int]:
  """The block length a stage uses on `corpus_dir`: the corpus's own (its manifest's
  `max_block_length`), `requested` when there is no corpus yet (None: no corpus and no request).

  A `requested` length other than the corpus's is refused (WorkDirMismatchError), so a shape
  mismatch stops a run at start-up instead of at the first export.
  """
  manifest = corpus_manifest(corpus_dir)
  built = manifest.get("max_block_length") if manifest else None
  if built is None:
    return requested
  if requested is not None and int(requested) != int(built):
    raise WorkDirMismatchError(
        f"{flag}={requested}, but the corpus in {corpus_dir} has {built}-wordpiece blocks "
        f"(its manifest.json): drop {flag} to use the corpus's, or use another --work_dir "
        "(or --corpus_dir).")
  return int(built)


def check_inputs(corpus_dir: str, inputs: Optional[Sequence[str]]) -> Optional[Dict]:
  """Refuses `inputs` (WorkDirMismatchError) when `corpus_dir` holds a corpus built from other
  input files; returns that corpus's manifest (None when there is no corpus yet)."""
  manifest = corpus_manifest(corpus_dir)
  if manifest is None or not inputs:
    return manifest
  built = manifest.get("inputs")
  asked = normalize_inputs(inputs)
  if built is not None and sorted(normalize_inputs(built)) != sorted(asked):
    raise WorkDirMismatchError(
        f"The corpus in {corpus_dir} was built from {built}, not from --inputs={asked}: use "
        "another --work_dir for these documents (or drop --inputs to use that corpus).")
  return manifest


def recorded_settings(work: WorkDir) -> Dict:
  """The settings `work` was built with (its settings.json; {} before the first run)."""
  return _read_json(work.settings_file) or {}


def check_settings(work: WorkDir, settings: Mapping[str, object]) -> bool:
  """Refuses (WorkDirMismatchError) `settings` that differ from the ones `work` records in
  settings.json, naming every difference; True when the work dir records them already."""
  recorded = _read_json(work.settings_file)
  if recorded is None:
    return False
  settings = json.loads(json.dumps(dict(settings)))
  diff = [k for k in sorted(set(recorded) | set(settings)) if recorded.get(k) != settings.get(k)]
  if diff:
    differences = ", ".join(f"--{k}={_flag_value(settings.get(k))} (built with "
                            f"{_flag_value(recorded.get(k))})" for k in diff)
    raise WorkDirMismatchError(
        f"{work.root} was built with other settings ({work.settings_file}): {differences}. "
        "Use another --work_dir, or the settings it was built with.")
  return True


def record_settings(work: WorkDir, settings: Mapping[str, object]) -> None:
  """Writes `settings` to the work dir's settings.json (atomically), once; by the chief alone
  in a multi-worker job (the others check them when they are there)."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from realm_tf.io import atomic  # pylint: disable=g-import-not-at-top
  from realm_tf.io import chief  # pylint: disable=g-import-not-at-top
  if not check_settings(work, settings) and chief.is_chief_process():
    tf.io.gfile.makedirs(work.root)
    atomic.write_json(work.settings_file, dict(settings))


def _flag_value(value) -> str:
  """A setting as a flag value: '' for None, true/false, comma-joined lists."""
  if value is None:
    return ""
  if isinstance(value, bool):
    return str(value).lower()
  if isinstance(value, (list, tuple)):
    return ",".join(str(v) for v in value)
  return str(value)


if __name__ == "__main__":  # launch/local_all_in_one.sh: eval "$(python -m realm_tf.io.work_dir W)"
  print(WorkDir(sys.argv[1]).shell_assignments())
