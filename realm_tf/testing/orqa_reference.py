"""ORQA's predict, written in NumPy from the original's description, for the parity tests.

What google-research/language `orqa/models/orqa_model.py` (with `orqa/utils/bert_utils.py`, the
`ReaderInputs` op of `orqa/ops/orqa_ops.cc` and SQuAD's `get_final_text`) does for one question:

1. The question `[CLS] q [SEP]` (not truncated, no padding, segment 0) goes through the question
   encoder: BERT's pooled output, dense, LayerNorm (ε 1e-12) → q [128].
2. Retrieval: the 5 best rows of `block_emb` by inner product (ORQA asks ScaNN for them, then
   rescores them exactly with `q · block_emb[ids]`: the logits are exact inner products).
3. Each block body is split into original tokens (white space and punctuation, the BERT basic
   tokenizer's rule, original case kept), each token into wordpieces (lower case, NFD, accents
   stripped); the reader input is `[CLS] q [SEP] body [SEP]`, 320 long, question not cut, the body
   cut so that the last position is the closing [SEP], segment 1 from the body on; no title.
4. Reader BERT → sequence output h; `dense` [H, 2S] → start | end halves; for every span of 1-10
   wordpieces that starts and ends on body wordpieces (any wordpiece: ORQA has no word-boundary
   rule): `dense_1(LayerNorm_1e-3(ReLU(start[s] + end[e])))` + the block's retriever logit.
5. The best span over the 5 blocks; its answer is the original tokens it touches joined by one
   space, then SQuAD's `get_final_text` against the span's wordpieces joined by spaces.

Everything here is plain Python and NumPy (float64), independent of realm_tf's modules: the
tokenizer is the BERT basic + wordpiece tokenizer over the same vocabulary file; GELU is the tanh
form of Google's TF1 BERT. `span_text` is what realm_tf answers instead of step 5's string: the
original text between the span's first and last wordpiece.
"""
import contextlib
import dataclasses
import functools
import unicodedata
from typing import Dict, List, Mapping, Sequence, Tuple

import numpy as np

READER_LENGTH = 320
MAX_SPAN_WIDTH = 10
BEAM = 5
BLOCK_LENGTH = 288  # the embedder's `[CLS] title [SEP] body [SEP]`


# ---- tokenizer (BERT's basic + wordpiece, uncased) -------------------------------------------

def _is_punctuation(ch: str) -> bool:
  cp = ord(ch)
  if 33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126:
    return True
  return unicodedata.category(ch).startswith("P")


def _is_control(ch: str) -> bool:
  if ch in ("\t", "\n", "\r"):
    return False
  return unicodedata.category(ch) in ("Cc", "Cf")


_CJK = ((0x4E00, 0x9FFF), (0x3400, 0x4DBF), (0x20000, 0x2A6DF), (0x2A700, 0x2B73F),
        (0x2B740, 0x2B81F), (0x2B820, 0x2CEAF), (0xF900, 0xFAFF), (0x2F800, 0x2FA1F))


def _is_cjk(ch: str) -> bool:
  return any(a <= ord(ch) <= b for a, b in _CJK)


def original_tokens(text: str) -> List[Tuple[str, int, int]]:
  """(token, char start, char end) of ORQA's original tokens (`tokenize_with_original_mapping`:
  the TF.Text basic tokenizer's split of the text, original case kept): control and format
  characters are space, `\t \n \f \r` and space separate (RE2's `\s`, so a no-break space
  does not), every punctuation or CJK character is a token of its own."""
  out = []
  start = None
  for i, ch in enumerate(text + " "):
    separate = _is_punctuation(ch) or _is_cjk(ch)
    if ch in " \t\n\f\r" or unicodedata.category(ch) in ("Cc", "Cf") or separate:
      if start is not None:
        out.append((text[start:i], start, i))
        start = None
      if i < len(text) and separate:
        out.append((ch, i, i + 1))
    elif start is None:
      start = i
  return out


