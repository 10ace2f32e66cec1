"""The order in which a test run hands its test files to pytest-xdist's workers: longest first.

`make test` runs `pytest -n 2 --dist loadfile`: every test file is one unit of work, and each
worker takes the next unit in line when it is done with its own. By default pytest-xdist puts
the units in line by their number of tests, most first. That puts the end-to-end files (one to
four long tests each) at the end of the line, so near the end one worker is still in a long file
while the other has nothing left to do: the run lasts as long as that file's tail. Handing out
the longest files first (the longest-processing-time-first rule of list scheduling) leaves only
short files for the end, where they even out the two workers.

`tests/conftest.py` applies this order (`longest_first`) at collection and turns off xdist's own
reordering. FILE_SECONDS holds what each listed file's default tests took in a two-worker
default run (`--durations`, setup and calls summed, seconds under that run's load), rounded; only
the order matters, so these numbers need refreshing only when a file's cost moves a lot. A file
not listed keeps its place in the collection, after the listed ones. A listed file that no longer
exists fails `run_order_test.py`.
"""
from typing import Callable, Dict, List, Mapping, Sequence, TypeVar

T = TypeVar("T")

# Seconds of each file's default-run tests: a two-worker default run's `--durations=0` summed per
# file (setup, calls and teardowns; under the load of a benchmark running beside it, so only the
# order means anything), files of 10 s or more.
FILE_SECONDS: Dict[str, float] = {
    "tests/test_realm_fidelity.py": 185,
    "realm_tf/stages/finetune_test.py": 113,
    "tests/test_xla_static_shapes.py": 92,
    "tests/test_field_formats_e2e.py": 67,
    "realm_tf/retrieval/refresh_test.py": 67,
    "realm_tf/training/trainer_test.py": 66,
    "realm_tf/data/corpus_test.py": 49,
    "tests/test_pretrain_e2e.py": 48,
    "realm_tf/release/importer_test.py": 44,
    "tests/test_released_models_e2e.py": 42,
    "realm_tf/stages/ict_experiment_test.py": 35,
    "realm_tf/launch/annotate_corpus_test.py": 31,
    "tests/test_multi_worker.py": 31,
    "realm_tf/data/pretrain_pipeline_service_test.py": 30,
    "realm_tf/launch/build_corpus_test.py": 29,
    "realm_tf/retrieval/bundle_test.py": 28,
    "realm_tf/retrieval/refresh_documents_test.py": 28,
    "realm_tf/retrieval/refresh_round_test.py": 26,
    "tests/test_serving_e2e.py": 25,
    "realm_tf/launch/refresh_index_test.py": 24,
    "realm_tf/retrieval/scann_searcher_test.py": 24,
    "realm_tf/launch/pretrain_test.py": 17,
    "realm_tf/modeling/openqa_model_test.py": 16,
    "tests/faults/test_disk_full.py": 16,
    "realm_tf/modeling/realm_pretrainer_test.py": 16,
    "realm_tf/launch/finetune_test.py": 16,
    "realm_tf/stages/refresh_job_test.py": 15,
    "tests/faults/test_kill.py": 14,
    "realm_tf/retrieval/embedder_export_test.py": 14,
    "serving/server_test.py": 13,
    "tests/faults/test_server_load.py": 13,
    "realm_tf/launch/export_test.py": 11,
    "realm_tf/retrieval/embed_corpus_test.py": 11,
    "realm_tf/data/ict_examples_test.py": 10,
    "realm_tf/stages/evaluate_test.py": 10,
}


def file_of(nodeid: str) -> str:
  """The file part of a pytest node id (`path/x_test.py::test_y[p]` → `path/x_test.py`): the unit
  of work under `--dist loadfile`."""
  return nodeid.split("::", 1)[0]


def longest_first(items: Sequence[T], nodeid: Callable[[T], str] = lambda item: item.nodeid,
                  seconds: Mapping[str, float] = FILE_SECONDS) -> List[T]:
  """`items` grouped by file, the files in `seconds` first (most seconds first), then the other
  files in the order they first appear; within a file the items keep their order (module
  fixtures and tests that read an earlier test's result rely on it)."""
  first_seen: Dict[str, int] = {}
  for index, item in enumerate(items):
    first_seen.setdefault(file_of(nodeid(item)), index)

  def key(indexed):
    index, item = indexed
    path = file_of(nodeid(item))
    return (-seconds.get(path, 0.0), first_seen[path], index)

  return [item for _, item in sorted(enumerate(items), key=key)]
