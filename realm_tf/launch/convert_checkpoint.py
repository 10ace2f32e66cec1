r"""Converts a Hugging Face or TF1 (BERT / REALM / ORQA) checkpoint into a TF2 object checkpoint.

Examples:
  python -m realm_tf.launch.convert_checkpoint --format=hf \
      --input=.venv/share/realm_tf/minilm --output_dir=/tmp/minilm_retriever --target=retriever
  python -m realm_tf.launch.convert_checkpoint --format=tf1 \
      --input=cc_news_pretrained/embedder --output_dir=/tmp/realm_embedder --target=retriever
  python -m realm_tf.launch.convert_checkpoint --format=tf1 \
      --input=orqa_nq_model_from_realm/export/best_default/checkpoint/model.ckpt-NNN \
      --output_dir=/tmp/orqa_reader --target=reader --num_attention_heads=12

Writes `<output_dir>/ckpt.*` (tf.train.Checkpoint) and `<output_dir>/realm_config.json`; the
directory appears atomically and only when every variable matched (see
realm_tf/checkpoints/convert.py for the checkpoint keys).
"""
from absl import flags
from absl import logging

from realm_tf.launch import cli  # first: quiets TensorFlow before convert imports it
from realm_tf.checkpoints import convert  # pylint: disable=g-bad-import-order

FLAGS = flags.FLAGS


def define_flags(flag_values=flags.FLAGS):
  """Defines this program's flags: the arguments of `convert.convert_checkpoint` (which takes no
  config dataclass, so they are written by hand).

  Called from `__main__` only (and by tests on a fresh FlagValues), so importing this module
  defines no flag.
  """
  fv = flag_values
  flags.DEFINE_enum("format", None, list(convert.FORMATS), "Source format.", flag_values=fv)
  flags.DEFINE_string("input", None, "HF model directory, or TF1 checkpoint prefix / directory / "
                      "TF-Hub module directory.", flag_values=fv)
  flags.DEFINE_string("output_dir", None, "Directory to publish (must not exist unless "
                      "--overwrite).", flag_values=fv)
  flags.DEFINE_enum("target", "encoder", list(convert.TARGETS), "Which model to build.",
                    flag_values=fv)
  flags.DEFINE_string("preset", None, "Encoder preset (tiny/mini/minilm/base) instead of the "
                      "source's config.", flag_values=fv)
  flags.DEFINE_integer("num_attention_heads", None, "Attention heads (TF1 sources without a "
                       "bert_config.json; default hidden/64).", flag_values=fv)
  flags.DEFINE_string("doc_input", None, "TF1 retriever: document tower checkpoint (e.g. the "
                      "pre-trained embedder for an ORQA model). Default: --input.", flag_values=fv)
  flags.DEFINE_string("tf1_prefix", None, "TF1: scope before 'bert/' when the checkpoint holds "
                      "several BERTs (e.g. 'reader/module/').", flag_values=fv)
  flags.DEFINE_integer("span_hidden_size", None, "Reader span MLP size for sources without one "
                       "(default 256, ORQA's).", flag_values=fv)
  flags.DEFINE_bool("overwrite", False, "Replace an existing --output_dir.", flag_values=fv)
  flags.mark_flags_as_required(["format", "input", "output_dir"], flag_values=fv)


def main(argv):
  """Converts the checkpoint the flags name and prints what was written."""
  del argv
  result = convert.convert_checkpoint(
      FLAGS.format, FLAGS.input, FLAGS.output_dir, FLAGS.target, preset=FLAGS.preset,
      num_attention_heads=FLAGS.num_attention_heads, doc_input=FLAGS.doc_input,
      tf1_prefix=FLAGS.tf1_prefix, span_hidden_size=FLAGS.span_hidden_size,
      overwrite=FLAGS.overwrite)
  logging.info("Wrote %s", result.checkpoint_path)
  print(f"Converted {result.config['num_source_variables_used']} variables into "
        f"{result.output_dir} (target={result.config['target']}, keys="
        f"{result.config['checkpoint_keys']}, fresh={result.config['fresh']})")


if __name__ == "__main__":
  define_flags()
  cli.run(main)
