"""The work-directory layout every stage of the main job shares, owned by one type.

The main job (`stages.pretrain_job`), the recall evaluator (`evaluation.recall_watcher`), their
CLIs and `launch/local_all_in_one.sh` all find a stage's folder under one work directory; writing
the layout once here keeps them from drifting apart. Explicitly given folders win over the layout.
"""
import dataclasses
import os
import shlex
import sys
from typing import Dict, Optional

# Stage → folder name under the work directory.
LAYOUT = {"corpus": "corpus", "annotations": "annotations", "index": "index", "ict": "ict",
          "reader": "reader_warmup", "realm": "realm"}
SUMMARY_FILE = "summary.json"  # the main job's closing figures
RECALL_LOG = "recall.jsonl"    # the recall evaluator's record of measured bundles


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
  def summary_file(self) -> str:
    return os.path.join(self.root, SUMMARY_FILE)

  @property
  def recall_log(self) -> str:
    return os.path.join(self.root, RECALL_LOG)

  def as_dict(self) -> Dict[str, str]:
    """{stage: folder} for every stage (recorded in the main job's summary)."""
    return {stage: self.path(stage) for stage in LAYOUT}

  def shell_assignments(self) -> str:
    """`CORPUS=… ANNOTATIONS=… INDEX=… ICT=… READER=… MODEL=…` for shell recipes to `eval`."""
    names = {"realm": "MODEL"}
    return " ".join(f"{names.get(stage, stage.upper())}={shlex.quote(path)}"
                    for stage, path in self.as_dict().items())


if __name__ == "__main__":  # launch/local_all_in_one.sh: eval "$(python -m realm_tf.io.work_dir W)"
  print(WorkDir(sys.argv[1]).shell_assignments())
