"""`realm_openqa`: the whole open-QA system as one SavedModel, question strings in, answers out.

    questions [B] ──FastBertTokenizer (TF.Text)──▶ `[CLS] q [SEP]` ──query tower──▶ q [B, D]
      ──MIPS──▶ K evidence rows ──BlockTable (block texts, in the SavedModel)──▶ K texts
      ──FastBertTokenizer with byte offsets──▶ `[CLS] q [SEP] body [SEP]` [B, K, T] ──reader──▶
      span logits (+ retriever logit) ──select_answers──▶ top A distinct answer strings cut from
      the block texts by byte offset

The export holds the corpus once, as texts (block_table.py): the wordpieces of the K blocks a
question reads are computed when it is asked, as ORQA's export did, and equal the corpus'
stored wordpieces. Its `blocks` signature gives the titles and texts of block ids, so the part
models (`realm_searcher` → `realm_reader`, which hold no corpus) can be fed from it.

Two variants of the MIPS step (docs/SERVING_SIGNATURES.md):
  * `stock` (model `realm_openqa`): exact search, `MatMul` + `TopKV2` over the embedding matrix
    held in a variable. Only stock TensorFlow and TF.Text ops, so an unmodified
    `tensorflow_model_server` serves it.
  * `scann` (model `realm_openqa_scann`): ScaNN's `Scann>TensorsToScann` / `ScannSearchBatched`
    ops over the searcher state saved as variables; needs the ScaNN ops registered in the server
    (`python -m serving.server` imports ScaNN) and `SaveOptions(namespace_whitelist=["Scann"])`.

Nothing in either graph is a py_function, so they load anywhere the ops exist. The answers equal
`OpenQAModel.predict_spans` + `answer_text.answer_text` (the model's featurisation's rule:
`features.span_text`, or ORQA's string) run in process (`in_process_answers`).

Each row answers on its own: a question with no wordpieces (empty, white space or control
characters only) is answered with nothing (answers "", block ids -1, no evidence) and `status`
"empty_question", while the other questions of the batch are answered as usual (`status` "ok").
So one empty question never fails a request, nor a batch merged server-side.
"""
from typing import Dict, Optional, Sequence

import numpy as np
import tensorflow as tf

from realm_tf.export import warmup as warmup_lib
from realm_tf.export.answers import NEG_INF, question_features, read_blocks
from realm_tf.export.block_table import BlockTable
from realm_tf.export.mips import make_mips, mips_info
from realm_tf.export.modules import TrackedVariables
from realm_tf.export.versioning import (SERVING_DEFAULT, ServingExportError, check_saved_model_ops,
                                        model_info, publish_saved_model, save_options,
                                        variant_model_name)
from realm_tf.openqa import answer_text
from realm_tf.modeling import openqa_features as features_lib
from realm_tf.text import RealmTokenizer

OPENQA = "realm_openqa"
STATUS_OK = "ok"
STATUS_EMPTY_QUESTION = "empty_question"


class OpenQAModule(tf.Module):
  """Question strings [B] → answers and evidence (serving_default; see module docstring).

  serving_default outputs, B questions, A = num_answers, K = the model's reader beam:
    answers string [B, A], probabilities float32 [B, A], answer_scores float32 [B, A],
    answer_block_ids int64 [B, A] (-1: no answer), answer_block_index int32 [B, A],
    evidence_block_ids int64 [B, K], evidence_titles / evidence_texts string [B, K],
    evidence_scores float32 [B, K] (retriever logits), all best first,
    status string [B]: "ok", or "empty_question" for a question without wordpieces, whose row
    holds no answer and no evidence (see module docstring).
  blocks: `block_ids` int64 [B, K] → `titles`, `texts` string [B, K] (InvalidArgument naming an
    id that is not in the exported corpus).
  """

  def __init__(self, model, tokenizer: RealmTokenizer, table: BlockTable,
               variant: str = "stock", num_answers: int = 5, max_candidates: int = 20,
               scann_config=None, scann_source=None):
    super().__init__(name="realm_openqa")
    if model.index.size != table.size:
      raise ServingExportError(f"The model's index has {model.index.size} rows but the block "
                               f"table {table.size}.")
    self.variant = variant
    self.weights = TrackedVariables(
        list(model.query_encoder.variables) + list(model.query_projection.variables) +
        list(model.reader.variables))
    self.tokenizer = tokenizer
    self.table = table
    self.mips = make_mips(model.index.embeddings_np, variant, scann_config,
                          model.index.variables()[0], scann_source)
    self.num_blocks = int(model.reader_beam_size)
    self.num_answers = int(num_answers)
    cfg = model.config
    k = self.num_blocks

    def answer(questions):
      feats = question_features(tokenizer, questions, cfg.retriever.query_seq_length,
                                cfg.reader.query_length)
      query = model.embed_questions(feats, training=False)
      rows, scores = self.mips.search(query, k)
      blocks = table.reader_blocks(rows, tokenizer)
      out = read_blocks(model, feats, blocks, scores, num_answers, max_candidates, tokenizer)
      index = out["answer_block_index"]
      out["answer_block_ids"] = tf.where(
          index >= 0, tf.gather(blocks["block_ids"], tf.maximum(index, 0), batch_dims=1),
          tf.constant(-1, tf.int64))
      out.update({"evidence_block_ids": blocks["block_ids"], "evidence_titles": blocks["titles"],
                  "evidence_texts": blocks["texts"],
                  "evidence_scores": tf.cast(scores, tf.float32)})
      return blank_unasked_rows(out, feats["wordpieces"].row_lengths() > 0)

    self.answer = tf.function(answer, autograph=False, input_signature=[
        tf.TensorSpec([None], tf.string, name="questions")])

    def blocks(block_ids):
      out = table.gather(table.rows_for_block_ids(block_ids))
      return {"titles": out["titles"], "texts": out["texts"]}

    self.blocks = tf.function(blocks, autograph=False, input_signature=[
        tf.TensorSpec([None, None], tf.int64, name="block_ids")])

  def signatures(self):
    """{signature name: tf.function} to save (see the class docstring)."""
    return {SERVING_DEFAULT: self.answer, "blocks": self.blocks}


