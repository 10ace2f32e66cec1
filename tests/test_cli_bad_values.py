"""Every CLI refuses a bad number or a contradictory combination while its flags are parsed:
one line `error: ...`, exit status 2, no traceback, nothing written.

Most rows parse in-process on a fresh FlagValues (the CLI's own `define_flags`, the same
validators `python -m` runs). The reviewer's two cases run the real programs in subprocesses
against an empty work dir that must stay empty; the same for one row of every CLI is a slow test
(each subprocess imports TensorFlow).
"""
import concurrent.futures
import importlib
import os

import pytest
from absl import app
from absl import flags

from realm_tf.utils import command_line
from realm_tf.launch import validators
from realm_tf.testing import cli as cli_testing

CLIS = ("pretrain", "ict", "build_corpus", "annotate_corpus", "refresh_index", "watch_recall",
        "data_service_worker", "finetune", "evaluate", "export", "convert_checkpoint",
        "model_server", "model_client", "import_release")
MIRRORED_2 = ("--strategy=mirrored", "--num_cpu_devices=2")


def _required(cli_name, tmp):
  """The flags a CLI cannot parse without (each naming something that exists)."""
  return {"finetune": [f"--dataset=jsonl:{tmp}/q.jsonl"],
          "evaluate": [f"--dataset=jsonl:{tmp}/q.jsonl"],
          "convert_checkpoint": ["--format=hf", f"--input={tmp}", f"--output_dir={tmp}/out"],
          "data_service_worker": ["--worker_port=5051", "--dispatcher_address=localhost:5050"],
          "import_release": [f"--blocks={tmp}/blocks.tfr", f"--titles={tmp}/titles.tfr",
                             f"--embedder={tmp}/embedder"],
          }.get(cli_name, [])


# (cli, bad flags, what the one error line names). Each row fails on its own: the other flags
# keep their (valid) defaults.
ROWS = [
    ("pretrain", ["--batch_size=0"], "--batch_size must be a positive number, got 0"),
    ("pretrain", ["--num_train_steps=-1"], "--num_train_steps must be 0 or more"),
    ("pretrain", ["--ict_steps=-5"], "--ict_steps"),
    ("pretrain", ["--heldout_fraction=1"], "--heldout_fraction must be a fraction in [0, 1)"),
    ("pretrain", ["--realm_query_fraction=-0.1"], "--realm_query_fraction"),
    ("pretrain", ["--projection_dropout=1.0"], "--projection_dropout"),
    ("pretrain", ["--reader_warmup_distractor_rate=1.5"], "--reader_warmup_distractor_rate"),
    ("pretrain", ["--min_recall=1.01"], "--min_recall must be a probability in [0, 1]"),
    ("pretrain", ["--num_candidates=1"], "--num_candidates must be 2 or more"),
    ("pretrain", ["--learning_rate=0"], "--learning_rate"),
    ("pretrain", ["--refresh_every_steps=0"], "--refresh_every_steps"),
    ("pretrain", ["--checkpoint_every=-1"], "--checkpoint_every"),
    ("pretrain", ["--projection_size=0"], "--projection_size"),
    ("pretrain", ["--query_length=600"], "--query_length=600 exceeds the 512 positions"),
    ("pretrain", ["--block_length=513"], "--block_length=513 exceeds the 512 positions"),
    ("pretrain", ["--query_length=256", "--block_length=288"],
     "--query_length=256 + --block_length=288 exceeds the 512 positions"),
    ("pretrain", ["--batch_size=3", *MIRRORED_2],
     "--batch_size=3 is not divisible by the 2 replicas"),
    ("pretrain", ["--ict_batch_size=63", *MIRRORED_2], "--ict_batch_size=63 is not divisible"),
    ("pretrain", ["--reader_warmup_batch_size=15", *MIRRORED_2],
     "--reader_warmup_batch_size=15 is not divisible"),
    ("pretrain", ["--num_cpu_devices=0"], "--num_cpu_devices"),
    ("ict", ["--batch_size=0"], "--batch_size"),
    ("ict", ["--num_train_steps=0"], "--num_train_steps"),
    ("ict", ["--query_length=513"], "--query_length=513 exceeds"),
    ("ict", ["--block_length=1000"], "--block_length=1000 exceeds"),
    ("ict", ["--batch_size=33", *MIRRORED_2], "--batch_size=33 is not divisible by the 2"),
    ("ict", ["--remove_sentence_rate=2"], "--remove_sentence_rate"),
    ("ict", ["--heldout_fraction=1"], "--heldout_fraction"),
    ("build_corpus", ["--block_length=0"], "--block_length"),
    ("build_corpus", ["--num_shards=0"], "--num_shards"),
    ("build_corpus", ["--max_document_bytes=-1"], "--max_document_bytes"),
    ("build_corpus", ["--block_length=30"], "--block_length=30 leaves no body"),
    ("annotate_corpus", ["--batch_size=0"], "--batch_size"),
    ("annotate_corpus", ["--num_shards=-1"], "--num_shards"),
    ("refresh_index", ["--batch_size=0"], "--batch_size"),
    ("refresh_index", ["--keep=0"], "--keep"),
    ("refresh_index", ["--min_recall=2"], "--min_recall"),
    ("refresh_index", ["--num_shards=2", "--shard_index=2"],
     "--shard_index=2 must be less than --num_shards=2"),
    ("refresh_index", ["--poll_min_seconds=10", "--poll_max_seconds=5"],
     "--poll_min_seconds=10.0 must be at most --poll_max_seconds=5.0"),
    ("refresh_index", ["--scann_num_leaves=10", "--scann_leaves_to_search=20"],
     "--scann_leaves_to_search=20 must be at most --scann_num_leaves=10"),
    ("watch_recall", ["--eval_queries=0"], "--eval_queries"),
    ("watch_recall", ["--min_poll_seconds=5", "--max_poll_seconds=1"], "--min_poll_seconds"),
    ("data_service_worker", ["--worker_port=70000"], "--worker_port must be a port number"),
    ("finetune", ["--batch_size=3", *MIRRORED_2], "--batch_size=3 is not divisible by the 2"),
    ("finetune", ["--batch_size=0"], "--batch_size"),
    ("finetune", ["--num_train_steps=0"], "--num_train_steps"),
    ("finetune", ["--learning_rate=-1"], "--learning_rate"),
    ("finetune", ["--retriever_lr_multiplier=-0.5"], "--retriever_lr_multiplier"),
    ("finetune", ["--reader_seq_length=600"], "--reader_seq_length=600 exceeds the 512"),
    ("finetune", ["--reader_query_length=160"],
     "--reader_query_length=160 must be less than --reader_seq_length=160"),
    ("finetune", ["--reader_beam_size=300"],
     "--reader_beam_size=300 must be at most --retriever_beam_size=256"),
    ("finetune", ["--max_span_width=0"], "--max_span_width"),
    ("evaluate", ["--batch_size=0"], "--batch_size"),
    ("evaluate", ["--max_examples=0"], "--max_examples"),
    ("export", ["--num_answers=30"], "--num_answers=30 must be at most --max_candidates=20"),
    ("export", ["--searcher_k=0"], "--searcher_k"),
    ("export", ["--version=0"], "--version"),
    ("convert_checkpoint", ["--num_attention_heads=0"], "--num_attention_heads"),
    ("convert_checkpoint", ["--span_hidden_size=-1"], "--span_hidden_size"),
    ("model_server", ["--port=70000"], "--port must be a port number in [0, 65535]"),
    ("model_server", ["--grpc_max_workers=0"], "--grpc_max_workers"),
    ("model_server", ["--max_string_bytes=-1"], "--max_string_bytes"),
    ("model_client", ["--timeout=0"], "--timeout"),
    ("model_client", ["--max_evidence=0"], "--max_evidence"),
    ("import_release", ["--num_shards=-1"], "--num_shards must be 0 or more"),
    ("import_release", ["--query_length=0"], "--query_length"),
    ("import_release", ["--rows_per_slice=0"], "--rows_per_slice"),
    ("import_release", ["--scann_num_leaves=10", "--scann_num_leaves_to_search=20"],
     "--scann_num_leaves_to_search=20 must be at most --scann_num_leaves=10"),
]

