"""What evaluation makes of each question's ranked blocks: retrieval figures and run files.

`RetrievalOutputs` takes one question at a time (its index rows, best first, with their titles,
texts, scores and has_answer flags) and

  * counts DPR's top-k accuracy (`topk_accuracy`) and the recall@k of the answer strings (the
    same share: an answer string in the top k blocks);
  * writes the question's entry of the DPR retriever-results JSON and its lines of the TREC run
    (`run_files`), ids from the corpus (`data.doc_ids`);
  * scores the question's judged documents, when it has some (`qrels_metrics`, trec_eval's
    figures of the TREC ranking).

Memory is one question's list: the files are streamed and published when the `with` block ends
without an error (nothing is published when evaluation fails).
"""
import contextlib
from typing import Dict, Optional, Sequence

import numpy as np

from realm_tf.evaluation import qrels_metrics
from realm_tf.evaluation import run_files
from realm_tf.evaluation import topk_accuracy


def judgements(example) -> Dict[str, float]:
  """{doc_id: grade} of an OpenQAExample's judged-relevant documents (`relevant_doc_ids`, grades
  in `relevance`, 1 each when absent); {} for a question without judgements."""
  docs = tuple(getattr(example, "relevant_doc_ids", ()) or ())
  grades = tuple(getattr(example, "relevance", ()) or ())
  if grades and len(grades) != len(docs):
    raise ValueError(f"Example {example.qid!r}: {len(docs)} relevant documents but "
                     f"{len(grades)} relevance grades.")
  return {d: float(g) for d, g in zip(docs, grades or (1,) * len(docs))}


class RetrievalOutputs:
  """Per-question retrieval figures and run files (see module docstring).

    with RetrievalOutputs(index, doc_ids, dpr_path, trec_path, tag, depth=100) as out:
      out.add(example, rows, evidence, hits)
    out.result()

  `index` is the FrozenIndex the rows index; `doc_ids` the corpus's `DocIdTable` (needed for the
  files and for judged questions). `depth` blocks per question go to the files and the qrels
  figures; `recall_ks` may look deeper when the rows are; `accuracy_ks` are the k of the top-k
  accuracy and of the judged documents' recall@k.
  """

  def __init__(self, index, doc_ids=None, dpr_results_path: Optional[str] = None,
               trec_run_path: Optional[str] = None, tag: str = "realm_tf", depth: int = 100,
               recall_ks: Sequence[int] = (), accuracy_ks: Sequence[int] = topk_accuracy.DPR_KS):
    if doc_ids is None and (dpr_results_path or trec_run_path):
      raise ValueError("Writing run files needs the corpus's doc ids (data.doc_ids.DocIdTable).")
    self.index = index
    self.doc_ids = doc_ids
    self.depth = int(depth)
    self.recall_ks = tuple(recall_ks)
    self.accuracy_ks = tuple(accuracy_ks)
    self.accuracy = topk_accuracy.TopKAccuracy()
    self.num_with_answers = 0
    # The judged figures' recall@k at the same k as the accuracy (a list of the whole corpus
    # is its top k for every k).
    self.qrels = qrels_metrics.QrelsScorer(self.accuracy_ks)
    self._paths = (dpr_results_path, trec_run_path)
    self._tag = tag
    self._stack = contextlib.ExitStack()
    self._dpr = self._trec = None

  def __enter__(self):
    dpr_path, trec_path = self._paths
    if dpr_path:
      self._dpr = self._stack.enter_context(run_files.DprResultsWriter(dpr_path))
    if trec_path:
      self._trec = self._stack.enter_context(run_files.TrecRunWriter(trec_path, self._tag))
    return self

  def __exit__(self, *exc):
    return self._stack.__exit__(*exc)

  def add(self, example, rows: Sequence[int], evidence: Sequence[Dict], hits) -> None:
    """One question: index `rows` best first, their `evidence` dicts (title, text,
    retrieval_score) and has_answer flags `hits` (bool, at least as long as the rows)."""
    judged = judgements(example)
    if judged and self.doc_ids is None:
      raise ValueError(f"Example {example.qid!r} has judged documents: scoring them needs the "
                       "corpus's doc ids (data.doc_ids.DocIdTable).")
    hits = np.asarray(hits, dtype=bool)[:len(rows)]
    self.accuracy.update(hits[None, :])
    self.num_with_answers += bool(example.answers)
    if self._dpr is None and self._trec is None and not judged:
      return
    top = np.asarray(rows[:self.depth], np.int64)
    lookup_rows = self.index.lookup_rows[top] if len(top) else top
    scores = [ev["retrieval_score"] for ev in evidence[:len(top)]]
    if self._dpr is not None:
      contexts = self.doc_ids.context_ids(lookup_rows)
      self._dpr.add(example.question, example.answers, [
          run_files.dpr_context(cid, ev["title"], ev["text"], ev["retrieval_score"], hit)
          for cid, ev, hit in zip(contexts, evidence, hits)])
    documents = self.doc_ids.doc_ids(lookup_rows)
    if self._trec is not None:
      ranking = self._trec.add(example.qid, documents, scores)
    else:
      ranking = run_files.trec_ranking(documents, scores)
    self.qrels.update(ranking, judged)

  def result(self) -> Dict:
    """recall@k (recall_ks) and topK_accuracy (accuracy_ks) when some question had answer
    strings (questions without count as misses), and `qrels` ({num_queries, recall@k, ndcg@10,
    mrr@10}) when some question had judged documents."""
    out = {}
    if self.num_with_answers:
      out.update({f"recall@{k}": self.accuracy.fraction_within(k) for k in self.recall_ks})
      out.update(self.accuracy.result(self.accuracy_ks))
    if self.qrels.num_queries:
      out["qrels"] = self.qrels.result()
    return out