def basic_tokenize(text: str) -> List[str]:
  """BERT's Python `BasicTokenizer(do_lower_case=True).tokenize` (what SQuAD's `get_final_text`
  runs): NUL, U+FFFD and control characters dropped, every Unicode white space separates, lower
  case, NFD without combining marks, punctuation and CJK characters split off."""
  cleaned = "".join(" " if ch in "\t\n\r" or unicodedata.category(ch) == "Zs" else ch
                    for ch in text if ord(ch) not in (0, 0xFFFD) and not _is_control(ch))
  out = []
  for word in cleaned.split():
    word = normalize_token(word)
    current = ""
    for ch in word:
      if _is_punctuation(ch) or _is_cjk(ch):
        out += [current] if current else []
        out.append(ch)
        current = ""
      else:
        current += ch
    out += [current] if current else []
  return out


def normalize_token(token: str) -> str:
  """Lower case, NFD, combining marks removed (BERT's uncased normalisation)."""
  token = unicodedata.normalize("NFD", token.lower())  # Python's lower, as BasicTokenizer
  return "".join(ch for ch in token if unicodedata.category(ch) != "Mn")


class WordpieceTokenizer:
  """Greedy longest-match-first wordpieces over a BERT vocabulary file."""

  def __init__(self, vocab_path: str):
    with open(vocab_path, encoding="utf-8") as f:
      self.vocab = [line.rstrip("\n") for line in f]
    self.ids = {t: i for i, t in enumerate(self.vocab)}
    self.cls_id, self.sep_id = self.ids["[CLS]"], self.ids["[SEP]"]

  def word_pieces(self, word: str) -> List[str]:
    """Wordpieces of one normalised token (`[UNK]` when it cannot be split)."""
    if len(word) > 100:
      return ["[UNK]"]
    pieces, start = [], 0
    while start < len(word):
      end = len(word)
      while end > start:
        piece = word[start:end] if start == 0 else "##" + word[start:end]
        if piece in self.ids:
          break
        end -= 1
      if end == start:
        return ["[UNK]"]
      pieces.append(piece)
      start = end
    return pieces

  def tokenize(self, text: str) -> Dict[str, list]:
    """ids, pieces, token_map (original token of each piece), piece char offsets (start, end)
    into `text` (exact for texts whose normalisation keeps lengths, e.g. ASCII), tokens."""
    tokens = original_tokens(text)
    ids, pieces, token_map, offsets = [], [], [], []
    for t, (tok, a, _) in enumerate(tokens):
      pos = a
      for piece in self.word_pieces(normalize_token(tok)):
        n = len(piece) - (2 if piece.startswith("##") else 0)
        ids.append(self.ids[piece])
        pieces.append(piece)
        token_map.append(t)
        offsets.append((pos, pos + n))
        pos += n
    return {"ids": ids, "pieces": pieces, "token_map": token_map, "offsets": offsets,
            "tokens": [t[0] for t in tokens]}


def get_final_text(pred_text: str, orig_text: str) -> str:
  """SQuAD's `get_final_text` (uncased): the part of `orig_text` that `pred_text` (wordpieces
  joined by spaces) covers, or `orig_text` whole when it cannot be aligned."""
  tok_text = " ".join(basic_tokenize(orig_text))
  start = tok_text.find(pred_text)
  if start == -1:
    return orig_text
  end = start + len(pred_text) - 1

  def strip_spaces(text):
    chars, mapping = [], {}
    for i, c in enumerate(text):
      if c == " ":
        continue
      mapping[len(chars)] = i
      chars.append(c)
    return "".join(chars), mapping

  orig_ns, orig_map = strip_spaces(orig_text)
  tok_ns, tok_map = strip_spaces(tok_text)
  if len(orig_ns) != len(tok_ns):
    return orig_text
  tok_s_to_ns = {v: k for k, v in tok_map.items()}
  if start not in tok_s_to_ns or end not in tok_s_to_ns:
    return orig_text
  a, b = orig_map.get(tok_s_to_ns[start]), orig_map.get(tok_s_to_ns[end])
  if a is None or b is None:
    return orig_text
  return orig_text[a:b + 1]


