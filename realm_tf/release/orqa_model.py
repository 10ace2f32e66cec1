"""Google's fine-tuned open-QA models (`orqa_{nq,wq}_model_from_realm`) → a fine-tuning model dir.

The released TF1 checkpoint (`export/best_default/checkpoint/model.ckpt-N`) holds, under the
names ORQA's Estimator gave them (read by `tf1_bert`):

* the question encoder `module/module/module/module/bert/...` and its projection
  `module/module/module/{dense,LayerNorm}` (768 → 128);
* the reader `reader/module/bert/...` and its span head
  `reader/{dense,layer_normalization,dense_1}`;
* Adam slots and `global_step` (skipped).

It holds no index: the document embeddings (`block_emb`) come from the pre-trained embedder's
`encoded.ckpt`, imported with the blocks into an index bundle and corpus
(`python -m realm_tf.launch.import_release`). `convert_orqa_model` puts the two together as one
model dir in the layout fine-tuning writes (`config.json` + `checkpoints/`), recording ORQA's
featurisation (`OpenQAConfig.featurization="orqa"`), so `python -m realm_tf.launch.evaluate`,
`export` and the model server take it as they take a model fine-tuned here.
"""
import dataclasses
import json
import os
from typing import Dict, Optional

import numpy as np
import tensorflow as tf
from absl import logging

from realm_tf.checkpoints import convert
from realm_tf.checkpoints import mapping
from realm_tf.checkpoints import tf1_bert
from realm_tf.io import paths
from realm_tf.io import publish
from realm_tf.io.work_dir import LAYOUT

READER_PREFIX = "reader/"
READER_BERT_PREFIX = READER_PREFIX + "module/"


def orqa_model_config(source, retriever_config, num_attention_heads: Optional[int] = None):
  """The OpenQAConfig of a released ORQA model: the reader's shape read from the checkpoint
  (`reader/module/bert/...`, the span head's width), the query tower's from the index it searches
  (`retriever_config`), ORQA's featurisation and beam (5 blocks read)."""
  from realm_tf.modeling.reader import ReaderConfig  # pylint: disable=g-import-not-at-top
  from realm_tf.modeling.openqa_model import OpenQAConfig  # pylint: disable=g-import-not-at-top
  encoder = dataclasses.replace(
      tf1_bert.infer_encoder_config(source, READER_BERT_PREFIX, num_attention_heads),
      hidden_act=tf1_bert.TF1_BERT_ACTIVATION)
  retriever_config = dataclasses.replace(retriever_config, encoder=dataclasses.replace(
      retriever_config.encoder_config, hidden_act=tf1_bert.TF1_BERT_ACTIVATION))
  reader = ReaderConfig(encoder=encoder,
                        span_hidden_size=tf1_bert.infer_span_hidden_size(source, READER_PREFIX))
  if retriever_config.pooling != "cls" or not retriever_config.projection_layer_norm:
    raise mapping.CheckpointMismatchError(
        f"The index's query tower pools with {retriever_config.pooling!r} and "
        f"projection_layer_norm={retriever_config.projection_layer_norm}; ORQA's question "
        "encoder is LayerNorm(dense(pooled output)): import the index from the REALM embedder "
        "the model was fine-tuned over.")
  return OpenQAConfig(retriever=retriever_config, reader=reader, reader_beam_size=5,
                      featurization="orqa")


def orqa_rules(source, model):
  """(rules, ignore) mapping a released ORQA checkpoint onto an OpenQAModel's query tower and
  reader: every variable but the unused MLM/next-sentence heads and the optimizer's."""
  query_bert = tf1_bert._pick_prefix(source, None, exclude=(READER_PREFIX,),  # pylint: disable=protected-access
                                     what="question encoder")
  query_proj = tf1_bert.projection_prefix(query_bert)
  hidden = int(model.config.retriever.encoder_config.hidden_size)
  reader_hidden = int(model.config.reader.encoder_config.hidden_size)
  rules = (tf1_bert.bert_rules(model.query_encoder, query_bert) +
           tf1_bert.projection_rules(model.query_projection, query_proj, hidden) +
           tf1_bert.bert_rules(model.reader.encoder, READER_BERT_PREFIX) +
           tf1_bert.span_head_rules(model.reader.span_head, reader_hidden, READER_PREFIX))
  ignore = (tf1_bert._bert_ignores(query_bert, keep_mlm=False) +  # pylint: disable=protected-access
            tf1_bert._bert_ignores(READER_BERT_PREFIX, keep_mlm=False))  # pylint: disable=protected-access
  return rules, ignore


