"""SQuAD-open: SQuAD v1.1 dev questions asked against the corpus of its 2,067 paragraphs.

Every question knows its gold paragraph (document id `"<article title>#<paragraph index>"`, the
id the corpus builder gives SQuAD paragraphs), so retrieval recall can be measured exactly.
"""
import dataclasses
import gzip
import hashlib
import json
from typing import List, Optional, Tuple

from realm_tf.data.documents import default_corpus_path


@dataclasses.dataclass(frozen=True)
class SquadQuestion:
  """One SQuAD question with its answers and gold paragraph's document id."""
  qid: str
  question: str
  answers: Tuple[str, ...]
  doc_id: str


SPLITS = ("train", "dev", "all")
DEV_BUCKETS = 5  # articles whose title hashes to 0 mod 5 form the dev split


def split_of(title: str) -> str:
  """`train` or `dev`: SQuAD-open's split by article (no paragraph is in both)."""
  h = int(hashlib.md5(title.encode("utf-8")).hexdigest(), 16)
  return "dev" if h % DEV_BUCKETS == 0 else "train"


def load_squad_questions(path: Optional[str] = None, limit: Optional[int] = None,
                         split: str = "all") -> List[SquadQuestion]:
  """Reads SQuAD JSON (optionally gzipped; default: the shipped dev set) into questions.

  `split` picks SQuAD-open's article split (`train`, `dev`) or `all` questions.
  """
  if split not in SPLITS:
    raise ValueError(f"SQuAD-open split must be one of {SPLITS}, got {split!r}.")
  path = path or default_corpus_path()
  opener = gzip.open if path.endswith(".gz") else open
  with opener(path, "rt", encoding="utf-8") as f:
    root = json.load(f)
  out = []
  for article in root["data"]:
    title = article["title"]
    if split != "all" and split_of(title) != split:
      continue
    for i, para in enumerate(article["paragraphs"]):
      for qa in para["qas"]:
        answers = tuple(dict.fromkeys(a["text"] for a in qa["answers"]))
        out.append(SquadQuestion(qa["id"], qa["question"], answers, f"{title}#{i}"))
        if limit and len(out) >= limit:
          return out
  return out


def first_question_per_article(split: str = "dev", path: Optional[str] = None
                               ) -> List[SquadQuestion]:
  """The first question of every article of `split`, in file order: a fixed sample whose
  choice does not depend on how any model answers it (`make demo` asks these)."""
  first = {}
  for q in load_squad_questions(path, split=split):
    first.setdefault(q.doc_id.split("#")[0], q)
  return list(first.values())
