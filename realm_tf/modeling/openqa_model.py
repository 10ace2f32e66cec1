"""The open-QA model (ORQA recipe, REALM §3.4): trainable query tower over a frozen index + reader.

    question ─query tower─▶ q [B, 128] ─exact MIPS (matmul + top_k over the frozen
    document embeddings, in-graph)─▶ retriever beam [B, M] (M = 5000 capped at the corpus size)
      ├─ retriever loss: marginal log-loss over the answer-bearing blocks of the beam
      └─ top K (5) blocks ─▶ `[CLS] q [SEP] block [SEP]` (320) ─Reader─▶ span logits
         (+ the block's retriever logit) over K × T × W spans ─▶ reader loss: marginal log-loss
         over the gold spans; prediction: the best span, its probability, the evidence blocks.

Each loss term is zeroed for a question where nothing in it is correct (ORQA's rule), unless the
reader is given a positive (`reader_positives`, DPR's practice): when none of the K blocks read
bears an answer, the K-th is replaced by the beam's best answer-bearing block (`beam`) or the
example's gold block (`gold`); prediction never does this. Questions are embedded exactly as the
index's `Retriever.embed_queries` embeds them (its `RetrieverConfig.pooling`). The index
embeddings are a non-trainable variable that is *not* tracked by the Keras model, so checkpoints
hold only the query tower and the reader; block wordpieces are read from the corpus's memory-mapped
BlockLookup on the host for the retrieved rows only. Everything here is dense
stock TF, so it runs under any tf.distribute strategy and XLA.
"""
import dataclasses
from typing import Optional, Sequence

import numpy as np
import tensorflow as tf
import tf_keras

from realm_tf.io.memory import release_pages
from realm_tf.modeling.encoder_config import build_encoder
from realm_tf.modeling.layers import RetrievalProjection
from realm_tf.modeling.reader import Reader, ReaderConfig, continuation_mask
from realm_tf.modeling.retriever import RetrieverConfig, masked_mean
from realm_tf.modeling import openqa_features as features_lib
from realm_tf.utils.strategy import is_tpu_strategy
from realm_tf.config_base import ConfigBase

_QUERY_KEYS = features_lib.QUERY_KEYS
# What the reader reads when none of its K blocks bears an answer (training only):
#   none: nothing else (ORQA: the reader loss is zero); beam: the retriever beam's best
#   answer-bearing block replaces the K-th; gold: the example's gold block does (`gold_rows`
#   feature), else the beam's.
READER_POSITIVES = ("beam", "gold", "none")
# How questions and spans are featurised (OpenQAConfig.featurization):
#   realm_tf: the reader's question is cut to `reader.query_length - 2` wordpieces and spans start
#     and end on word boundaries; orqa: as ORQA's predict (google-research/language
#     orqa/models/orqa_model.py): the question is not cut (the body gives way, up to
#     `reader.seq_length - 2` question wordpieces) and a span may start or end inside a word.
FEATURIZATIONS = ("realm_tf", "orqa")


