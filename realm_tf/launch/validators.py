"""Flag validators the CLIs share: refuse a bad value while the flags are parsed, before any work.

absl runs a validator when its flag is parsed; a refusal becomes the program's one line
`error: ...` with exit status 2 (`command_line.parse_flags`). Each check here is cheap (names, numbers and
file existence; nothing is loaded), so a typo costs the user seconds, not a stage of work.

Numbers: every integer and float flag of every CLI has a range (`register_ranges`, called last in
each `define_flags`): RANGES by flag name (a name means the same in every CLI), a CLI's own
`overrides` where its flag is documented otherwise (pretrain's `--num_train_steps=0` prepares
only); a name in neither takes the range of its shape (`num_*`, `*_size`, ...: PATTERN_RANGES), and
`unranged` lists any numeric flag still without one (the CLI tests assert there is none). Flags that constrain each other (a batch divisible by the replicas, lengths
that fit an encoder's positions, a minimum below its maximum) are `register_multi` checks.

Replicas: the batch sizes of the training CLIs must divide among the replicas. Where the
distribution flags say how many there are (`--strategy=mirrored --num_cpu_devices=N`: N;
`default` / `one_device`: 1) it is checked as the flags are parsed; otherwise (GPUs, TPUs,
several workers) `check_replicas` checks it as the program's first step, once the strategy
exists and before anything is written, with the same one-line error.
"""
import math
from typing import Callable, Dict, Iterable, Mapping, Optional, Sequence, Tuple

from absl import app
from absl import flags


def register(flag_values, **checks) -> None:
  """Registers {flag name: check} on `flag_values` (each check from the functions below)."""
  for name, check in checks.items():
    flags.register_validator(name, check, flag_values=flag_values)


def dataset(flag: str = "--dataset", need_answers: bool = False):
  """Refuses a --dataset that is neither a known name nor a question file (jsonl:, dpr_qa:,
  beir:) that exists; with `need_answers` (fine-tuning), also questions without answers (BEIR)."""

  def check(value):
    if value is None:
      return True  # unset (a required flag's absence is absl's to report)
    from realm_tf.openqa import datasets  # pylint: disable=g-import-not-at-top
    try:
      datasets.check_question_files(value, flag, need_answers)
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


# ---------------------------------------------------------------------------------------------
# Numeric ranges.


class Range:
  """An allowed interval of a numeric flag: [low, high] with either end open or absent.

  `describe` is how the refusal says it ("a positive integer", "in [0, 1)"). None (an unset flag
  whose value the program derives) always passes.
  """

  def __init__(self, describe: str, low: Optional[float] = None, high: Optional[float] = None,
               low_open: bool = False, high_open: bool = False):
    self.describe, self.low, self.high = describe, low, high
    self.low_open, self.high_open = low_open, high_open

  def contains(self, value) -> bool:
    """Whether `value` (a number, or None) is allowed."""
    if value is None:
      return True
    if isinstance(value, float) and math.isnan(value):
      return False
    if self.low is not None and (value <= self.low if self.low_open else value < self.low):
      return False
    if self.high is not None and (value >= self.high if self.high_open else value > self.high):
      return False
    return True


POSITIVE = Range("a positive number", low=0, low_open=True)
NON_NEGATIVE = Range("0 or more", low=0)
FRACTION = Range("a fraction in [0, 1)", low=0, high=1, high_open=True)
PROBABILITY = Range("a probability in [0, 1]", low=0, high=1)
PORT = Range("a port number in [0, 65535]", low=0, high=65535)
ANY = Range("any number")
AT_LEAST_2 = Range("2 or more", low=2)