def convert_orqa_model(input_path: str, output_dir: str, index_dir: str, corpus_dir: str,
                       num_attention_heads: Optional[int] = None,
                       overwrite: bool = False) -> Dict:
  """Converts a released ORQA model over an imported index; publishes `output_dir` atomically.

  Args:
    input_path: the TF1 checkpoint (prefix, or a directory with a `checkpoint` file).
    output_dir: the model dir to write (e.g. `<work_dir>/finetune`).
    index_dir / corpus_dir: the imported index bundles and corpus (their newest bundle is the
      one the model dir records).
    num_attention_heads: the reader's heads (TF1 shapes do not tell; default hidden/64, BERT's).
    overwrite: replace an existing `output_dir`.

  Returns:
    {"output_dir", "checkpoint", "global_step", "num_source_variables_used", "index_bundle"}.

  Raises:
    CheckpointMismatchError: a missing, unused or mis-shaped variable (all named); nothing written.
  """
  from realm_tf.data.block_lookup import BlockLookup  # pylint: disable=g-import-not-at-top
  from realm_tf.modeling.openqa_model import FrozenIndex  # pylint: disable=g-import-not-at-top
  from realm_tf.retrieval import bundle as bundle_lib  # pylint: disable=g-import-not-at-top
  from realm_tf.stages import finetune  # pylint: disable=g-import-not-at-top
  from realm_tf.text import RealmTokenizer  # pylint: disable=g-import-not-at-top
  if tf.io.gfile.exists(output_dir) and not overwrite:
    raise FileExistsError(f"Output directory already exists: {output_dir}")
  source = tf1_bert.tf1_source(input_path)
  bundle = bundle_lib.latest(index_dir)
  config = orqa_model_config(source, finetune.index_retriever_config(bundle), num_attention_heads)
  # The checkpoint holds no index: a one-row FrozenIndex builds every weight without loading the
  # bundle's embeddings (6.8 GB for the released index).
  lookup = BlockLookup.open(corpus_dir)
  index = FrozenIndex(np.asarray(bundle.embeddings[:1], np.float32),
                      np.asarray(bundle.block_ids[:1], np.int64), lookup)
  model = finetune.build_model(config, index, RealmTokenizer())
  rules, ignore = orqa_rules(source, model)
  used = mapping.apply_rules(rules, source, ignore=ignore)
  step = int(source.get("global_step")) if "global_step" in source else 0
  job = finetune.FinetuneConfig(model=config, reader_positives="none",
                                retrieval_score_scale=1.0)
  record = dict(job.to_dict(), index_bundle=bundle.path, corpus_dir=paths.absolute(corpus_dir),
                converted_from={"format": "tf1", "input": paths.absolute(input_path),
                                "global_step": step})
  with publish.publish_dir(paths.absolute(output_dir), replace=overwrite) as tmp:
    manager = tf.train.CheckpointManager(tf.train.Checkpoint(model=model),
                                         os.path.join(tmp, "checkpoints"), max_to_keep=1)
    manager.save(checkpoint_number=step)
    with tf.io.gfile.GFile(os.path.join(tmp, "config.json"), "w") as f:
      json.dump(record, f, indent=2, sort_keys=True)
  logging.info("Converted %d variables of %s (step %d) over %s → %s", len(used), input_path, step,
               bundle.path, output_dir)
  return {"output_dir": paths.absolute(output_dir),
          "checkpoint": os.path.join(paths.absolute(output_dir), "checkpoints",
                                     f"ckpt-{step}"),
          "global_step": step, "num_source_variables_used": len(used),
          "index_bundle": bundle.path}


def run(config: convert.ConvertConfig) -> convert.ConversionResult:
  """`convert_checkpoint --target=openqa`: the released ORQA model `config.input` over the index
  and corpus imported into `config.work_dir` (or `config.index_dir` / `config.corpus_dir`) → the
  model dir `config.output_dir` (see `convert_orqa_model`)."""
  if config.format != "tf1":
    raise ValueError("--target=openqa converts Google's TF1 ORQA/REALM models: --format=tf1")
  index_dir = config.index_dir or (config.work_dir and os.path.join(config.work_dir,
                                                                    LAYOUT["index"]))
  corpus_dir = config.corpus_dir or (config.work_dir and os.path.join(config.work_dir,
                                                                      LAYOUT["corpus"]))
  if not index_dir or not corpus_dir:
    raise ValueError("--target=openqa needs --work_dir (an imported release) or --index_dir "
                     "and --corpus_dir.")
  out = convert_orqa_model(config.input, config.output_dir, index_dir, corpus_dir,
                           config.num_attention_heads, config.overwrite)
  return convert.ConversionResult(
      output_dir=out["output_dir"], checkpoint_path=out["checkpoint"],
      config=dict(out, target="openqa", checkpoint_keys=["model"], fresh=[]))
