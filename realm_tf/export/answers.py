"""From question strings and block data to answer strings, in the graph.

The served open-QA model and `realm_reader` share this path: `question_features` tokenizes and
packs the questions exactly as `realm_tf.modeling.openqa_features.QuestionFeaturizer` does on the host,
`read_blocks` runs the reader over `[CLS] question [SEP] body [SEP]`, and `select_answers` turns
the reader's span logits into the top distinct answer strings, cut out of the block texts by the
byte offsets of their wordpieces (block_table.text_blocks tokenizes the texts with offsets), or,
for a model with ORQA's featurisation, ORQA's strings (realm_tf.openqa.answer_text).
Doing this in the graph is what lets a client send raw strings and get answers back with no
Python on either side.
"""
from typing import Dict, Mapping, Optional

import tensorflow as tf

from realm_tf.export.versioning import ServingExportError
from realm_tf.openqa import answer_text
from realm_tf.modeling import openqa_features as features_lib
from realm_tf.text import RealmTokenizer, pack_query
from realm_tf.text.packing import INPUT_KEYS

NEG_INF = -1e9  # the logit of an invalid span, as `OpenQAModel.read` masks them


def question_features(tokenizer: RealmTokenizer, questions, query_seq_length: int,
                      reader_query_length: int) -> Dict[str, tf.Tensor]:
  """Question strings [B] → the open-QA model's question features, in the graph.

  Same layout as `realm_tf.modeling.openqa_features.QuestionFeaturizer`: `query/*` int32 [B, Tq]
  (`[CLS] q [SEP]`), `question_ids` int32 [B, reader_query_length - 2] (zero padded) and
  `question_length` int32 [B]; plus `wordpieces` (ragged [B, (n)]).
  """
  ids = tokenizer.tokenize(questions)
  packed = pack_query(ids, query_seq_length, tokenizer.cls_id, tokenizer.sep_id)
  budget = reader_query_length - 2
  kept = ids[:, :budget]
  out = {f"query/{k}": tf.cast(packed[k], tf.int32) for k in INPUT_KEYS}
  out["question_ids"] = tf.cast(kept.to_tensor(0, shape=[None, budget]), tf.int32)
  out["question_length"] = tf.cast(kept.row_lengths(), tf.int32)
  out["wordpieces"] = ids
  return out