# Values at the edge of a range, and zeros that a help text gives a meaning: accepted.
GOOD_ROWS = [
    ("pretrain", ["--num_train_steps=0", "--ict_steps=0", "--reader_warmup_steps=0",
                  "--heldout_fraction=0", "--min_recall=1", "--null_bias_learning_rate=0",
                  "--query_length=224", "--block_length=288", "--batch_size=4", *MIRRORED_2]),
    ("pretrain", ["--batch_size=3", "--strategy=mirrored"]),  # GPUs unknown: checked at start
    ("finetune", ["--batch_size=4", *MIRRORED_2, "--reader_seq_length=512"]),
    ("model_server", ["--port=0", "--max_batch_size=0", "--file_system_poll_wait_seconds=0"]),
    ("refresh_index", ["--num_shards=2", "--shard_index=1"]),
]


@pytest.fixture(scope="module")
def tmp(tmp_path_factory):
  """A folder with a question file (the --dataset flags check that it exists)."""
  path = tmp_path_factory.mktemp("cli_bad_values")
  (path / "q.jsonl").write_text('{"question": "who?", "answers": ["me"]}\n')
  return str(path)


def _flag_values(cli_name):
  fv = flags.FlagValues()
  importlib.import_module(f"realm_tf.launch.{cli_name}").define_flags(fv)
  return fv


@pytest.mark.parametrize("cli_name", CLIS)
def test_every_numeric_flag_has_a_range_and_the_defaults_pass(cli_name, tmp):
  fv = _flag_values(cli_name)
  assert validators.unranged(fv) == []
  fv([cli_name, *_required(cli_name, tmp)])


@pytest.mark.parametrize("cli_name,argv,needle", ROWS,
                         ids=[f"{c}:{' '.join(a)}" for c, a, _ in ROWS])
