r"""Imports Google's released REALM/ORQA evidence index into a work directory, without
re-embedding: the block corpus (+ block lookup), the query tower and an index bundle over
`block_emb` as it is.

Example (the released files, copied locally with `gsutil -m cp -r`):
  python -m realm_tf.launch.import_release \
      --blocks=enwiki-20181220/blocks.tfr --titles=enwiki-20181220/titles.tfr \
      --embedder=cc_news_pretrained/embedder \
      --embeddings=cc_news_pretrained/embedder/encoded/encoded.ckpt \
      --work_dir=runs/orqa --searcher=scann

Writes `<work_dir>/corpus/`, `<work_dir>/release/` (the query tower's embedder export and
import.json) and `<work_dir>/index/00000001/`; every one appears only when the whole import
succeeded (see realm_tf/release/importer.py and docs/RELEASED_MODELS.md).
"""
import json

from absl import flags

from realm_tf.utils import command_line  # first: quiets TensorFlow before the importer imports it
from realm_tf.release import importer  # pylint: disable=g-bad-import-order

HELP = {
    "blocks": "The released blocks.tfr (uncompressed TFRecord of raw UTF-8 block texts).",
    "titles": "The released titles.tfr (the page title of each block, same rows).",
    "embeddings": "Prefix of the released encoded.ckpt (variable block_emb [N, 128]). Default: "
                  "<embedder>/encoded/encoded.ckpt, where the release keeps it.",
    "embedder": "The TF1 embedder the blocks were embedded with (cc_news_pretrained/embedder: a "
                "TF-Hub module directory, or a checkpoint prefix): the query tower.",
    "work_dir": "Work directory to write corpus/, release/ and index/ into.",
    "searcher": "scann: ORQA's ScaNN settings with the candidates re-scored exactly; exact: "
                "exact top-k (brute force, stock TF ops).",
    "overwrite": "Replace corpus/, release/ and index/ where the work dir already has them.",
    "num_shards": "Corpus shards (consecutive rows); 0: one per 16,384 blocks.",
    "query_length": "The query tower's input length in wordpieces ([CLS] question [SEP]).",
    "block_length": "[CLS] title [SEP] body [SEP] length the blocks were embedded at (288).",
    "num_attention_heads": "Attention heads of the embedder's BERT when it has no "
                           "bert_config.json (default hidden/64).",
    "scann_num_leaves": "ScaNN tree leaves (ORQA: 1000; at most one per 16 rows).",
    "scann_num_leaves_to_search": "ScaNN leaves searched per query (ORQA: 100).",
    "scann_training_sample_size": "Points ScaNN trains its tree and hashing on (ORQA: 100000).",
    "scann_dimensions_per_block": "Asymmetric-hashing dimensions per block (ORQA: 2).",
    "scann_reordering_num_neighbors": "Candidates re-scored with exact inner products; 0: as "
                                      "many as asked for (ORQA's).",
    "batch_size": "Records tokenised per batch.",
    "rows_per_slice": "Rows of block_emb restored at a time.",
}


def define_flags(flag_values=flags.FLAGS):
  """Defines this program's flags: one per `importer.ImportConfig` field (from `__main__`)."""
  from realm_tf.io.work_dir import DEFAULT_ROOT  # pylint: disable=g-import-not-at-top
  from realm_tf.launch import config_flags  # pylint: disable=g-import-not-at-top
  from realm_tf.launch import validators  # pylint: disable=g-import-not-at-top
  config_flags.define_config_flags(
      importer.ImportConfig, HELP, required=("blocks", "titles", "embedder"),
      defaults={"work_dir": DEFAULT_ROOT}, choices={"searcher": importer.SEARCHERS},
      flag_values=flag_values)
  validators.register_ranges(flag_values, overrides={
      "num_shards": validators.NON_NEGATIVE,
      "scann_reordering_num_neighbors": validators.NON_NEGATIVE,
      "rows_per_slice": validators.POSITIVE})
  validators.register_multi(flag_values, ["scann_num_leaves_to_search", "scann_num_leaves"],
                            validators.at_most("scann_num_leaves_to_search", "scann_num_leaves"))


def config_from_flags(flag_values=flags.FLAGS) -> importer.ImportConfig:
  """The ImportConfig the parsed flags describe."""
  from realm_tf.launch import config_flags  # pylint: disable=g-import-not-at-top
  return config_flags.config_from_flags(importer.ImportConfig, flag_values)


def main(argv):
  """Runs the import the flags describe and prints its figures as one JSON line."""
  del argv
  result = importer.run(config_from_flags())
  print(f"Imported {result['num_rows']} blocks ({result['truncated_blocks']} cut to "
        f"{result['config']['block_length']} wordpieces) into {result['corpus_dir']}, "
        f"{result['bundle']} ({result['searcher']}) in {result['seconds']['total']:.1f} s")
  print(json.dumps({k: result[k] for k in ("num_rows", "width", "searcher", "bundle",
                                           "corpus_dir", "query_tower", "seconds")},
                   sort_keys=True))


if __name__ == "__main__":
  define_flags()
  command_line.run(main)