# What a row holds for a question that was not asked (no wordpieces).
_UNASKED = {"answers": "", "probabilities": 0.0, "answer_scores": NEG_INF,
            "answer_block_ids": -1, "answer_block_index": -1, "evidence_block_ids": -1,
            "evidence_titles": "", "evidence_texts": "", "evidence_scores": 0.0}


def blank_unasked_rows(outputs: Dict[str, tf.Tensor], asked) -> Dict[str, tf.Tensor]:
  """Blanks the rows of `outputs` (each [B, ...]) whose question was empty (`asked` bool [B]
  False) and adds `status` string [B] ("ok" / "empty_question"), so a bad row answers for
  itself instead of failing its batch."""
  out = {}
  for name, value in outputs.items():
    mask = tf.reshape(asked, [-1] + [1] * (value.shape.rank - 1))
    fill = tf.cast(tf.constant(_UNASKED[name]), value.dtype)
    out[name] = tf.where(mask, value, fill)
  out["status"] = tf.where(asked, STATUS_OK, STATUS_EMPTY_QUESTION)
  return out


def export_openqa(model, tokenizer: RealmTokenizer, export_base: str, version: int,
                  variants: Sequence[str] = ("stock",), table: Optional[BlockTable] = None,
                  bundle=None, num_answers: int = 5, max_candidates: int = 20, scann_config=None,
                  warmup_questions: Optional[Sequence[str]] = None, scann_source=None
                  ) -> Dict[str, str]:
  """Exports `realm_openqa` (stock) and/or `realm_openqa_scann`; returns {model name: path}.

  Args:
    model: a built, fine-tuned `OpenQAModel` (its FrozenIndex's lookup gives the texts).
    tokenizer: the model's RealmTokenizer.
    export_base: TF Serving base directory (`<export_base>/<name>/<version>/`).
    variants: "stock" and/or "scann".
    table: the index's BlockTable (built from the model's index when omitted; pass one to share
      it between exports).
    bundle: the IndexBundle (recorded in realm_export.json).
    scann_config, scann_source: the ScaNN variant's searcher: `scann_source` (a
      mips.ScannSource, e.g. the bundle's own searcher) when given, else one built with
      `scann_config`; realm_export.json records which (`scann`).
  """
  table = table or BlockTable.from_index(model.index, tokenizer)
  questions = list(warmup_questions or warmup_lib.DEFAULT_QUESTIONS)
  info = model_info(model, bundle)
  out = {}
  ids = np.asarray(model.index.block_ids[:model.reader_beam_size], np.int64)[None]
  for variant in variants:
    name = variant_model_name(OPENQA, variant)
    module = OpenQAModule(model, tokenizer, table, variant, num_answers, max_candidates,
                          scann_config, scann_source)
    path = publish_saved_model(
        module, export_base, name, version, module.signatures(), options=save_options(variant),
        info=dict(info, variant=variant, num_answers=num_answers, max_candidates=max_candidates,
                  reader_beam_size=module.num_blocks, **mips_info(module.mips)),
        warmup_requests=warmup_lib.string_requests(name, "questions", questions) +
        warmup_lib.requests(name, [{"block_ids": ids}], signature_name="blocks"))
    if variant == "stock":
      check_saved_model_ops(path, forbidden_prefixes=("Scann",))
    out[name] = path
  return out


def in_process_answers(model, tokenizer: RealmTokenizer, questions: Sequence[str]
                       ) -> Dict[str, np.ndarray]:
  """The fine-tuned model's own prediction, in this process, for comparison with an export.

  Host-side featurization (`QuestionFeaturizer`), `OpenQAModel.predict_spans` and
  `answer_text.answer_text`. Returns numpy: `answer` object [B] (bytes), `probability` [B],
  `evidence_block_ids` int64 [B, K], `evidence_scores` [B, K].
  """
  featurizer = features_lib.QuestionFeaturizer(model.config.feature_config, tokenizer)
  examples = [features_lib.OpenQAExample(f"q{i}", q, ()) for i, q in enumerate(questions)]
  feats = {k: tf.constant(v) for k, v in featurizer.featurize(examples).items()}
  pred = model.predict_spans(feats)
  k = model.reader_beam_size
  rows = pred["rows"][:, :k].numpy()
  block = pred["block_index"].numpy()
  chosen = rows[np.arange(len(questions)), block]
  texts = np.array([model.index.texts([r])[1][0] for r in chosen], dtype=object)
  answer = answer_text.answer_text(tokenizer, tf.constant(texts.astype(str).tolist()),
                                   pred["start_piece"], pred["end_piece"],
                                   model.config.featurization).numpy()
  return {"answer": answer, "probability": pred["probability"].numpy(),
          "evidence_block_ids": model.index.block_ids[rows],
          "evidence_scores": pred["retrieval_scores"][:, :k].numpy()}
