"""End-to-end test of the open-QA command lines: fine-tune on 2 CPU replicas, then evaluate."""
import json
import os
import subprocess
import sys

import pytest
from absl import flags

from realm_tf.launch import evaluate
from realm_tf.launch import finetune
from realm_tf.testing import cli as testing
from realm_tf.testing import openqa_models as T
from realm_tf.utils import command_line
from realm_tf.testing.cli import parsed_flags

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _run(args, timeout=600):
  proc = subprocess.run([sys.executable, "-m"] + args, cwd=ROOT, capture_output=True, text=True,
                        timeout=timeout, env=dict(os.environ, CUDA_VISIBLE_DEVICES=""))
  assert proc.returncode == 0, proc.stderr[-4000:]
  return proc


@pytest.mark.slow
def test_finetune_mirrored_then_evaluate(tmp_path):
  corpus = str(tmp_path / "corpus")
  T.make_text_corpus(corpus)
  index_dir, export = T.make_bundle(str(tmp_path), corpus)
  model_dir = str(tmp_path / "ft")
  proc = _run(["realm_tf.launch.finetune", "--dataset=squad_open", f"--index_dir={index_dir}",
               f"--corpus_dir={corpus}", f"--model_dir={model_dir}", f"--init={export}",
               "--reader_init=", "--reader_preset=tiny",
               "--strategy=mirrored", "--num_cpu_devices=2", "--batch_size=4",
               "--num_train_steps=2", "--checkpoint_every=2", "--max_train_examples=16",
               "--reader_seq_length=64", "--reader_query_length=16", "--span_hidden_size=16",
               "--retriever_beam_size=8"])
  assert "MirroredStrategy with 2 replica(s)" in proc.stderr
  assert os.path.exists(os.path.join(model_dir, "TRAINING_DONE"))
  with open(os.path.join(model_dir, "config.json")) as f:
    cfg = json.load(f)
  assert cfg["dataset"] == "squad_open" and cfg["model"]["retriever_beam_size"] == 8
  prefix = str(tmp_path / "eval" / "squad")
  _run(["realm_tf.launch.evaluate", f"--model_dir={model_dir}", "--dataset=squad_open",
        "--split=dev", "--max_examples=8", "--batch_size=8", "--recall_ks=1,5",
        f"--output_prefix={prefix}"])
  with open(prefix + ".json") as f:
    result = json.load(f)
  assert result["num_examples"] == 8 and result["model_calls"] == 1
  assert 0.0 <= result["exact_match"] <= 1.0 and "recall@5" in result
  with open(prefix + ".jsonl", encoding="utf-8") as f:
    lines = [json.loads(x) for x in f]
  assert len(lines) == 8 and all(len(x["evidence"]) == 5 for x in lines)


