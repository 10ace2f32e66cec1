"""The qrels figures equal trec_eval's (pytrec_eval) on the TREC run file evaluation writes."""
import numpy as np
import pytest
import pytrec_eval

from realm_tf.evaluation import qrels_metrics as Q
from realm_tf.evaluation import run_files

MEASURES = {"recall.1,5,20,100", "ndcg_cut.10"}


def _random_queries(seed, num_queries=40, num_docs=20):
  """Ranked blocks (several blocks a document, ties, ids with spaces) and graded judgements."""
  rng = np.random.default_rng(seed)
  docs = [f"doc {i}" if i % 7 == 0 else f"d{i}" for i in range(num_docs)]
  queries = []
  for q in range(num_queries):
    depth = int(rng.integers(0, 40)) if q else 0           # q0: nothing retrieved
    blocks = [docs[i] for i in rng.integers(0, num_docs, depth)]
    # Scores from a coarse grid: many exact ties, some between different documents.
    scores = np.sort(rng.integers(0, 25, depth).astype(np.float32) / 4)[::-1]
    judged = rng.choice(num_docs, int(rng.integers(1, 6)), replace=False)
    grades = {docs[i]: int(rng.choice([0, 1, 2, 3])) for i in judged}
    if q % 5 == 0:  # binary judgements as a list of ids
      grades = [d for d, g in grades.items() if g > 0] or [docs[int(judged[0])]]
    queries.append((f"q {q}", blocks, scores, grades))
  return queries


@pytest.mark.parametrize("seed", [0, 1])
def test_figures_equal_trec_evals_on_the_written_run(tmp_path, seed):
  queries = _random_queries(seed)
  path = str(tmp_path / "run.trec")
  scorer = Q.QrelsScorer()
  with run_files.TrecRunWriter(path, "test") as out:
    for qid, blocks, scores, relevant in queries:
      scorer.update(out.add(qid, blocks, scores), relevant)
  ours = scorer.result()
  assert ours["num_queries"] == len(queries)

  run = run_files.read_trec_run(path)
  qrels = {run_files.trec_field(qid): {d: int(g) for d, g in Q.grades(rel).items()}
           for qid, _, _, rel in queries}
  per_query = pytrec_eval.RelevanceEvaluator(qrels, MEASURES).evaluate(run)
  # recip_rank on the run cut at 10 (the file's ranks are trec_eval's order).
  cut = {}
  with open(path, encoding="utf-8") as f:
    for line in f:
      qid, _, doc, rank, score, _ = line.split()
      if int(rank) <= 10:
        cut.setdefault(qid, {})[doc] = float(score)
  mrr = pytrec_eval.RelevanceEvaluator(qrels, {"recip_rank"}).evaluate(cut)
  assert run_files.trec_field("q 0") not in run  # nothing retrieved: no line (trec_eval -c: 0)
  n = len(qrels)
  want = {f"recall@{k}": sum(v[f"recall_{k}"] for v in per_query.values()) / n
          for k in (1, 5, 20, 100)}
  want["ndcg@10"] = sum(v["ndcg_cut_10"] for v in per_query.values()) / n
  want["mrr@10"] = sum(v["recip_rank"] for v in mrr.values()) / n
  for name, value in want.items():
    assert ours[name] == pytest.approx(value, abs=1e-12), name
  assert 0 < want["mrr@10"] < 1 and 0 < want["ndcg@10"] < 1 and want["recall@100"] > \
      want["recall@1"] > 0


def test_one_query_by_hand():
  ranking = [("a", 3.0), ("c", 2.0), ("b", 2.0), ("x", 1.0)]
  got = Q.query_figures(ranking, {"b": 2, "x": 1, "z": 1, "c": 0}, recall_ks=(1, 3))
  ideal = 2 + 1 / np.log2(3) + 1 / np.log2(4)
  assert got == pytest.approx({"recall@1": 0.0, "recall@3": 1 / 3,
                               "ndcg@10": (2 / np.log2(4) + 1 / np.log2(5)) / ideal,
                               "mrr@10": 1 / 3})
  scorer = Q.QrelsScorer((1,))
  assert not scorer.update(ranking, None) and not scorer.update(ranking, [])
  assert scorer.result() == {"num_queries": 0}
  with pytest.raises(TypeError, match="list or a mapping"):
    Q.grades("doc1")
  assert Q.grades({"Super Bowl 50#0": 2}) == {"Super%20Bowl%2050#0": 2.0}
