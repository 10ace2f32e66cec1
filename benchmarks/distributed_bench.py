r"""Two processes against one: the wall time of the Beam corpus jobs, REALM pre-training and open-QA
fine-tuning on 2 worker processes and in 1, measured side by side in one run.

    python -m benchmarks.distributed_bench [--articles=8 --realm_steps=100 --finetune_steps=100]

The corpus is the first `articles` articles of the shipped SQuAD dev set. Beam: `build_corpus`
then `annotate_corpus` in-process and on 2 SDK worker processes (`--direct_num_workers=2
--direct_running_mode=multi_processing`), outputs compared byte for byte. REALM and fine-tuning:
one start (corpus, annotations, ICT, reader warm-up, the first index; tiny towers and reader)
built once by one process, then the same steps at the same global batch in 1 process and on 2
MultiWorkerMirroredStrategy workers (TF_CONFIG, gRPC on loopback), each from its own copy; the
fine-tuning pair starts from the 2-worker REALM run. Every figure is a command's wall time, its
start-up included. On a 2-core machine the two workers share the cores one process has to
itself, so the ratio is what coordination costs here (collectives over gRPC, a second
TensorFlow, the chief's waits), not a speed-up on more hosts.
Writes benchmarks/results/distributed.json. Settings: `DistributedBenchConfig`; `run(config)`.
"""
import dataclasses
import filecmp
import json
import os
import shutil
import sys
import time
from typing import Dict, List, Sequence

from benchmarks import common
from benchmarks import procs
from realm_tf.config_base import ConfigBase

MEASURES = ("realm_tf/",)
BEAM_WORKERS = ("--direct_num_workers=2", "--direct_running_mode=multi_processing")
TWO_WORKERS = ("--strategy=multi_worker_mirrored",)
# The start: tiny towers and reader from random weights, a short ICT and reader warm-up.
TOY = ("--retriever_preset=tiny", "--retriever_init=", "--ict_steps=20", "--ict_batch_size=8",
       "--reader_preset=tiny", "--reader_init=", "--reader_warmup_steps=20",
       "--num_candidates=4", "--min_recall=0", "--heldout_queries=32", "--eval_questions=none")
FINETUNE_TOY = ("--reader_init=", "--reader_preset=tiny", "--reader_seq_length=128",
                "--reader_query_length=32", "--span_hidden_size=32")


@dataclasses.dataclass
class DistributedBenchConfig(ConfigBase):
  """The corpus, the steps of each training pair, their global batch, and where to work."""
  articles: int = 8
  realm_steps: int = 100
  finetune_steps: int = 100
  batch_size: int = 4
  work_dir: str = "/tmp/distributed_bench"
  allow_dirty: bool = False


HELP = {
    "articles": "First SQuAD v1.1 dev articles forming the corpus.",
    "realm_steps": "REALM steps of each run (refreshing and checkpointing every 10).",
    "finetune_steps": "Fine-tuning steps of each run.",
    "batch_size": "Global batch of REALM and fine-tuning (both runs of a pair).",
    "work_dir": "Scratch folder (emptied first).",
    "allow_dirty": common.ALLOW_DIRTY_HELP,
}


def _one(args: Sequence[str], what: str) -> float:
  """Wall seconds of `python -m <args>` in one process; RuntimeError when it fails."""
  return procs.run_checked([sys.executable, "-m", *args], what)["seconds"]


def _two(args: Sequence[str], what: str, log_dir: str) -> float:
  """Wall seconds of `python -m <args>` on 2 worker processes; RuntimeError when one fails."""
  from realm_tf.testing import worker_cluster  # pylint: disable=g-import-not-at-top
  begin = time.perf_counter()
  cluster = worker_cluster.Cluster(args, 2, log_dir, env=procs.env())
  statuses = cluster.wait(3600)
  seconds = time.perf_counter() - begin
  if statuses != [0, 0]:
    raise RuntimeError(f"{what} failed on 2 workers (exits {statuses}):\n{cluster.log(0)[-2000:]}")
  return seconds


def _pair(one: float, two: float) -> Dict[str, float]:
  return {"one_process_seconds": round(one, 2), "two_workers_seconds": round(two, 2),
          "two_over_one": round(two / one, 3)}


def _same_files(a: str, b: str, skip: Sequence[str]) -> List[str]:
  """Files of folder `a` whose bytes differ in `b` (those named in `skip` left out)."""
  names = sorted(n for n in os.listdir(a) if n not in skip)
  return [n for n in names if not filecmp.cmp(os.path.join(a, n), os.path.join(b, n),
                                                 shallow=False)]


