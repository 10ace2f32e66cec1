"""Tests of the shared flag validators: refused values name the flag and the problem."""
import pytest
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
