"""SQuAD-open: SQuAD v1.1 dev questions asked against the corpus of its 2,067 paragraphs.

Every question knows its gold paragraph (document id `"<article title>#<paragraph index>"`, the
id the corpus builder gives SQuAD paragraphs), so retrieval recall can be measured exactly.
"""
import dataclasses
import gzip
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


def load_squad_questions(path: Optional[str] = None, limit: Optional[int] = None
                         ) -> List[SquadQuestion]:
  """Reads SQuAD JSON (optionally gzipped; default: the shipped dev set) into questions."""
  path = path or default_corpus_path()
  opener = gzip.open if path.endswith(".gz") else open
  with opener(path, "rt", encoding="utf-8") as f:
    root = json.load(f)
  out = []
  for article in root["data"]:
    title = article["title"]
    for i, para in enumerate(article["paragraphs"]):
      for qa in para["qas"]:
        answers = tuple(dict.fromkeys(a["text"] for a in qa["answers"]))
        out.append(SquadQuestion(qa["id"], qa["question"], answers, f"{title}#{i}"))
        if limit and len(out) >= limit:
          return out
  return out