def run(config: DistributedBenchConfig) -> Dict:
  """Runs the three pairs; writes benchmarks/results/distributed.json and returns it."""
  provenance = common.Provenance(config.allow_dirty)
  w = os.path.abspath(config.work_dir)
  shutil.rmtree(w, ignore_errors=True)
  os.makedirs(w)
  squad = os.path.join(w, "squad.json")
  counts = common.squad_subset(squad, config.articles)
  t_start = time.time()

  beam, dirs = {}, {}
  for side, extra in (("one", ()), ("two", BEAM_WORKERS)):
    corpus, annotations = os.path.join(w, f"beam_{side}", "corpus"), \
        os.path.join(w, f"beam_{side}", "annotations")
    dirs[side] = (corpus, annotations)
    beam[side] = (_one(["realm_tf.launch.build_corpus", f"--inputs={squad}",
                        f"--output_dir={corpus}", "--num_shards=2", *extra], "build_corpus"),
                  _one(["realm_tf.launch.annotate_corpus", f"--corpus_dir={corpus}",
                        f"--output_dir={annotations}", "--num_shards=2", *extra],
                       "annotate_corpus"))
  from realm_tf.data import corpus as corpus_lib  # pylint: disable=g-import-not-at-top
  manifests = (corpus_lib.MANIFEST, corpus_lib.ANNOTATION_MANIFEST)  # they name their folders
  differ = [f"corpus/{n}" for n in _same_files(dirs["one"][0], dirs["two"][0], manifests)] + \
      [f"annotations/{n}" for n in _same_files(dirs["one"][1], dirs["two"][1], manifests)]

  start = os.path.join(w, "start")
  job = ["realm_tf.launch.pretrain", f"--inputs={squad}", *TOY,
         f"--batch_size={config.batch_size}", "--refresh_every_steps=10", "--checkpoint_every=10"]
  _one([*job, f"--work_dir={start}", "--num_train_steps=0"], "the shared start")
  realm = {}
  for side in ("one", "two"):
    work = os.path.join(w, f"realm_{side}")
    shutil.copytree(start, work)
    args = [*job, f"--work_dir={work}", f"--num_train_steps={config.realm_steps}"]
    realm[side] = _one(args, "REALM") if side == "one" else \
        _two([*args, *TWO_WORKERS], "REALM", os.path.join(w, "realm_logs"))

  questions = os.path.join(w, "questions.jsonl")
  with open(squad, encoding="utf-8") as f, open(questions, "w", encoding="utf-8") as out:
    for article in json.load(f)["data"]:
      for paragraph in article["paragraphs"]:
        for qa in paragraph["qas"]:
          out.write(json.dumps({"question": qa["question"],
                                "answers": [a["text"] for a in qa["answers"]]}) + "\n")
  finetune = {}
  for side in ("one", "two"):
    work = os.path.join(w, f"finetune_{side}")
    shutil.copytree(os.path.join(w, "realm_two"), work)
    args = ["realm_tf.launch.finetune", f"--work_dir={work}", f"--dataset=jsonl:{questions}",
            *FINETUNE_TOY, f"--num_train_steps={config.finetune_steps}",
            f"--batch_size={config.batch_size}", "--checkpoint_every=10"]
    finetune[side] = _one(args, "fine-tuning") if side == "one" else \
        _two([*args, *TWO_WORKERS], "fine-tuning", os.path.join(w, "finetune_logs"))

  result = {
      "corpus": {k: v for k, v in counts.items() if k != "titles"},
      "settings": config.to_dict(),
      "beam_build_corpus": _pair(beam["one"][0], beam["two"][0]),
      "beam_annotate_corpus": _pair(beam["one"][1], beam["two"][1]),
      "beam_outputs_byte_equal": not differ, "beam_files_differing": differ,
      "realm": _pair(realm["one"], realm["two"]),
      "finetune": _pair(finetune["one"], finetune["two"]),
      "wall_seconds": round(time.time() - t_start, 1),
      "notes": "Wall seconds of each command, start-up included; 2 processes share this "
               "machine's cores (os.cpu_count() = %d), so two_over_one is the cost of "
               "coordination, not a speed-up on more hosts." % os.cpu_count(),
  }
  common.write_result("distributed", result, provenance)
  return result


if __name__ == "__main__":
  from realm_tf.launch import config_program  # pylint: disable=g-import-not-at-top
  config_program.main(DistributedBenchConfig, HELP, run)