@pytest.mark.slow
def test_jsonl_gold_positives_on_two_replicas_then_bm25_evaluate(tmp_path):
  """Your own questions, the gold reader positive under MirroredStrategy, BM25 behind the reader,
  and one-line errors for a bad --dataset and a malformed line with --strict."""
  corpus = str(tmp_path / "corpus")
  ids = T.make_text_corpus(corpus, T.FACTS + T.distractor_facts(8))
  # The retriever can never put an answer block in the top 2: only the gold positive trains.
  index_dir, _ = T.make_bundle(str(tmp_path), corpus, projection_size=4,
                               embeddings_fn=T.unreachable_answers(ids[:len(T.FACTS)]))
  questions = tmp_path / "qs.jsonl"
  lines = [json.dumps({"question": e.question, "answers": list(e.answers), "doc_id": e.doc_id})
           for e in T.examples(8)]
  lines.insert(2, json.dumps({"question": "Who?", "answers": [3]}))
  questions.write_text("\n".join(lines) + "\n", encoding="utf-8")
  model_dir = str(tmp_path / "ft")
  args = ["realm_tf.launch.finetune", f"--dataset=jsonl:{questions}", f"--index_dir={index_dir}",
          f"--corpus_dir={corpus}", f"--model_dir={model_dir}", "--reader_positives=gold",
          "--reader_init=", "--reader_preset=tiny",
          "--strategy=mirrored", "--num_cpu_devices=2", "--batch_size=4",
          "--num_train_steps=2", "--checkpoint_every=2", "--reader_beam_size=2",
          "--reader_seq_length=64", "--reader_query_length=16", "--span_hidden_size=16"]
  proc = _run(args)
  assert "MirroredStrategy with 2 replica(s)" in proc.stderr
  assert f"{questions}:3: \"answers\" must be a list of non-empty strings" in proc.stderr
  result = json.loads(proc.stdout[:proc.stdout.rindex("}") + 1])
  assert result["num_examples"] == 8
  assert result["reader_has_answer"] == 1.0 and result["reader_loss_nonzero"] == 1.0
  with open(os.path.join(model_dir, "config.json")) as f:
    assert json.load(f)["reader_positives"] == "gold"
  _run(["realm_tf.launch.evaluate", f"--model_dir={model_dir}", f"--dataset=jsonl:{questions}",
        "--retriever=bm25", "--recall_ks=1,5", "--batch_size=8"])
  with open(os.path.join(model_dir, "eval", "jsonl_qs-test-bm25.json")) as f:
    evaluation = json.load(f)
  assert evaluation["retriever"] == "bm25" and evaluation["num_examples"] == 8
  assert evaluation["recall@5"] >= evaluation["recall@1"] > 0.5  # BM25 finds the facts
  # Bad input: one line on stderr naming the problem, exit status 2, nothing trained.
  for bad_args, message in (
      (["realm_tf.launch.evaluate", f"--model_dir={model_dir}", "--dataset=nq_open"],
       "error: Unknown --dataset 'nq_open'; choose one of nq_open_orqa, "),
      ([a if a != f"--model_dir={model_dir}" else f"--model_dir={tmp_path}/strict"
        for a in args] + ["--strict"],
       f"error: {questions}:3: \"answers\" must be a list of non-empty strings")):
    proc = subprocess.run([sys.executable, "-m"] + bad_args, cwd=ROOT, capture_output=True,
                          text=True, timeout=600, env=dict(os.environ, CUDA_VISIBLE_DEVICES=""))
    assert proc.returncode == 2 and proc.stderr.strip().splitlines()[-1].startswith(message), \
        proc.stderr[-2000:]
  assert not os.path.exists(tmp_path / "strict")


def test_flags_are_defined_only_by_define_flags_and_parse_into_the_config():
  from realm_tf.stages.finetune import FinetuneConfig  # pylint: disable=g-import-not-at-top
  for module in (finetune, evaluate):
    assert not flags.FLAGS.flags_by_module_dict().get(module.__name__)
  fv = parsed_flags(finetune, "--dataset=squad_open", "--split=dev", "--reader_seq_length=64",
                       "--reader_beam_size=2", "--reader_positives=beam", "--warmup_steps=3",
                       "--strategy=mirrored")
  config = finetune.config_from_flags(fv)
  assert (config.dataset, config.train_split, config.model.reader.seq_length,
          config.model.reader_beam_size, config.reader_positives, config.warmup_steps) == (
              "squad_open", "dev", 64, 2, "beam", 3)
  assert isinstance(config, FinetuneConfig)
  fv = flags.FlagValues()
  evaluate.define_flags(fv)
  fv(["evaluate", "--dataset=squad_open", "--recall_ks=1,5", "--work_dir=/w"])
  assert (fv.dataset, fv.split, fv.recall_ks, fv.retriever) == ("squad_open", "test",
                                                                ["1", "5"], "dense")
  from realm_tf.stages.evaluate import EvaluateConfig  # pylint: disable=g-import-not-at-top
  assert evaluate.config_from_flags(fv) == EvaluateConfig(model_dir="/w/finetune",
                                                          recall_ks=[1, 5])
  fv(["evaluate", "--retriever=bm25", "--model_dir=/m"])
  assert (evaluate.config_from_flags(fv).retriever, evaluate.config_from_flags(fv).model_dir) == (
      "bm25", "/m")
  with pytest.raises(flags.IllegalFlagValueError):
    fv(["evaluate", "--retriever=tfidf"])
  assert evaluate.config_from_flags(fv).bm25_logits is None  # the reader's own, by default
  fv(["evaluate", "--bm25_logits=zero"])
  assert evaluate.config_from_flags(fv).bm25_logits == "zero"
  with pytest.raises(flags.IllegalFlagValueError):
    fv(["evaluate", "--bm25_logits=bm25"])


