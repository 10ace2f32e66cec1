"""The scale benchmark's synthetic corpus: documents of shuffled shipped sentences that the real
corpus builder cuts into full 288-wordpiece blocks.

The shipped text's sentences (SQuAD v1.1 dev, WikiText-2 test; the block builder's own splitter)
have their wordpieces counted once. Document `i` (`synthetic-<i>`) is drawn from a generator seeded
by `(seed, i)`: a shipped title and `blocks_per_document` groups of sentences, each filled to within
a few wordpieces of a block's body, so the builder's greedy packing gives back exactly those
groups. A smaller corpus is a prefix of a larger one (same block ids).
"""
import itertools
import json
import os
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np

BLOCK_LENGTH = 288
SPECIAL_PIECES = 3  # [CLS] title [SEP] body [SEP]
MIN_SENTENCE_PIECES = 5
MAX_SENTENCE_PIECES = 120
# Draws tried to fill a group's remaining room before it is closed.
FILL_TRIES = 24
_SENTENCE_START = tuple("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")
_SENTENCE_END = (".", "!", "?")


def _shipped_documents():
  from realm_tf.data import default_corpus, documents  # pylint: disable=g-import-not-at-top
  for path in (default_corpus.default_corpus_path(), default_corpus.wikitext2_test_path()):
    for d in documents.read_documents(path):
      if isinstance(d, documents.Document):
        yield d


def _wordpiece_counts(texts: Sequence[str], batch: int = 2048) -> List[int]:
  """Wordpieces of each text with the real tokenizer (the default uncased vocabulary)."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from realm_tf.text import RealmTokenizer  # pylint: disable=g-import-not-at-top
  tokenizer = RealmTokenizer()
  out = []
  for lo in range(0, len(texts), batch):
    out += tokenizer.tokenize(tf.constant(list(texts[lo:lo + batch]))).row_lengths().numpy(
        ).tolist()
  return out


def shipped_text(cache_path: str, max_documents: Optional[int] = None) -> Dict[str, list]:
  """{"sentences", "sentence_pieces", "titles", "title_pieces"} of the shipped text's first
  `max_documents` documents (None: all): whole sentences of 5 to 120 wordpieces, each once, and
  distinct titles; cached as JSON at `cache_path`."""
  if os.path.exists(cache_path):
    with open(cache_path) as f:
      return json.load(f)
  from realm_tf.data import blocking  # pylint: disable=g-import-not-at-top
  sentences, titles, seen = [], [], set()
  for doc in itertools.islice(_shipped_documents(), max_documents):
    if doc.title and doc.title not in titles:
      titles.append(doc.title)
    for s, e in blocking.split_sentences(doc.text):
      sent = " ".join(doc.text[s:e].split())
      if sent.startswith(_SENTENCE_START) and sent.endswith(_SENTENCE_END) and sent not in seen:
        seen.add(sent)
        sentences.append(sent)
  pieces = _wordpiece_counts(sentences)
  keep = [i for i, n in enumerate(pieces) if MIN_SENTENCE_PIECES <= n <= MAX_SENTENCE_PIECES]
  title_pieces = _wordpiece_counts(titles)
  text = {"sentences": [sentences[i] for i in keep],
          "sentence_pieces": [pieces[i] for i in keep],
          "titles": titles, "title_pieces": title_pieces}
  from realm_tf.io import atomic  # pylint: disable=g-import-not-at-top
  os.makedirs(os.path.dirname(os.path.abspath(cache_path)), exist_ok=True)
  atomic.write_json(cache_path, text, indent=None, sort_keys=False)
  return text


def document_groups(index: int, seed: int, sentence_pieces: np.ndarray, title_pieces: np.ndarray,
                    blocks_per_document: int) -> Tuple[int, List[List[int]]]:
  """Document `index`'s title and sentence groups (indices), one group per block, deterministic
  in (seed, index). A drawn sentence that does not fit the open group is skipped (up to
  FILL_TRIES in a row); then the next group opens with one that did not fit, so greedy packing
  gives back exactly these groups."""
  rng = np.random.default_rng([seed, index])
  title = int(rng.integers(len(title_pieces)))
  budget = BLOCK_LENGTH - SPECIAL_PIECES - int(title_pieces[title])
  groups, room, misses = [], 0, 0
  while True:
    for s in rng.integers(len(sentence_pieces), size=256).tolist():
      n = int(sentence_pieces[s])
      if n > budget:
        continue
      if groups and n <= room:
        groups[-1].append(s)
        room -= n
      elif groups and room >= MIN_SENTENCE_PIECES and misses < FILL_TRIES:
        misses += 1
      elif len(groups) == blocks_per_document:
        return title, groups
      else:
        groups.append([s])
        room, misses = budget - n, 0


def synthetic_documents(start: int, stop: int, text: Dict[str, list], seed: int = 0,
                        blocks_per_document: int = 8) -> Iterator[Dict[str, str]]:
  """Documents `start` .. `stop - 1` as {"id", "title", "text"} (see the module docstring)."""
  pieces = np.asarray(text["sentence_pieces"], np.int64)
  title_pieces = np.asarray(text["title_pieces"], np.int64)
  sentences, titles = text["sentences"], text["titles"]
  for i in range(start, stop):
    title, groups = document_groups(i, seed, pieces, title_pieces, blocks_per_document)
    yield {"id": f"synthetic-{i:09d}", "title": titles[title],
           "text": " ".join(sentences[s] for g in groups for s in g)}


def write_jsonl(path: str, num_documents: int, text: Dict[str, list], seed: int = 0,
                blocks_per_document: int = 8, progress=None) -> int:
  """Writes documents 0 .. num_documents - 1 as JSON lines to `path`, atomically, calling
  `progress(count)` every 10,000 documents; returns its bytes."""
  tmp = f"{path}.tmp-{os.getpid()}"
  with open(tmp, "w", encoding="utf-8") as f:
    for i, doc in enumerate(synthetic_documents(0, num_documents, text, seed,
                                                blocks_per_document), 1):
      f.write(json.dumps(doc, ensure_ascii=False) + "\n")
      if progress is not None and i % 10_000 == 0:
        progress(i)
  os.replace(tmp, path)
  return os.path.getsize(path)


def documents_for(num_blocks: int, blocks_per_document: int) -> int:
  """Documents a corpus of at least `num_blocks` blocks is written from."""
  return -(-int(num_blocks) // int(blocks_per_document))