@dataclasses.dataclass(frozen=True)
class OpenQAConfig(ConfigBase):
  """The open-QA model: query tower shape (must match the index), reader, beams, answer shapes."""
  NESTED = {"retriever": RetrieverConfig, "reader": ReaderConfig}
  retriever: RetrieverConfig = RetrieverConfig()
  reader: ReaderConfig = ReaderConfig()
  reader_beam_size: int = 5          # blocks read per question
  # Blocks read per question in training (None: reader_beam_size). Reading is most of a step's
  # cost; fewer blocks (still with the positive) trade negatives for questions per second. The
  # reader loss is one softmax over the spans of all the blocks read. Behind BM25 (no retrieval
  # logit to rank the blocks) keep it at reader_beam_size: the reader must learn to choose.
  train_reader_beam_size: Optional[int] = None
  retriever_beam_size: int = 5000    # blocks in the retrieval loss (capped at the corpus size)
  max_answers: int = 8
  max_answer_length: int = 10
  featurization: str = "realm_tf"    # FEATURIZATIONS; "orqa" for Google's released models

  def __post_init__(self):
    if self.featurization not in FEATURIZATIONS:
      raise ValueError(f"featurization must be one of {FEATURIZATIONS}, got "
                       f"{self.featurization!r}.")
    if self.featurization == "orqa" and self.reader.query_length != self.reader.seq_length:
      # ORQA does not cut the question: it may fill the reader input up to its one [SEP]. Every
      # path that packs questions (features, evaluation, the serving exports) reads this length.
      object.__setattr__(self, "reader", dataclasses.replace(
          self.reader, query_length=self.reader.seq_length))

  @property
  def word_boundary_spans(self) -> bool:
    """Whether predicted spans must start and end on word boundaries (not ORQA's rule)."""
    return self.featurization != "orqa"

  @property
  def feature_config(self) -> features_lib.FeatureConfig:
    return features_lib.FeatureConfig(
        query_seq_length=self.retriever.query_seq_length,
        reader_query_length=self.reader.query_length, max_answers=self.max_answers,
        max_answer_length=min(self.max_answer_length, self.reader.max_span_width))



class FrozenIndex:
  """The frozen document side: embeddings [N, D] and block ids in index row order, and the
  corpus's `BlockLookup` for the blocks' wordpieces and texts.

  A plain Python object (not a tf.Module), so a Keras model holding it does not checkpoint it.
  The embeddings become a non-trainable variable (exact MIPS runs where the model runs, as in
  ORQA); the wordpieces stay in the memory-mapped lookup on the host, read for the rows a step
  retrieves. Index row r is lookup row `lookup_rows[r]` (the same row when the index was built
  over the corpus in manifest order, as the refresher builds it).
  """

  def __init__(self, embeddings: np.ndarray, block_ids: np.ndarray, lookup):
    n = embeddings.shape[0]
    if n == 0:
      raise ValueError("The index is empty.")
    if embeddings.ndim != 2 or len(block_ids) != n:
      raise ValueError(f"FrozenIndex: {len(block_ids)} block ids but embeddings of shape "
                       f"{embeddings.shape}.")
    self.embeddings_np = embeddings  # float32 [N, D], memory-mapped for a local bundle
    self.block_ids = np.asarray(block_ids, np.int64)
    self.lookup = lookup
    rows = lookup.rows_np(self.block_ids)
    missing = self.block_ids[rows < 0]
    if len(missing):
      raise ValueError(f"The index has {len(missing)} block ids that are not in the corpus "
                       f"{lookup.path} (e.g. {missing[:3].tolist()}); pass the corpus the index "
                       "was built from.")
    self.identity_rows = n == lookup.size and bool(np.all(rows == np.arange(n)))
    self.lookup_rows = rows.astype(np.int32)
    self.size = n
    self._vars = None
    self._index_row_of = None

  @classmethod
  def from_bundle(cls, bundle, lookup) -> "FrozenIndex":
    """Index rows of `bundle` (an IndexBundle) over `lookup` (the BlockLookup of the corpus the
    bundle was built from)."""
    emb = bundle.embeddings
    if emb.dtype != np.float32:
      emb = np.asarray(emb, np.float32)
    return cls(emb, np.asarray(bundle.block_ids, np.int64), lookup)

  @property
  def body_width(self) -> int:
    """Width of dense body batches: the corpus's longest body."""
    return self.lookup.max_body_length

  def rows_of(self, block_ids) -> np.ndarray:
    """Block ids → index rows int64 (-1 where the index lacks the block)."""
    rows = self.lookup.rows_np(block_ids)
    if self.identity_rows:
      return rows
    if self._index_row_of is None:  # lookup row → index row, 4 bytes a corpus block
      self._index_row_of = np.full([self.lookup.size], -1, np.int32)
      self._index_row_of[self.lookup_rows] = np.arange(self.size, dtype=np.int32)
    return np.where(rows >= 0, self._index_row_of[np.maximum(rows, 0)], -1).astype(np.int64)

  def texts(self, rows: Sequence[int]):
    """(titles, bodies) as str of index `rows`."""
    return self.lookup.texts(self.lookup_rows[np.asarray(rows, np.int64)])

  def text_batches(self, batch_size: int = 4096):
    """Yields (index rows [b], titles string [b], bodies string [b]) over every index row in
    order (BlockLookup.text_batches)."""
    for lo in range(0, self.size, batch_size):
      rows = np.arange(lo, min(lo + batch_size, self.size), dtype=np.int64)
      _, titles, bodies = next(self.lookup.text_batches(self.lookup_rows[rows], len(rows)))
      yield rows, titles, bodies

  def variables(self):
    """(embeddings, lookup rows or None) as non-trainable variables, created on first use
    (call inside the strategy scope). Only the embeddings (and the row map, 4 bytes a block, when
    the index is not in corpus order) live where the model runs."""
    if self._vars is None:
      self._vars = (
          tf.Variable(self.embeddings_np, trainable=False, name="index_embeddings"),
          None if self.identity_rows else
          tf.Variable(self.lookup_rows, trainable=False, name="index_lookup_rows"))
      release_pages(self.embeddings_np)  # the variable holds them now
    return self._vars

  def gather_bodies(self, rows):
    """Index rows [...] → (body wordpieces int32 [..., body_width], lengths int32 [...]), read
    from the lookup on the host."""
    return on_host(lambda r: self.lookup.dense_bodies(r, self.body_width), self._to_lookup(rows))

  def _to_lookup(self, rows):
    rows = tf.cast(rows, tf.int32)
    mapping = self.variables()[1]
    return rows if mapping is None else tf.gather(tf.convert_to_tensor(mapping), rows)


