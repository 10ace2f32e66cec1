"""Tests of the shared flag validators: refused values name the flag and the problem."""
import json

import pytest
from absl import app
from absl import flags

from realm_tf.launch import validators


def _flags(tmp_path):
  fv = flags.FlagValues()
  flags.DEFINE_string("dataset", None, "Questions.", flag_values=fv)
  flags.DEFINE_string("init", None, "Initial weights.", flag_values=fv)
  validators.register(fv, dataset=validators.dataset(), init=validators.warm_start("--init"))
  return fv


def test_known_datasets_existing_question_files_and_real_sources_pass(tmp_path):
  questions = tmp_path / "qs.jsonl"
  questions.write_text("{}\n")
  bert = tmp_path / "bert"
  bert.mkdir()
  (bert / "model.safetensors").write_bytes(b"")
  fv = _flags(tmp_path)
  fv(["prog"])  # unset: nothing to check
  for argv in (["--dataset=squad_open", f"--init={bert}"], ["--dataset=nq", "--init=minilm"],
               [f"--dataset=jsonl:{questions}", "--init="]):
    fv(["prog", *argv])


@pytest.mark.parametrize("argv,message", [
    (["--dataset=nope"], "Unknown --dataset 'nope'; choose one of"),
    (["--dataset=jsonl:/no/qs.jsonl"], "--dataset: question file /no/qs.jsonl does not exist"),
    (["--dataset=jsonl:"], "names no file"),
    (["--init=/no/bert"], "--init: Warm-start source /no/bert is none of"),
])
def test_bad_values_are_refused_as_they_are_parsed(tmp_path, argv, message):
  with pytest.raises(flags.IllegalFlagValueError, match=message):
    _flags(tmp_path)(["prog", *argv])


def _numbers():
  fv = flags.FlagValues()
  flags.DEFINE_integer("batch_size", 8, "Global batch.", flag_values=fv)
  flags.DEFINE_integer("num_train_steps", 10, "Steps.", flag_values=fv)
  flags.DEFINE_float("heldout_fraction", 0.1, "Share.", flag_values=fv)
  flags.DEFINE_integer("num_widgets", None, "A new count no table names.", flag_values=fv)
  flags.DEFINE_integer("colour", 3, "A number nothing says anything about.", flag_values=fv)
  return fv


def test_ranges_by_name_by_override_and_by_the_shape_of_the_name():
  assert len(validators.unranged(_numbers())) == 5  # nothing registered yet
  plain = _numbers()
  validators.register_ranges(plain)
  assert validators.unranged(plain) == ["colour"]  # no table, override or name shape says
  overrides = {"num_train_steps": validators.NON_NEGATIVE, "colour": validators.ANY}

  def parse(*argv):
    fv = _numbers()  # fresh: absl keeps the values of an earlier parse
    validators.register_ranges(fv, overrides)
    fv(["prog", *argv])

  parse("--num_train_steps=0", "--heldout_fraction=0", "--colour=-7")  # all allowed
  for argv, message in ((["--batch_size=0"], "--batch_size must be a positive number, got 0"),
                        (["--num_train_steps=-1"], "--num_train_steps must be 0 or more"),
                        (["--heldout_fraction=1"], r"fraction in \[0, 1\), got 1.0"),
                        (["--heldout_fraction=nan"], "--heldout_fraction"),
                        (["--num_widgets=0"], "--num_widgets must be a positive number")):
    with pytest.raises(flags.IllegalFlagValueError, match=message):
      parse(*argv)
  with pytest.raises(ValueError, match="undefined flags"):
    validators.register_ranges(_numbers(), {"no_such_flag": validators.ANY})