# Every numeric flag of every CLI, by name: its range. Sizes, counts, lengths, steps between
# events, rates and durations are positive unless their help text gives 0 a meaning.
RANGES: Dict[str, Range] = {
    # batch sizes, lengths, widths, counts
    **{name: POSITIVE for name in (
        "batch_size", "ict_batch_size", "reader_warmup_batch_size", "block_length",
        "query_length", "max_title_length", "reader_seq_length", "reader_query_length",
        "projection_size", "span_hidden_size", "num_attention_heads", "max_span_width",
        "reader_beam_size", "train_reader_beam_size", "retriever_beam_size", "num_shards", "max_records_per_shard",
        "max_document_bytes", "keep", "recall_queries", "eval_queries", "heldout_queries",
        "num_eval_questions", "max_train_examples", "max_examples", "max_candidates",
        "num_answers", "searcher_k", "max_evidence", "snippet_chars", "grpc_max_workers",
        "max_receive_message_bytes", "max_send_message_bytes", "num_cpu_devices",
        "scann_dimensions_per_block", "scann_leaves_to_search", "scann_num_leaves",
        "scann_reorder", "scann_training_sample_size", "scann_num_leaves_to_search",
        "shuffle_window")},
    # steps: a run's length, and the steps between checkpoints, exports, refreshes, log lines
    **{name: POSITIVE for name in (
        "num_train_steps", "checkpoint_every", "refresh_every_steps", "export_every_steps",
        "log_every")},
    **{name: NON_NEGATIVE for name in ("warmup_steps", "ict_steps", "reader_warmup_steps")},
    # learning rates and multipliers
    **{name: POSITIVE for name in (
        "learning_rate", "ict_learning_rate", "reader_warmup_learning_rate",
        "retrieval_score_scale")},
    "null_bias_learning_rate": NON_NEGATIVE,   # 0: no null-document bias
    "retriever_lr_multiplier": NON_NEGATIVE,   # 0: the query tower / retriever does not move
    # shares of the data and probabilities
    **{name: FRACTION for name in ("heldout_fraction", "realm_query_fraction",
                                   "projection_dropout")},
    **{name: PROBABILITY for name in ("min_recall", "remove_sentence_rate",
                                      "reader_warmup_remove_rate",
                                      "reader_warmup_distractor_rate")},
    # seconds
    **{name: POSITIVE for name in ("poll_min_seconds", "poll_max_seconds", "min_poll_seconds",
                                   "max_poll_seconds", "part_wait_timeout", "timeout")},
    **{name: NON_NEGATIVE for name in ("grace_seconds", "final_wait_seconds",
                                       "shutdown_grace_seconds",
                                       "file_system_poll_wait_seconds")},  # 0: scan at start only
    # zero meaning "none" / "no limit" / "the first"
    **{name: NON_NEGATIVE for name in ("max_batch_size", "max_string_bytes",
                                       "max_num_load_retries", "shard_index", "seed",
                                       "scann_brute_force_below", "scann_tree_above")},
    # identifiers
    **{name: POSITIVE for name in ("version", "model_version", "wait_pid")},
    **{name: PORT for name in ("port", "dispatcher_port", "worker_port")},
    # ScaNN's anisotropic-quantization threshold is a dot-product level (may be negative).
    "scann_aq_threshold": ANY,
    # candidates per query: the null document and at least one retrieved block
    "num_candidates": AT_LEAST_2,
}


def _numeric_flags(flag_values) -> Iterable[str]:
  """The names of `flag_values`' integer and float flags (deprecated aliases excluded: they set
  the flag they stand for, whose range applies)."""
  for name in sorted(flag_values):
    flag = flag_values[name]
    if getattr(flag, "deprecated_for", None) or flag.name != name:
      continue
    if flag.flag_type() in ("int", "float"):
      yield name


def _range_check(name: str, allowed: Range) -> Callable:
  def check(value):
    if allowed.contains(value):
      return True
    raise flags.ValidationError(f"--{name} must be {allowed.describe}, got {value}.")
  check.allowed = allowed  # what `unranged` looks for
  return check


# A numeric flag named in neither RANGES nor a CLI's overrides: by the shape of its name.
PATTERN_RANGES: Tuple[Tuple[str, Range], ...] = (
    ("num_", POSITIVE), ("max_", POSITIVE), ("_size", POSITIVE), ("_length", POSITIVE),
    ("_steps", POSITIVE), ("_every", POSITIVE), ("_seconds", NON_NEGATIVE),
    ("_fraction", FRACTION), ("_rate", PROBABILITY))


def range_of(name: str, overrides: Optional[Mapping[str, Range]] = None) -> Optional[Range]:
  """The range of the numeric flag `name`: the CLI's override, RANGES, else by the shape of the
  name (PATTERN_RANGES: a prefix `num_`/`max_` or a suffix); None when nothing says."""
  if overrides and name in overrides:
    return overrides[name]
  if name in RANGES:
    return RANGES[name]
  for part, allowed in PATTERN_RANGES:
    if name.startswith(part) if part.endswith("_") else name.endswith(part):
      return allowed
  return None


def unranged(flag_values):
  """The numeric flags of `flag_values` without a range check (`register_ranges` found no range
  for them, or was not called); the CLI tests keep this empty."""
  return [name for name in _numeric_flags(flag_values)
          if not any(getattr(v.checker, "allowed", None)
                     for v in getattr(flag_values[name], "validators", ()))]


def register_ranges(flag_values, overrides: Optional[Mapping[str, Range]] = None) -> None:
  """Registers a range check (`range_of`) on every integer and float flag of `flag_values`.

  `overrides` gives this CLI's own meaning of a name (a ValueError if it names no flag). A
  numeric flag no range applies to is left unchecked here and listed by `unranged`, which the
  CLI tests assert is empty.
  """
  overrides = dict(overrides or {})
  unknown = sorted(set(overrides) - set(flag_values))
  if unknown:
    raise ValueError(f"Range overrides for undefined flags: {unknown}.")
  for name in _numeric_flags(flag_values):
    allowed = range_of(name, overrides)
    if allowed is not None:
      flags.register_validator(name, _range_check(name, allowed), flag_values=flag_values)