def on_host(fn, *args):
  """`fn(*args)` on the host CPU: the memory-mapped block lookup is a host resource. Inside a TPU
  replica step this is outside compilation (the TPU program calls back to its host)."""
  strategy = tf.distribute.get_strategy()
  in_replica = tf.distribute.in_cross_replica_context() is False and \
      tf.distribute.has_strategy()
  if in_replica and is_tpu_strategy(strategy):
    return tf.tpu.outside_compilation(fn, *args)
  with tf.device("/device:CPU:0"):
    return fn(*args)


def _check_reader_positives(reader_positives: str) -> None:
  if reader_positives not in READER_POSITIVES:
    raise ValueError(f"reader_positives must be one of {READER_POSITIVES}, got "
                     f"{reader_positives!r}.")


def _where(condition, x, y):
  """tf.where with `condition` [B] broadcast over the trailing axes of x and y [B, ...]."""
  return tf.where(tf.reshape(condition, [-1] + [1] * (len(x.shape) - 1)), x, y)


def marginal_log_loss(logits, is_correct):
  """ORQA's loss: -log Σ_correct p = logsumexp(all) - logsumexp(correct), 0 when none is correct.

  logits float [B, X]; is_correct bool [B, X] → (loss [B], any_correct bool [B]).
  """
  logits = tf.cast(logits, tf.float32)
  correct = tf.cast(is_correct, tf.bool)
  any_correct = tf.reduce_any(correct, axis=-1)
  masked = tf.where(correct, logits, -1e9 * tf.ones_like(logits))
  loss = tf.reduce_logsumexp(logits, axis=-1) - tf.reduce_logsumexp(masked, axis=-1)
  return tf.where(any_correct, loss, tf.zeros_like(loss)), any_correct