def select_answers(span_logits, block_offset, blocks: Mapping[str, tf.Tensor], num_answers: int,
                   max_candidates: int, featurization: str = "realm_tf",
                   tokenizer: Optional[RealmTokenizer] = None) -> Dict[str, tf.Tensor]:
  """The top `num_answers` distinct answer strings of each question.

  A span's string follows `featurization` (realm_tf.openqa.answer_text): "realm_tf" cuts the
  block text from its first wordpiece's first byte to its last wordpiece's last byte; "orqa"
  gives ORQA's string (its original tokens joined by spaces, through SQuAD's `get_final_text`),
  which needs `tokenizer` (the wordpiece strings) and the blocks' `body_ids`.

  Args:
    span_logits: float32 [B, K, T, W] reader logits (retriever logit included; invalid spans at
      -1e9), as `OpenQAModel.read` returns them.
    block_offset: int32 [B, K], reader position of each block's first body wordpiece.
    blocks: `starts` / `limits` int32 [B, K, L] byte offsets of the body wordpieces and `texts`
      string [B, K] (see block_table.text_blocks).
    num_answers: A, answers returned per question.
    max_candidates: M ≥ A, best spans considered; spans whose text repeats a better span's are
      dropped, so up to M - A duplicates are absorbed.

  Returns:
    `answers` string [B, A] best first ("" past the last valid one), `probabilities` float32
    [B, A] (each span's softmax probability over every span of the K blocks — the first equals
    OpenQAModel.predict_spans' `probability`), `answer_scores` float32 [B, A] (logits),
    `answer_block_index` int32 [B, A] (which of the K blocks; -1 for no answer).
  """
  if max_candidates < num_answers:
    raise ServingExportError(f"max_candidates={max_candidates} < num_answers={num_answers}.")
  span_logits = tf.cast(span_logits, tf.float32)
  shape = tf.shape(span_logits)
  b, k, t, w = shape[0], shape[1], shape[2], shape[3]
  flat = tf.reshape(span_logits, [b, -1])
  log_norm = tf.reduce_logsumexp(flat, axis=-1, keepdims=True)
  pad = tf.maximum(max_candidates - tf.shape(flat)[1], 0)
  flat = tf.pad(flat, [[0, 0], [0, pad]], constant_values=2 * NEG_INF)
  top_logits, idx = tf.math.top_k(flat, k=max_candidates, sorted=True)        # [B, M]
  valid = top_logits > NEG_INF / 2
  block = tf.minimum(idx // (t * w), k - 1)
  rem = idx % (t * w)
  start = rem // w
  end = start + rem % w
  offset = tf.gather(block_offset, block, batch_dims=1)
  width = tf.shape(blocks["starts"])[2]
  first = tf.clip_by_value(start - offset, 0, width - 1)
  last = tf.clip_by_value(end - offset, 0, width - 1)
  starts = tf.gather(tf.gather(blocks["starts"], block, batch_dims=1), first[..., None],
                     batch_dims=2)[..., 0]
  limits = tf.gather(tf.gather(blocks["limits"], block, batch_dims=1), last[..., None],
                     batch_dims=2)[..., 0]
  texts = tf.gather(blocks["texts"], block, batch_dims=1)
  if featurization == "orqa":
    text = _orqa_texts(blocks, block, first, last, starts, texts, tokenizer)
  else:
    text = tf.strings.substr(texts, starts, tf.maximum(limits - starts, 0), unit="BYTE")
  text = tf.where(valid, text, "")
  # Drop spans whose text equals a better-ranked span's.
  same = tf.logical_and(tf.equal(text[:, :, None], text[:, None, :]), valid[:, None, :])
  earlier = tf.linalg.band_part(tf.ones([max_candidates, max_candidates], tf.bool), -1, 0)
  earlier = tf.logical_and(earlier, tf.logical_not(tf.eye(max_candidates, dtype=tf.bool)))
  repeated = tf.reduce_any(tf.logical_and(same, earlier[None]), axis=2)
  keep = tf.logical_and(valid, tf.logical_not(repeated))
  rank = tf.where(keep, -tf.range(max_candidates, dtype=tf.float32)[None, :],
                  tf.cast(-10 * max_candidates, tf.float32))
  _, pick = tf.math.top_k(rank, k=num_answers, sorted=True)                    # [B, A]
  chosen = tf.gather(keep, pick, batch_dims=1)
  logits = tf.gather(top_logits, pick, batch_dims=1)
  return {
      "answers": tf.where(chosen, tf.gather(text, pick, batch_dims=1), ""),
      "probabilities": tf.where(chosen, tf.exp(logits - log_norm), 0.0),
      "answer_scores": tf.where(chosen, logits, NEG_INF),
      "answer_block_index": tf.where(chosen, tf.gather(block, pick, batch_dims=1), -1),
  }


def _orqa_texts(blocks, block, first, last, starts, texts, tokenizer):
  """ORQA's answer strings [B, M] of candidate spans (block index, first and last body
  wordpiece, the first one's byte offset, the block text; each [B, M])."""
  if tokenizer is None:
    raise ServingExportError("featurization='orqa' answers need the tokenizer's wordpieces.")
  shape = tf.shape(block)
  flat = lambda x: tf.reshape(x, [-1])  # pylint: disable=unnecessary-lambda-assignment
  body_ids = tf.gather(blocks["body_ids"], block, batch_dims=1)            # [B, M, L]
  width = tf.shape(body_ids)[2]
  base = tf.range(tf.size(block)) * width
  pieces = tf.gather(flat(body_ids), tf.ragged.range(base + flat(first), base + flat(last) + 1))
  last_starts = tf.gather(tf.gather(blocks["starts"], block, batch_dims=1), last[..., None],
                          batch_dims=2)[..., 0]
  text = answer_text.orqa_answer_from_pieces(flat(texts), flat(starts), flat(last_starts),
                                             tokenizer.tokens(pieces))
  return tf.reshape(text, shape)


def read_blocks(model, features: Mapping[str, tf.Tensor], blocks: Mapping[str, tf.Tensor],
                retrieval_logits, num_answers: int, max_candidates: int,
                tokenizer: Optional[RealmTokenizer] = None) -> Dict[str, tf.Tensor]:
  """Reader over `[CLS] question [SEP] body [SEP]` for blocks [B, K], then `select_answers`.

  `model` is an `OpenQAModel` (its `read` and config are used; its `featurization` picks the
  answer strings' rule); `features` come from `question_features`; `blocks` from
  `BlockTable.reader_blocks` or `text_blocks`; `tokenizer` the model's (needed for ORQA's rule).
  """
  cfg = model.config.reader
  inputs = features_lib.pack_reader_inputs(
      features["question_ids"], features["question_length"], blocks["body_ids"],
      blocks["body_length"], cfg.seq_length, model.cls_id, model.sep_id)
  span_logits, _ = model.read(inputs, tf.cast(retrieval_logits, tf.float32), training=False)
  return select_answers(span_logits, inputs["block_offset"], blocks, num_answers, max_candidates,
                        featurization=model.config.featurization, tokenizer=tokenizer)