def answer_of_span(tokenized: Dict[str, list], start_piece: int, end_piece: int) -> str:
  """ORQA's answer for wordpieces [start_piece, end_piece] of a tokenized body
  (`WordpieceTokenizer.tokenize`): the original tokens they fall in joined by one space, through
  `get_final_text` with the wordpieces joined by one space (`##` kept, as ORQA joins them)."""
  first, last = tokenized["token_map"][start_piece], tokenized["token_map"][end_piece]
  orig = " ".join(tokenized["tokens"][first:last + 1])
  return get_final_text(" ".join(tokenized["pieces"][start_piece:end_piece + 1]), orig)


def _one_blas_thread(fn):
  """Runs `fn` with BLAS on one thread: the reference's matrices are small, and a multi-threaded
  OpenBLAS on a loaded machine made each [40, 128] product ~100x slower."""
  @functools.wraps(fn)
  def wrapper(*args, **kwargs):
    try:
      from threadpoolctl import threadpool_limits  # pylint: disable=g-import-not-at-top
      limit = threadpool_limits(limits=1, user_api="blas")
    except ImportError:
      limit = contextlib.nullcontext()
    with limit:
      return fn(*args, **kwargs)
  return wrapper


# ---- BERT (Google's TF1 layout and names) ----------------------------------------------------

def _gelu(x):
  return 0.5 * x * (1.0 + np.tanh(np.sqrt(2.0 / np.pi) * (x + 0.044715 * x ** 3)))


def _layer_norm(x, gamma, beta, eps):
  mean = x.mean(-1, keepdims=True)
  var = ((x - mean) ** 2).mean(-1, keepdims=True)
  return (x - mean) / np.sqrt(var + eps) * gamma + beta


def bert(weights: Mapping[str, np.ndarray], prefix: str, ids, mask, types, num_heads: int):
  """BERT over int [B, T] inputs with the variables `<prefix>bert/...` → (sequence [B, T, H],
  pooled [B, H]), float64."""
  w = lambda n: np.asarray(weights[prefix + "bert/" + n], np.float64)  # pylint: disable=unnecessary-lambda-assignment
  ids, mask, types = (np.asarray(a) for a in (ids, mask, types))
  t = ids.shape[1]
  words = np.asarray(weights[prefix + "bert/embeddings/word_embeddings"][ids], np.float64)
  x = (words + w("embeddings/position_embeddings")[:t][None]
       + w("embeddings/token_type_embeddings")[types])
  x = _layer_norm(x, w("embeddings/LayerNorm/gamma"), w("embeddings/LayerNorm/beta"), 1e-12)
  bias = (1.0 - mask[:, None, None, :].astype(np.float64)) * -10000.0
  layer = 0
  while prefix + f"bert/encoder/layer_{layer}/attention/self/query/kernel" in weights:
    p = f"encoder/layer_{layer}/"
    lin = lambda name, v: v @ w(p + name + "/kernel") + w(p + name + "/bias")  # pylint: disable=unnecessary-lambda-assignment,cell-var-from-loop
    b, h = x.shape[0], x.shape[2]
    d = h // num_heads
    split = lambda v: v.reshape(b, t, num_heads, d).transpose(0, 2, 1, 3)  # pylint: disable=unnecessary-lambda-assignment,cell-var-from-loop
    q, k, v = (split(lin(f"attention/self/{n}", x)) for n in ("query", "key", "value"))
    scores = q @ k.transpose(0, 1, 3, 2) / np.sqrt(d) + bias
    scores = np.exp(scores - scores.max(-1, keepdims=True))
    probs = scores / scores.sum(-1, keepdims=True)
    context = (probs @ v).transpose(0, 2, 1, 3).reshape(b, t, h)
    x = _layer_norm(lin("attention/output/dense", context) + x,
                    w(p + "attention/output/LayerNorm/gamma"),
                    w(p + "attention/output/LayerNorm/beta"), 1e-12)
    inner = _gelu(lin("intermediate/dense", x))
    x = _layer_norm(lin("output/dense", inner) + x, w(p + "output/LayerNorm/gamma"),
                    w(p + "output/LayerNorm/beta"), 1e-12)
    layer += 1
  pooled = np.tanh(x[:, 0] @ w("pooler/dense/kernel") + w("pooler/dense/bias"))
  return x, pooled