def test_bad_value_is_refused_while_parsing(cli_name, argv, needle, tmp):
  fv = _flag_values(cli_name)
  with pytest.raises(flags.IllegalFlagValueError) as info:
    fv([cli_name, *_required(cli_name, tmp), *argv])
  message = command_line._flag_error_message(info.value)  # the text after `error: `
  assert needle in message, message
  assert "\n" not in message and not message.startswith("flag")


@pytest.mark.parametrize("cli_name,argv", GOOD_ROWS, ids=[c for c, _ in GOOD_ROWS])
def test_edge_values_are_accepted(cli_name, argv, tmp):
  _flag_values(cli_name)([cli_name, *_required(cli_name, tmp), *argv])


@pytest.mark.parametrize("cli_name,flag_file", [
    ("pretrain", "demo_cpu.flags"), ("pretrain", "tiny_ict_cpu.flags"),
    ("pretrain", "paper_tpu.flags"), ("finetune", "finetune_cpu.flags")])
def test_shipped_flag_files_pass(cli_name, flag_file, tmp):
  path = os.path.join(cli_testing.ROOT, "launch", "configs", flag_file)
  _flag_values(cli_name)([cli_name, *_required(cli_name, tmp), f"--flagfile={path}"])


def test_replicas_unknown_while_parsing_are_checked_with_the_same_line():
  fv = _flag_values("ict")
  fv(["ict", "--batch_size=6", "--strategy=mirrored"])  # over GPUs: unknown while parsing
  validators.check_replicas(fv, ["batch_size"], 3)
  with pytest.raises(app.UsageError, match=r"^--batch_size=6 is not divisible by the 4 replicas"):
    validators.check_replicas(fv, ["batch_size"], 4)


# One subprocess per CLI: the program as users run it. (cli, flags; work_dir: whether the row
# runs against an empty --work_dir that must stay empty.)
SUBPROCESS_ROWS = [
    ("pretrain", ["--batch_size=0"], "--batch_size"),
    ("finetune", ["--batch_size=3", *MIRRORED_2], "is not divisible by the 2 replicas"),
    ("ict", ["--query_length=600"], "--query_length=600"),
    ("build_corpus", ["--num_shards=0"], "--num_shards"),
    ("annotate_corpus", ["--batch_size=-3"], "--batch_size"),
    ("refresh_index", ["--num_shards=2", "--shard_index=5"], "--shard_index=5"),
    ("watch_recall", ["--eval_queries=0"], "--eval_queries"),
    ("data_service_worker", ["--worker_port=-1"], "--worker_port"),
    ("evaluate", ["--batch_size=0"], "--batch_size"),
    ("export", ["--num_answers=30"], "--num_answers=30"),
    ("convert_checkpoint", ["--span_hidden_size=0"], "--span_hidden_size"),
    ("model_server", ["--port=70000"], "--port"),
    ("model_client", ["--timeout=-1"], "--timeout"),
    ("import_release", ["--batch_size=0"], "--batch_size"),
]
_NO_WORK_DIR = ("data_service_worker", "convert_checkpoint", "model_client")


def _run_rows(rows, tmp, workers):
  """Runs each row's CLI (side by side) against its own empty work dir; asserts one error line,
  exit status 2, no traceback, and the work dir still empty."""
  runs = {}
  for cli_name, argv, needle in rows:
    work_dir = os.path.join(tmp, f"work_{cli_name}")
    os.makedirs(work_dir)
    extra = [] if cli_name in _NO_WORK_DIR else [f"--work_dir={work_dir}"]
    runs[cli_name] = (work_dir, needle, [*_required(cli_name, tmp), *extra, *argv])
  with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
    procs = {name: pool.submit(cli_testing.run_cli, f"realm_tf.launch.{name}", *args,
                               timeout=240)
             for name, (_, _, args) in runs.items()}
  for name, (work_dir, needle, _) in runs.items():
    cli_testing.assert_one_line_error(procs[name].result(), needle)
    assert os.listdir(work_dir) == [], name


def test_the_reviewers_two_cases_print_one_line_and_write_nothing(tmp_path):
  """pretrain --batch_size=0 (it used to build the corpus and start embedding) and finetune
  --batch_size=3 over 2 replicas (it used to end in a traceback, exit status 1)."""
  (tmp_path / "q.jsonl").write_text('{"question": "who?", "answers": ["me"]}\n')
  _run_rows([row for row in SUBPROCESS_ROWS if row[0] in ("pretrain", "finetune")],
            str(tmp_path), workers=2)


@pytest.mark.slow
def test_each_cli_prints_one_line_exits_2_and_writes_nothing(tmp_path):
  """Every CLI as users run it (a TensorFlow import each: ~5 s apiece on an idle machine)."""
  (tmp_path / "q.jsonl").write_text('{"question": "who?", "answers": ["me"]}\n')
  _run_rows(SUBPROCESS_ROWS, str(tmp_path), workers=4)
  assert not os.path.exists(os.path.join(tmp_path, "out"))  # convert_checkpoint's --output_dir