# Every flag of the program (its --help) with the default a user sees, as when written by hand:
# the fine-tuning recipe measured on 2 CPU cores; the old names last (deprecated aliases).
_DEFAULTS = {
    "dataset": None, "split": "train", "batch_size": 16, "num_train_steps": 400,
    "learning_rate": 3e-4, "retriever_lr_multiplier": 0.3333, "warmup_steps": None, "seed": 0,
    "checkpoint_every": 100, "log_every": 25, "max_train_examples": None,
    "reader_positives": "gold", "retrieval_score_scale": None, "retriever": "dense",
    "reader_beam_size": 5,
    "train_reader_beam_size": None, "retriever_beam_size": 256, "reader_preset": "minilm",
    "span_hidden_size": 256, "max_span_width": 10, "reader_seq_length": 160,
    "reader_query_length": 32, "work_dir": "runs/default", "index_dir": None, "corpus_dir": None,
    "model_dir": None, "init": None, "reader_init": "minilm", "data_dir": None,
    "manual_dir": None, "strict": False,
    "tpu": None, "strategy": "default", "num_cpu_devices": None, "mixed_precision": None,
    "jit_compile": False,
    "reader_encoder": "minilm", "init_checkpoint": None, "reader_init_checkpoint": "minilm"}


def _source(tmp_path, name):
  """A directory warm_start takes for a Hugging Face BERT (what the flags' check looks for)."""
  path = tmp_path / name
  path.mkdir()
  (path / "model.safetensors").write_bytes(b"")
  return str(path)


def test_every_flag_keeps_its_name_and_default_and_job_fields_are_generated(tmp_path):
  from realm_tf.stages.finetune import FinetuneJobConfig  # pylint: disable=g-import-not-at-top
  init, reader = _source(tmp_path, "w"), _source(tmp_path, "r")
  fv = flags.FlagValues()
  finetune.define_flags(fv)
  assert {f.name: f.default for f in fv.get_key_flags_for_module(finetune)} == _DEFAULTS
  assert fv["reader_positives"].parser.enum_values == ["beam", "gold", "none"]
  assert fv["reader_preset"].parser.enum_values == ["base", "mini", "minilm", "tiny"]
  for name in ("index_dir", "init", "data_dir", "strict", "split", "reader_preset"):
    assert fv[name].help.endswith(finetune.HELP[name]), name  # from the table, i.e. generated
  with pytest.raises(flags.IllegalFlagValueError, match="--dataset"):  # required
    fv(["finetune", "--work_dir=/w"])
  fv(["finetune", "--dataset=squad_open", "--index_dir=/i", "--corpus_dir=/c", "--model_dir=/m",
      f"--init={init}", f"--reader_init={reader}", "--data_dir=/d", "--manual_dir=/s",
      "--strict", "--jit_compile", "--reader_preset=mini"])
  assert finetune.job_from_flags(fv) == FinetuneJobConfig(
      finetune.config_from_flags(fv), index_dir="/i", corpus_dir="/c", model_dir="/m",
      init_checkpoint=init, reader_init_checkpoint=reader, data_dir="/d", manual_dir="/s",
      jit_compile=True, strict=True)
  assert finetune.job_from_flags(fv).finetune.model.reader.encoder == "mini"


def test_the_work_dir_gives_every_path_and_old_names_still_work(tmp_path):
  init = _source(tmp_path, "r")
  fv = parsed_flags(finetune, "--dataset=squad_open", "--work_dir=/w", f"--init_checkpoint={init}",
                       "--reader_init_checkpoint=", "--reader_encoder=tiny")
  job = finetune.job_from_flags(fv)
  assert (job.index_dir, job.corpus_dir, job.model_dir) == ("/w/index", "/w/corpus",
                                                            "/w/finetune")
  assert (job.init_checkpoint, job.reader_init_checkpoint,
          job.finetune.model.reader.encoder) == (init, None, "tiny")
  assert sorted(command_line.deprecated_aliases_used(fv)) == [
      ("init_checkpoint", "init"), ("reader_encoder", "reader_preset"),
      ("reader_init_checkpoint", "reader_init")]


def test_the_cpu_flag_file_is_the_defaults():
  path = os.path.join(ROOT, "launch", "configs", "finetune_cpu.flags")
  for retriever in ("dense", "bm25"):
    args = ("--dataset=squad_open", f"--retriever={retriever}")
    with_file = finetune.job_from_flags(parsed_flags(finetune, *args, f"--flagfile={path}"))
    assert with_file == finetune.job_from_flags(parsed_flags(finetune, *args)), retriever
  with open(path, encoding="utf-8") as f:
    # Every recipe setting written out but --train_reader_beam_size, whose default depends on
    # --retriever (test_bm25_trains_the_reader_over_the_blocks_evaluation_reads_by_default).
    assert len([l for l in f if l.startswith("--")]) == 12