@_one_blas_thread
def embed(weights, bert_prefix: str, projection_prefix: str, ids, mask, types, num_heads: int):
  """A REALM/ORQA embedder: LayerNorm(dense(pooled output)) → float64 [B, D]."""
  _, pooled = bert(weights, bert_prefix, ids, mask, types, num_heads)
  w = lambda n: np.asarray(weights[projection_prefix + n], np.float64)  # pylint: disable=unnecessary-lambda-assignment
  return _layer_norm(pooled @ w("dense/kernel") + w("dense/bias"), w("LayerNorm/gamma"),
                     w("LayerNorm/beta"), 1e-12)


@_one_blas_thread
def embed_blocks(weights, tokenizer: WordpieceTokenizer, titles: Sequence[str],
                 bodies: Sequence[str], num_heads: int, bert_prefix: str = "module/module/module/",
                 projection_prefix: str = "module/module/") -> np.ndarray:
  """`block_emb` of the pre-trained embedder: `[CLS] title [SEP] body [SEP]` (288, body cut
  first), segment 0 then 1 → float32 [N, D]."""
  rows = []
  for title, body in zip(titles, bodies):
    t_ids, b_ids = tokenizer.tokenize(title)["ids"], tokenizer.tokenize(body)["ids"]
    t_ids = t_ids[:BLOCK_LENGTH - 3]
    b_ids = b_ids[:BLOCK_LENGTH - 3 - len(t_ids)]
    ids = [tokenizer.cls_id] + t_ids + [tokenizer.sep_id] + b_ids + [tokenizer.sep_id]
    types = [0] * (len(t_ids) + 2) + [1] * (len(b_ids) + 1)
    rows.append(embed(weights, bert_prefix, projection_prefix, [ids], [[1] * len(ids)], [types],
                      num_heads)[0])
  return np.asarray(rows, np.float32)


# ---- predict ---------------------------------------------------------------------------------

@dataclasses.dataclass
class Prediction:
  """One question's ORQA prediction (rows are `block_emb` rows, best first)."""
  rows: np.ndarray              # int [5]
  retrieval_logits: np.ndarray  # float64 [5]
  block_index: int              # which of the 5
  start_piece: int              # span, as indices into the body's wordpieces
  end_piece: int
  span_logit: float
  runner_up_logit: float        # the best span logit other than the chosen one
  answer: str                   # ORQA's answer string (step 5)
  span_text: str                # the original text of the span's wordpieces (realm_tf's answer)


def reader_input(question_ids: Sequence[int], body_ids: Sequence[int], cls_id: int, sep_id: int,
                 length: int = READER_LENGTH):
  """ORQA's `ReaderInputs` for one block: (ids, mask, segment ids, body position of each reader
  position or -1)."""
  ids, types, body_pos = [cls_id], [0], [-1]
  for tok in question_ids:
    ids.append(tok), types.append(0), body_pos.append(-1)
  ids.append(sep_id), types.append(0), body_pos.append(-1)
  for j, tok in enumerate(body_ids):
    if len(ids) >= length - 1:
      break
    ids.append(tok), types.append(1), body_pos.append(j)
  if len(ids) < length:
    ids.append(sep_id), types.append(1), body_pos.append(-1)
  ids, types, body_pos = ids[:length], types[:length], body_pos[:length]
  mask = [1] * len(ids) + [0] * (length - len(ids))
  pad = length - len(ids)
  return (np.array(ids + [0] * pad), np.array(mask), np.array(types + [0] * pad),
          np.array(body_pos + [-1] * pad))