def test_a_minimum_above_its_maximum_is_refused_and_unset_values_pass():
  def parse(*argv):
    fv = flags.FlagValues()
    flags.DEFINE_integer("shard_index", 0, "", flag_values=fv)
    flags.DEFINE_integer("num_shards", None, "", flag_values=fv)
    validators.register_multi(fv, ["shard_index", "num_shards"],
                              validators.at_most("shard_index", "num_shards", strict=True))
    fv(["prog", *argv])

  parse("--shard_index=5")  # --num_shards unset: nothing to compare
  parse("--shard_index=1", "--num_shards=2")
  with pytest.raises(flags.IllegalFlagValueError,
                     match="--shard_index=2 must be less than --num_shards=2"):
    parse("--shard_index=2", "--num_shards=2")


@pytest.mark.parametrize("argv,replicas", [
    ([], 1), (["--strategy=mirrored", "--num_cpu_devices=4"], 4),
    (["--strategy=mirrored"], None), (["--tpu=t"], None), (["--num_cpu_devices=4"], 1),
    (["--strategy=multi_worker_mirrored", "--num_cpu_devices=2"], None)])
def test_replicas_known_while_parsing(argv, replicas):
  from realm_tf.launch import distribution_flags  # pylint: disable=g-import-not-at-top
  fv = flags.FlagValues()
  distribution_flags.define_flags(fv, precision=False)
  fv(["prog", *argv])
  assert validators.parse_time_replicas({n: fv[n].value for n in fv}) == replicas


def test_batches_must_divide_among_the_replicas_the_flags_name():
  from realm_tf.launch import distribution_flags  # pylint: disable=g-import-not-at-top

  def parse(*argv):
    fv = flags.FlagValues()  # fresh: absl keeps the values of an earlier parse
    flags.DEFINE_integer("batch_size", 8, "", flag_values=fv)
    distribution_flags.define_flags(fv, precision=False, batch_flags=("batch_size",))
    fv(["prog", *argv])
    return fv

  parse("--batch_size=6", "--strategy=mirrored", "--num_cpu_devices=3")
  parse("--batch_size=7", "--strategy=mirrored")  # over GPUs: checked once the strategy exists
  with pytest.raises(flags.IllegalFlagValueError,
                     match="--batch_size=7 is not divisible by the 2 replicas"):
    parse("--batch_size=7", "--strategy=mirrored", "--num_cpu_devices=2")
  fv = parse("--batch_size=7")
  validators.check_replicas(fv, ["batch_size"], 1)
  with pytest.raises(app.UsageError, match="^--batch_size=7 is not divisible by the 2 replicas"):
    validators.check_replicas(fv, ["batch_size"], 2)


def test_lengths_fit_the_encoder_of_the_preset_or_of_a_local_hf_directory(tmp_path):
  bert = tmp_path / "bert"
  bert.mkdir()
  (bert / "model.safetensors").write_bytes(b"")
  (bert / "config.json").write_text(json.dumps({
      "vocab_size": 100, "hidden_size": 8, "num_hidden_layers": 1, "num_attention_heads": 2,
      "intermediate_size": 16, "max_position_embeddings": 128}))
  fv = flags.FlagValues()
  flags.DEFINE_integer("query_length", None, "", flag_values=fv)
  flags.DEFINE_integer("block_length", None, "", flag_values=fv)
  flags.DEFINE_string("preset", "tiny", "", flag_values=fv)
  flags.DEFINE_string("init", None, "", flag_values=fv)
  validators.register_fits_encoder(fv, ["query_length", "block_length"], "preset", "init")
  fv(["prog", "--query_length=600"])  # the block length unset: derived later
  fv(["prog", "--query_length=224", "--block_length=288"])
  with pytest.raises(flags.IllegalFlagValueError, match=r"--query_length=256 \+ "
                     r"--block_length=288 exceeds the 512 positions of the encoder \(preset tiny"):
    fv(["prog", "--query_length=256", "--block_length=288"])
  with pytest.raises(flags.IllegalFlagValueError, match=f"the 128 positions of the encoder "
                     f"\\({bert}\\)"):
    fv(["prog", "--query_length=64", "--block_length=128", f"--init={bert}"])
  fv(["prog", "--query_length=64", "--block_length=128", "--init=/not/there"])  # the preset's