# ---------------------------------------------------------------------------------------------
# Checks across flags.


def register_multi(flag_values, names: Sequence[str], check: Callable[[Dict], Optional[str]]):
  """Registers `check({name: value})` over `names`: it returns None when the values agree, else
  the refusal (a sentence naming the flags)."""

  def validate(values):
    message = check(values)
    if message:
      raise flags.ValidationError(message)
    return True

  flags.register_multi_flags_validator(list(names), validate, flag_values=flag_values)


def at_most(small: str, large: str, strict: bool = False):
  """A `register_multi` check: --small <= --large (< with `strict`); passes while either is
  unset."""

  def check(values):
    a, b = values[small], values[large]
    if a is None or b is None or (a < b if strict else a <= b):
      return None
    return f"--{small}={a} must be {'less than' if strict else 'at most'} --{large}={b}."
  return check


def parse_time_replicas(values: Mapping) -> Optional[int]:
  """How many replicas the distribution flags' values name, where that is known before TF
  starts: 1 for --strategy=default / one_device, N for mirrored with --num_cpu_devices=N; None
  for a TPU, several workers, or mirrored over the machine's GPUs (`check_replicas` then runs
  once the strategy exists)."""
  if values.get("tpu") or values.get("strategy") in ("tpu", "multi_worker_mirrored"):
    return None
  if values.get("strategy") == "mirrored":
    return values.get("num_cpu_devices") or None
  return 1


def _not_divisible(values: Mapping, batch_flags: Sequence[str], replicas: int) -> Optional[str]:
  for name in batch_flags:
    value = values.get(name)
    if value and replicas and value % replicas:
      return (f"--{name}={value} is not divisible by the {replicas} replicas "
              "(every replica takes the same share of a global batch).")
  return None


_DISTRIBUTION_FLAGS = ("tpu", "strategy", "num_cpu_devices")


def register_replica_batches(flag_values, batch_flags: Sequence[str]) -> None:
  """Refuses a global batch size (`batch_flags`) that does not divide among the replicas the
  distribution flags name, when they name them (`parse_time_replicas`)."""

  def check(values):
    replicas = parse_time_replicas(values)
    return _not_divisible(values, batch_flags, replicas) if replicas else None

  register_multi(flag_values, [*_DISTRIBUTION_FLAGS, *batch_flags], check)


def check_replicas(flag_values, batch_flags: Sequence[str], replicas: int) -> None:
  """The replica check for a strategy built (GPUs, TPUs, several workers): raises
  `app.UsageError` (the CLI's one-line error, exit status 2) when a batch flag's value does not
  divide among `replicas`. Call it first, before anything is written."""
  message = _not_divisible({name: flag_values[name].value for name in batch_flags}, batch_flags,
                           replicas)
  if message:
    raise app.UsageError(message)


def encoder_max_positions(preset: str, init: Optional[str] = None) -> Tuple[int, str]:
  """(max positions, what they are of) of the encoder a CLI builds: the local HF BERT directory
  `init` names when it is one (its config.json says), else the preset's. Reads one small local
  JSON file at most (a remote `init` is not read while parsing)."""
  import os  # pylint: disable=g-import-not-at-top
  from realm_tf.modeling import encoder_config  # pylint: disable=g-import-not-at-top
  if init and "://" not in init:
    from realm_tf.training import warm_start as warm_start_lib  # pylint: disable=g-import-not-at-top
    try:
      path = warm_start_lib.resolve_source(init)
      if (os.path.isfile(os.path.join(path, "config.json"))
          and warm_start_lib.source_kind(path) == "hf"):
        from realm_tf.checkpoints import hf_bert  # pylint: disable=g-import-not-at-top
        return hf_bert.load_hf_config(path).max_position_embeddings, init
    except (ValueError, OSError):  # WarmStartError, a bad config.json: the warm start's to say
      pass
  return encoder_config.get_encoder_config(preset).max_position_embeddings, f"preset {preset}"


def register_fits_encoder(flag_values, length_flags: Sequence[str], preset_flag: str,
                          init_flag: Optional[str] = None, extra: int = 0) -> None:
  """Refuses lengths (`length_flags`, summed, + `extra` positions) beyond the position
  embeddings of the encoder that `preset_flag` (or the HF BERT directory `init_flag` names)
  builds; passes while any length is unset (the program derives it)."""
  names = [*length_flags, preset_flag, *([init_flag] if init_flag else [])]

  def check(values):
    lengths = [values[name] for name in length_flags]
    if any(v is None for v in lengths):
      return None
    limit, source = encoder_max_positions(values[preset_flag],
                                          values[init_flag] if init_flag else None)
    if sum(lengths) + extra <= limit:
      return None
    said = " + ".join(f"--{n}={v}" for n, v in zip(length_flags, lengths))
    return (f"{said}{f' + {extra}' if extra else ''} exceeds the {limit} positions of the "
            f"encoder ({source}).")

  register_multi(flag_values, names, check)