@_one_blas_thread
def predict(weights: Mapping[str, np.ndarray], block_emb: np.ndarray, bodies: Sequence[str],
            tokenizer: WordpieceTokenizer, question: str, num_heads: int,
            add_retriever_logit: bool = True, titles=None) -> Prediction:
  """ORQA's prediction for `question` with a released model's `weights` (name → array).

  `add_retriever_logit=False` and `titles` (the reader reads `title [SEP] body`) give what a
  reader with those two defects would answer: the parity test checks they change its answers.
  """
  q = tokenizer.tokenize(question)["ids"]
  q_ids = [tokenizer.cls_id] + q + [tokenizer.sep_id]
  q_emb = embed(weights, "module/module/module/module/", "module/module/module/", [q_ids],
                [[1] * len(q_ids)], [[0] * len(q_ids)], num_heads)[0]
  scores = np.asarray(block_emb, np.float64) @ q_emb
  rows = np.argsort(-scores, kind="stable")[:BEAM]
  logits = np.asarray(block_emb[rows], np.float64) @ q_emb
  w = lambda n: np.asarray(weights["reader/" + n], np.float64)  # pylint: disable=unnecessary-lambda-assignment
  s = w("dense/kernel").shape[1] // 2
  best = []  # (logit, block, start, end)
  toks = [tokenizer.tokenize(bodies[r]) for r in rows]
  for k, r in enumerate(rows):
    body = toks[k]["ids"]
    if titles is not None:
      body = tokenizer.tokenize(titles[r])["ids"] + [tokenizer.sep_id] + body
    ids, mask, types, body_pos = reader_input(q, body, tokenizer.cls_id, tokenizer.sep_id)
    if titles is not None:  # positions of the title read as not in the body
      body_pos = np.where(body_pos >= 0, body_pos - (len(body) - len(toks[k]["ids"])), -1)
    n = int(mask.sum())  # padding is masked out: the first n positions' outputs do not see it
    seq, _ = bert(weights, "reader/module/", ids[None, :n], mask[None, :n], types[None, :n],
                  num_heads)
    proj = seq[0] @ w("dense/kernel") + w("dense/bias")
    start, end = proj[:, :s], proj[:, s:]
    body_pos = body_pos[:n]
    in_body = np.nonzero(body_pos >= 0)[0]
    pairs = [(a, a + width) for a in in_body for width in range(MAX_SPAN_WIDTH)
             if a + width < len(body_pos) and body_pos[a + width] >= 0]
    a_idx, e_idx = np.array(pairs).T
    hidden = _layer_norm(np.maximum(start[a_idx] + end[e_idx], 0.0),
                         w("layer_normalization/gamma"), w("layer_normalization/beta"), 1e-3)
    span_logits = hidden @ w("dense_1/kernel")[:, 0] + w("dense_1/bias")[0]
    if add_retriever_logit:
      span_logits = span_logits + logits[k]
    best += [(float(x), k, int(body_pos[a]), int(body_pos[e]))
             for x, a, e in zip(span_logits, a_idx, e_idx)]
  best.sort(key=lambda x: -x[0])
  logit, k, a, e = best[0]
  tok = toks[k]
  answer = answer_of_span(tok, a, e)
  text = bodies[rows[k]][tok["offsets"][a][0]:tok["offsets"][e][1]]
  return Prediction(rows=rows, retrieval_logits=logits, block_index=k, start_piece=a,
                    end_piece=e, span_logit=logit, runner_up_logit=best[1][0], answer=answer,
                    span_text=text)