class OpenQAModel(tf_keras.Model):
  """Query tower (`query_encoder`, `query_projection`) + `reader` over a FrozenIndex.

  Features (from `QuestionFeaturizer`): `query/*` [B, Tq], `question_ids` [B, Lq],
  `question_length` [B], and for training `answer_ids` [B, A, L], `answer_length` [B, A] and,
  for `reader_positives="gold"`, `gold_rows` [B, G] (index rows of the gold document, -1 padded).
  """

  def __init__(self, config: OpenQAConfig, index: FrozenIndex, vocab: Sequence[str],
               cls_id: int, sep_id: int, **kwargs):
    super().__init__(**kwargs)
    self.config = config
    enc = config.retriever.encoder_config
    self.query_encoder = build_encoder(enc, name="query_encoder")
    self.query_projection = RetrievalProjection(
        config.retriever.projection_size, enc.initializer_range,
        use_layer_norm=config.retriever.projection_layer_norm, name="query_projection")
    # The retriever's training-time dropout on the projected embedding (inactive at inference).
    self.projection_dropout = tf_keras.layers.Dropout(config.retriever.projection_dropout,
                                                      name="projection_dropout")
    # Without a vocabulary the reader's spans may start and end inside words (ORQA's rule);
    # answer matching for training still stops at word ends.
    self.reader = Reader(config.reader, vocab=vocab if config.word_boundary_spans else None,
                         name="reader")
    self.cls_id, self.sep_id = int(cls_id), int(sep_id)
    self._index = index
    self._continuation_np = continuation_mask(vocab)
    emb = index.variables()[0]  # created here, inside the caller's strategy scope
    if emb.shape[1] != config.retriever.projection_size:
      raise ValueError(f"The index holds {emb.shape[1]}-d embeddings but the query tower projects "
                       f"to {config.retriever.projection_size}.")

  @property
  def index(self) -> FrozenIndex:
    return self._index

  @property
  def retriever_beam_size(self) -> int:
    return min(self.config.retriever_beam_size, self._index.size)

  @property
  def reader_beam_size(self) -> int:
    return min(self.config.reader_beam_size, self._index.size)

  @property
  def train_reader_beam_size(self) -> int:
    """Blocks read per question by `compute_loss`."""
    return min(self.config.train_reader_beam_size or self.config.reader_beam_size,
               self._index.size)

  # The index variables live in the untracked FrozenIndex, never as attributes of this model
  # (Keras would track them, and checkpoints would then hold the whole index).
  @property
  def _embeddings(self):
    return self._index.variables()[0]

  def _continuation(self):
    return tf.constant(self._continuation_np)

  # ---- pieces --------------------------------------------------------------------------------

  def embed_questions(self, features, training=False):
    """query/* [B, Tq] → query embeddings float32 [B, D].

    The one place every open-QA path (training, regex answer expansion, evaluation, the serving
    exports) embeds questions: pooled as `Retriever.embed_queries` pools for this
    RetrieverConfig (`cls`: BERT's pooled output; `mean`: `masked_mean` of the token vectors),
    so the query tower stays in the space of the frozen index it searches.
    """
    inputs = {k: features[f"query/{k}"] for k in _QUERY_KEYS}
    out = self.query_encoder(inputs, training=training)
    if self.config.retriever.pooling == "mean":
      pooled = masked_mean(out["sequence_output"], inputs["input_mask"])
    else:
      pooled = out["pooled_output"]
    return tf.cast(self.projection_dropout(self.query_projection(pooled), training=training),
                   tf.float32)

  def retrieve(self, query_embeddings, k: int):
    """Exact MIPS over the frozen index: (scores float32 [B, k], rows int32 [B, k]), best first."""
    scores = tf.matmul(query_embeddings, tf.convert_to_tensor(self._embeddings), transpose_b=True)
    return tf.math.top_k(scores, k=k, sorted=True)

  def reader_inputs(self, features, rows):
    """Reader inputs `[CLS] q [SEP] body [SEP]` [B, K, T] for index rows [B, K]."""
    return self._pack(features, *self._index.gather_bodies(rows))

  def _pack(self, features, body, length):
    """Reader inputs [B, K, T] for block bodies [B, K, W] of `length` [B, K] wordpieces."""
    return features_lib.pack_reader_inputs(
        features["question_ids"], features["question_length"], body, length,
        self.config.reader.seq_length, self.cls_id, self.sep_id)

  def read(self, inputs, retrieval_logits, training=False):
    """Reader over [B, K, T] inputs; span logits + retriever logit → [B, K, T, W] (+ mask)."""
    shape = tf.shape(inputs["input_word_ids"])
    b, k, t = shape[0], shape[1], shape[2]
    flat = {key: tf.reshape(inputs[key], [-1, t]) for key in _QUERY_KEYS}
    out = self.reader(flat, tf.reshape(retrieval_logits, [-1]), training=training)
    w = self.config.reader.max_span_width
    return (tf.reshape(out["span_logits"], [b, k, t, w]),
            tf.reshape(out["span_mask"], [b, k, t, w]))

  # ---- training ------------------------------------------------------------------------------

  def call(self, features, training=False):
    """Full forward pass: retrieval beam, reader over the top K. Returns a dict of tensors."""
    q = self.embed_questions(features, training=training)
    beam_scores, beam_rows = self.retrieve(q, self.retriever_beam_size)
    k = self.reader_beam_size
    rows, logits = beam_rows[:, :k], beam_scores[:, :k]
    inputs = self.reader_inputs(features, rows)
    span_logits, span_mask = self.read(inputs, logits, training=training)
    return {"beam_scores": beam_scores, "beam_rows": beam_rows, "reader_inputs": inputs,
            "span_logits": span_logits, "span_mask": span_mask}

  def compute_loss(self, features, training=False, reader_positives: str = "none"):
    """Per-example loss [B] and diagnostics: ORQA's retriever + reader marginal log-losses.

    Three parts, so that a compiled step can read the blocks on the host between its two device
    parts (stages.openqa_task): `retrieve_beam` (device), `beam_blocks` (the host's lookup) and
    `loss_from_beam` (device).

    `reader_positives` (READER_POSITIVES) gives the reader a training signal where ORQA gives
    none: when none of the K blocks read bears an answer within what the reader sees, the K-th
    block is replaced by the beam's highest-ranked answer-bearing block (`beam`), or by the
    first answer-bearing block of the example's gold document (`gold`; `features["gold_rows"]`
    int32 [B, G] index rows, -1 padded), falling back to the beam's. The substitute is read
    with its own retriever logit. `none` is ORQA's rule (reader loss zero for such questions).
    """
    _check_reader_positives(reader_positives)
    beam = self.retrieve_beam(features, training=training)
    return self.loss_from_beam(features, beam, self.beam_blocks(features, beam, reader_positives),
                               training=training, reader_positives=reader_positives)

  def retrieve_beam(self, features, training=False):
    """compute_loss's first device part: the question embeddings `q` [B, D] and the retriever
    beam, `beam_scores` float32 [B, M] and `beam_rows` int32 [B, M] (best first)."""
    q = self.embed_questions(features, training=training)
    beam_scores, beam_rows = self.retrieve(q, self.retriever_beam_size)
    return {"q": q, "beam_scores": beam_scores, "beam_rows": beam_rows}

  def beam_blocks(self, features, beam, reader_positives: str = "none"):
    """compute_loss's host part: the wordpieces of the beam's blocks, `beam_bodies` int32
    [B, M, W] and `beam_lengths` [B, M], read from the lookup; with `gold` positives also those
    of the gold rows (`gold_bodies` [B, G, W], `gold_lengths` [B, G]; padding reads row 0)."""
    bodies, lengths = self._index.gather_bodies(beam["beam_rows"])
    out = {"beam_bodies": bodies, "beam_lengths": lengths}
    if reader_positives == "gold" and "gold_rows" in features:
      safe = tf.maximum(tf.cast(features["gold_rows"], tf.int32), 0)
      out["gold_bodies"], out["gold_lengths"] = self._index.gather_bodies(safe)
    return out

  def loss_from_beam(self, features, beam, blocks, training=False,
                     reader_positives: str = "none"):
    """compute_loss's second device part: the losses from the beam (`retrieve_beam`) and its
    blocks (`beam_blocks`). The reader reads blocks of the beam (or gold rows), so it needs no
    other lookup."""
    _check_reader_positives(reader_positives)
    beam_scores, beam_rows = beam["beam_scores"], beam["beam_rows"]
    cont = self._continuation()
    answer_ids, answer_length = features["answer_ids"], features["answer_length"]
    starts = features_lib.answer_start_matches(blocks["beam_bodies"], answer_ids, answer_length,
                                               cont)
    beam_correct = tf.reduce_any(starts, axis=[2, 3])
    retriever_loss, beam_any = marginal_log_loss(beam_scores, beam_correct)
    k = self.train_reader_beam_size
    read = (beam_rows[:, :k], beam_scores[:, :k], blocks["beam_bodies"][:, :k],
            blocks["beam_lengths"][:, :k])
    substituted = tf.zeros_like(beam_any)
    if reader_positives != "none":
      read, substituted = self._reader_positive(beam, blocks, features, starts, read,
                                                reader_positives)
    rows, logits = read[0], read[1]
    inputs = self._pack(features, read[2], read[3])
    span_logits, span_mask = self.read(inputs, logits, training=training)
    gold = features_lib.gold_span_labels(inputs["input_word_ids"], answer_ids, answer_length,
                                         span_mask, cont)
    b = tf.shape(gold)[0]
    flat_logits = tf.reshape(span_logits, [b, -1])
    flat_gold = tf.reshape(gold, [b, -1])
    reader_loss, reader_any = marginal_log_loss(flat_logits, flat_gold)
    best = tf.argmax(flat_logits, axis=-1, output_type=tf.int32)
    best_correct = tf.gather(flat_gold, best, batch_dims=1)
    return {"loss": retriever_loss + reader_loss, "retriever_loss": retriever_loss,
            "reader_loss": reader_loss, "beam_has_answer": beam_any,
            "reader_has_answer": reader_any, "reader_correct": best_correct,
            "reader_rows": rows, "reader_substituted": substituted}

  def _readable_answer(self, starts, length, features):
    """bool [B, R]: an answer match of `starts` [B, R, A, Lb] (over bodies of `length` [B, R]
    wordpieces) ends inside the part of the body that fits the reader input."""
    room = self.config.reader.seq_length - 3 - tf.cast(features["question_length"], tf.int32)
    readable = tf.maximum(tf.minimum(length, room[:, None]), 0)
    alen = tf.cast(features["answer_length"], tf.int32)[:, None, :, None]       # [B, 1, A, 1]
    end = tf.range(tf.shape(starts)[-1], dtype=tf.int32)[None, None, None, :] + alen
    return tf.reduce_any(tf.logical_and(starts, end <= readable[:, :, None, None]), axis=[2, 3])

  def _reader_positive(self, beam, blocks, features, starts, read, reader_positives):
    """`read` (rows, logits, bodies, lengths of the top K) with the K-th replaced by a positive
    where none bears an answer (see compute_loss), and bool [B] where it was replaced."""
    beam_rows, beam_scores = beam["beam_rows"], beam["beam_scores"]
    beam_bodies, beam_lengths = blocks["beam_bodies"], blocks["beam_lengths"]
    k = self.train_reader_beam_size
    readable = self._readable_answer(starts, beam_lengths, features)             # [B, M]
    need = tf.logical_not(tf.reduce_any(readable[:, :k], axis=-1))
    # The beam's best answer-bearing block (it lies past the first K when `need`).
    first = tf.argmax(tf.cast(readable, tf.int32), axis=-1, output_type=tf.int32)
    use = tf.logical_and(need, tf.reduce_any(readable, axis=-1))
    new = [tf.gather(x, first, batch_dims=1)
           for x in (beam_rows, beam_scores, beam_bodies, beam_lengths)]
    if reader_positives == "gold" and "gold_rows" in features:
      gold_rows = tf.cast(features["gold_rows"], tf.int32)                        # [B, G]
      gold_starts = features_lib.answer_start_matches(
          blocks["gold_bodies"], features["answer_ids"], features["answer_length"],
          self._continuation())
      gold_ok = tf.logical_and(
          self._readable_answer(gold_starts, blocks["gold_lengths"], features), gold_rows >= 0)
      use_gold = tf.logical_and(need, tf.reduce_any(gold_ok, axis=-1))
      j = tf.argmax(tf.cast(gold_ok, tf.int32), axis=-1, output_type=tf.int32)
      gold_row = tf.gather(gold_rows, j, batch_dims=1)
      emb = tf.gather(tf.convert_to_tensor(self._embeddings), tf.maximum(gold_row, 0))
      gold_logit = tf.reduce_sum(beam["q"] * emb, axis=-1)
      gold = [gold_row, gold_logit, tf.gather(blocks["gold_bodies"], j, batch_dims=1),
              tf.gather(blocks["gold_lengths"], j, batch_dims=1)]
      new = [_where(use_gold, g, n) for g, n in zip(gold, new)]
      use = tf.logical_or(use, use_gold)
    read = [tf.concat([x[:, :k - 1], _where(use, n, x[:, k - 1])[:, None]], axis=1)
            for x, n in zip(read, new)]
    return tuple(read), use

  # ---- inference -----------------------------------------------------------------------------

  def predict_spans(self, features, num_retrieved: Optional[int] = None, rows=None,
                    retrieval_scores=None):
    """Answers a batch: retrieval (or the given `rows` [B, R] / `retrieval_scores`), reading of
    the first K rows, and the best span over all K blocks.

    Returns dict: rows int32 [B, R], retrieval_scores [B, R], block_index [B] (in 0..K-1),
    start_piece / end_piece [B] (indices into the block body's wordpieces), probability [B]
    (softmax over every span of the K blocks), span_logit [B].
    """
    if rows is None:
      r = max(self.reader_beam_size, min(num_retrieved or 0, self._index.size))
      q = self.embed_questions(features, training=False)
      retrieval_scores, rows = self.retrieve(q, r)
    rows = tf.cast(rows, tf.int32)
    retrieval_scores = tf.cast(retrieval_scores, tf.float32)
    k = min(self.reader_beam_size, rows.shape[1]) if rows.shape[1] is not None \
        else self.reader_beam_size
    inputs = self.reader_inputs(features, rows[:, :k])
    span_logits, _ = self.read(inputs, retrieval_scores[:, :k], training=False)
    b = tf.shape(span_logits)[0]
    t, w = tf.shape(span_logits)[2], tf.shape(span_logits)[3]
    flat = tf.reshape(span_logits, [b, -1])
    best = tf.argmax(flat, axis=-1, output_type=tf.int32)
    prob = tf.gather(tf.nn.softmax(flat, axis=-1), best, batch_dims=1)
    block = best // (t * w)
    rem = best % (t * w)
    start = rem // w
    end = start + rem % w
    offset = tf.gather(inputs["block_offset"], block, batch_dims=1)
    return {"rows": rows, "retrieval_scores": retrieval_scores, "block_index": block,
            "start_piece": start - offset, "end_piece": end - offset, "probability": prob,
            "span_logit": tf.reduce_max(flat, axis=-1)}

  def build_all(self):
    """Creates every variable with one dummy forward pass."""
    fc = self.config.feature_config
    dummy = {f"query/{k}": tf.zeros([1, fc.query_seq_length], tf.int32) for k in _QUERY_KEYS}
    dummy["question_ids"] = tf.zeros([1, fc.reader_query_length - 2], tf.int32)
    dummy["question_length"] = tf.zeros([1], tf.int32)
    self.predict_spans(dummy)
    return self
