"""Flag validators the CLIs share: refuse a bad value while the flags are parsed, before any work.

absl runs a validator when its flag is parsed; a refusal becomes the program's one line
`error: ...` with exit status 2 (`cli.parse_flags`). Each check here is cheap (names and file
existence; nothing is loaded), so a typo costs the user seconds, not a stage of work.
"""
from absl import flags


def register(flag_values, **checks) -> None:
  """Registers {flag name: check} on `flag_values` (each check from the functions below)."""
  for name, check in checks.items():
    flags.register_validator(name, check, flag_values=flag_values)


def dataset(flag: str = "--dataset"):
  """Refuses a --dataset that is neither a known name nor a question file (jsonl:, dpr_qa:,
  beir:) that exists."""

  def check(value):
    if value is None:
      return True  # unset (a required flag's absence is absl's to report)
    from realm_tf.openqa import datasets  # pylint: disable=g-import-not-at-top
    try:
      datasets.check_question_files(value, flag)
    except datasets.DatasetError as e:
      raise flags.ValidationError(str(e)) from None
    return True
  return check


def warm_start(flag: str):
  """Refuses a warm-start source (`minilm`, an HF BERT directory, a TF1 or converted checkpoint,
  an embedder export, a training model_dir) that is none of those; unset or empty passes."""

  def check(value):
    if not value:
      return True
    from realm_tf.training import warm_start as warm_start_lib  # pylint: disable=g-import-not-at-top
    try:
      warm_start_lib.source_kind(value)
    except warm_start_lib.WarmStartError as e:
      raise flags.ValidationError(f"{flag}: {e}") from None
    return True
  return check
