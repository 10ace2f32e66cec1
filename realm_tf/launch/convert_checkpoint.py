r"""Converts a Hugging Face or TF1 (BERT / REALM / ORQA) checkpoint into a TF2 object checkpoint.

Examples:
  python -m realm_tf.launch.convert_checkpoint --format=hf \
      --input=.venv/share/realm_tf/minilm --output_dir=/tmp/minilm_retriever --target=retriever
  python -m realm_tf.launch.convert_checkpoint --format=tf1 \
      --input=cc_news_pretrained/embedder --output_dir=/tmp/realm_embedder --target=retriever
  python -m realm_tf.launch.convert_checkpoint --format=tf1 \
      --input=orqa_nq_model_from_realm/export/best_default/checkpoint/model.ckpt-NNN \
      --output_dir=/tmp/orqa_reader --target=reader --num_attention_heads=12
  python -m realm_tf.launch.convert_checkpoint --format=tf1 --target=openqa \
      --input=orqa_nq_model_from_realm/export/best_default/checkpoint/model.ckpt-NNN \
      --work_dir=runs/realm_release --output_dir=runs/realm_release/finetune_nq

Writes `<output_dir>/ckpt.*` (tf.train.Checkpoint) and `<output_dir>/realm_config.json`; the
directory appears atomically and only when every variable matched (see
realm_tf/checkpoints/convert.py for the checkpoint keys). `--target=openqa` writes a fine-tuning
model dir (`config.json` + `checkpoints/`) that evaluate, export and the model server take.
"""
from absl import flags
from absl import logging

from realm_tf.utils import command_line  # first: quiets TensorFlow before convert imports it
from realm_tf.checkpoints import convert  # pylint: disable=g-bad-import-order
from realm_tf.release import orqa_model  # pylint: disable=g-bad-import-order

HELP = {
    "format": "Source format.",
    "input": "HF model directory, or TF1 checkpoint prefix / directory / TF-Hub module "
             "directory.",
    "output_dir": "Directory to publish (must not exist unless --overwrite).",
    "target": "Which model to build.",
    "preset": "Encoder preset instead of the source's config.",
    "num_attention_heads": "Attention heads (TF1 sources without a bert_config.json; default "
                           "hidden/64).",
    "doc_input": "TF1 retriever: document tower checkpoint (e.g. the pre-trained embedder for an "
                 "ORQA model). Default: --input.",
    "tf1_prefix": "TF1: scope before 'bert/' when the checkpoint holds several BERTs (e.g. "
                  "'reader/module/').",
    "span_hidden_size": "Reader span MLP size for sources without one (default 256, ORQA's).",
    "work_dir": "--target=openqa: the work dir of an imported release (its index/ and corpus/).",
    "index_dir": "--target=openqa: the index bundles (default <work_dir>/index).",
    "corpus_dir": "--target=openqa: the corpus (default <work_dir>/corpus).",
    "overwrite": "Replace an existing --output_dir.",
}


def define_flags(flag_values=flags.FLAGS):
  """Defines this program's flags: one per `convert.ConvertConfig` field.

  Called from `__main__` only (and by tests on a fresh FlagValues), so importing this module
  defines no flag.
  """
  from realm_tf.launch import config_flags  # pylint: disable=g-import-not-at-top
  from realm_tf.modeling.encoder_config import PRESETS  # pylint: disable=g-import-not-at-top
  config_flags.define_config_flags(
      convert.ConvertConfig, HELP, required=("format", "input", "output_dir"),
      choices={"format": convert.FORMATS, "target": convert.TARGETS, "preset": sorted(PRESETS)},
      flag_values=flag_values)
  from realm_tf.launch import validators  # pylint: disable=g-import-not-at-top
  validators.register_ranges(flag_values)


def config_from_flags(flag_values=flags.FLAGS) -> convert.ConvertConfig:
  """The ConvertConfig the parsed flags describe."""
  from realm_tf.launch import config_flags  # pylint: disable=g-import-not-at-top
  return config_flags.config_from_flags(convert.ConvertConfig, flag_values)


def main(argv):
  """Converts the checkpoint the flags name and prints what was written."""
  del argv
  config = config_from_flags()
  # The released open-QA models convert with their index (realm_tf/release); the rest are weights.
  run = orqa_model.run if config.target == "openqa" else convert.run
  result = run(config)
  logging.info("Wrote %s", result.checkpoint_path)
  print(f"Converted {result.config['num_source_variables_used']} variables into "
        f"{result.output_dir} (target={result.config['target']}, keys="
        f"{result.config['checkpoint_keys']}, fresh={result.config['fresh']})")


if __name__ == "__main__":
  define_flags()
  command_line.run(main)