def test_bm25_trains_the_reader_over_the_blocks_evaluation_reads_by_default():
  """Behind BM25 the reader has no retrieval logit to rank its blocks, so by default it is
  trained over the k blocks evaluation reads (one softmax over their spans); the dense recipe
  keeps its 1 block; a given --train_reader_beam_size wins either way."""
  bm25 = finetune.config_from_flags(parsed_flags(finetune, "--dataset=squad_open", "--retriever=bm25"))
  assert bm25.model.reader_beam_size == 5
  assert bm25.model.train_reader_beam_size == 5
  bm25_k3 = finetune.config_from_flags(parsed_flags(finetune, "--dataset=squad_open", "--retriever=bm25",
                                                       "--reader_beam_size=3"))
  assert (bm25_k3.model.reader_beam_size, bm25_k3.model.train_reader_beam_size) == (3, 3)
  dense = finetune.config_from_flags(parsed_flags(finetune, "--dataset=squad_open"))
  assert dense.model.train_reader_beam_size == finetune.DENSE_TRAIN_READER_BEAM_SIZE == 1
  for retriever in ("dense", "bm25"):
    given = finetune.config_from_flags(parsed_flags(finetune, 
        "--dataset=squad_open", f"--retriever={retriever}", "--train_reader_beam_size=2"))
    assert given.model.train_reader_beam_size == 2, retriever


# The first case runs in the default run; the others are slow (each a TensorFlow start-up): their
# messages are checked in-process (openqa/datasets_test, utils/command_line_test,
# launch/validators_test)
# and on a real program by test_evaluate_needs_a_dataset_and_a_fine_tuning_run.
@pytest.mark.parametrize("args,needles", [
    (("--dataset=nope",), ("Unknown --dataset 'nope'", "jsonl:<path>")),
    pytest.param(("--dataset=jsonl:/no/such.jsonl",),
                 ("question file /no/such.jsonl does not exist",), marks=pytest.mark.slow),
    pytest.param((), ("--dataset is required",), marks=pytest.mark.slow),
    pytest.param(("--dataset=squad_open", "--init=/no/such/run"),
                 ("--init: Warm-start source /no/such/run is none of",), marks=pytest.mark.slow),
])
def test_a_bad_or_missing_dataset_is_a_one_line_error_before_any_work(tmp_path, args, needles):
  proc = testing.run_cli("realm_tf.launch.finetune", *args, f"--work_dir={tmp_path / 'w'}")
  testing.assert_one_line_error(proc, *needles)
  assert not (tmp_path / "w").exists()


def test_evaluate_needs_a_dataset_and_a_fine_tuning_run(tmp_path):
  missing = str(tmp_path / "missing")
  proc = testing.run_cli("realm_tf.launch.evaluate", f"--work_dir={missing}",
                         "--dataset=squad_open")
  testing.assert_one_line_error(proc, f"{missing}/finetune/config.json")
  proc = testing.run_cli("realm_tf.launch.evaluate", f"--work_dir={missing}")
  testing.assert_one_line_error(proc, "--dataset is required")


def test_a_refused_strict_run_leaves_its_model_dir_as_it_was(tmp_path):
  """--strict refuses a malformed question line after the model dir's lock is taken: the lock
  file and the folders the run created go with the refusal (here three levels, none there)."""
  questions = tmp_path / "qs.jsonl"
  questions.write_text(json.dumps({"question": "Who?", "answers": ["Ada"]}) + "\n" +
                       json.dumps({"question": "Who else?", "answers": [3]}) + "\n",
                       encoding="utf-8")
  model_dir = tmp_path / "runs" / "mine" / "finetune"
  proc = testing.run_cli("realm_tf.launch.finetune", f"--dataset=jsonl:{questions}", "--strict",
                         f"--work_dir={tmp_path / 'work'}", f"--model_dir={model_dir}")
  testing.assert_one_line_error(
      proc, f"{questions}:2: \"answers\" must be a list of non-empty strings")
  assert "Holding the work-dir lock" in proc.stderr  # refused after the lock was taken
  assert sorted(os.listdir(tmp_path)) == ["qs.jsonl"]  # no runs/, no work/
