"""TFDS builders for REALM's open-domain QA benchmarks, with ORQA's train/dev/test splits.

`import tfds_builders` registers them, so `tfds.load("nq_open_orqa")`, `tfds.load(
"web_questions_orqa")` and `tfds.load("curated_trec_orqa")` work. Each builder package ships the
public source files in its `data/` folder (licences and attribution in `data/README.md`);
`shipped_data_dir(name)` returns that folder, to pass as `manual_dir` for offline builds.
"""
from etils import epath

from tfds_builders.curated_trec_orqa import curated_trec_orqa_dataset_builder
from tfds_builders.nq_open_orqa import nq_open_orqa_dataset_builder
from tfds_builders.web_questions_orqa import web_questions_orqa_dataset_builder

BUILDERS = {
    "nq_open_orqa": nq_open_orqa_dataset_builder.Builder,
    "web_questions_orqa": web_questions_orqa_dataset_builder.Builder,
    "curated_trec_orqa": curated_trec_orqa_dataset_builder.Builder,
}


def shipped_data_dir(name: str) -> epath.Path:
  """Folder of the public source files shipped for builder `name` (a valid offline manual_dir).

  `name` may carry a config (`nq_open_orqa/dpr`); raises ValueError for unknown names.
  """
  base = name.split("/", 1)[0]
  if base not in BUILDERS:
    raise ValueError(f"Unknown open-QA builder {name!r}; known: {sorted(BUILDERS)}.")
  return epath.Path(__file__).parent / base / "data"
