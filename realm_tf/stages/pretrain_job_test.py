"""Tests of the main job's goals and closing lines (the stages run in tests/test_pretrain_e2e.py)."""
import pytest

from realm_tf.stages import pretrain_job

START = {"step": 0, "index_version": 1, "heldout_retrieval_utility": 0.10,
         "heldout_retrieval_utility_stderr": 0.03, "heldout_null_posterior": 0.05,
         "heldout_mlm_accuracy": 0.07, "heldout_null_mlm_accuracy": 0.07,
         "question_recall@5": 0.276, "question_recall@20": 0.441,
         "bm25_question_recall@5": 0.89, "bm25_question_recall@20": 0.945}


def _end(**changes):
  return dict(START, step=100, index_version=3, **changes)


def test_learning_goals_from_the_figures_before_and_after():
  # +0.05 is an improvement, but not beyond 2 * hypot(0.03, 0.04) = 0.1.
  goals = pretrain_job.learning_goals(START, _end(heldout_retrieval_utility=0.15,
                                                  heldout_retrieval_utility_stderr=0.04,
                                                  **{"question_recall@5": 0.276}))
  assert goals == {"heldout_utility_positive": True, "heldout_utility_improved": True,
                   "heldout_utility_improved_beyond_2_stderr": False,
                   "null_posterior_below_0.9": True, "question_recall@5_not_below_start": True}
  goals = pretrain_job.learning_goals(START, _end(heldout_retrieval_utility=0.21,
                                                  heldout_retrieval_utility_stderr=0.04))
  assert goals["heldout_utility_improved_beyond_2_stderr"]
  goals = pretrain_job.learning_goals(START, _end(heldout_retrieval_utility=-0.01,
                                                  heldout_null_posterior=0.95,
                                                  **{"question_recall@5": 0.275}))
  assert not any(goals.values()), goals


def test_closing_lines_are_short_and_carry_the_figures():
  summary = {"corpus_blocks": 3868, "annotated_records": 3383,
             "ict": {"loss": 1.2, "accuracy": 0.69}, "heldout_start": START,
             "heldout_end": _end(heldout_retrieval_utility=0.2),
             "goals": pretrain_job.learning_goals(START, _end(heldout_retrieval_utility=0.2))}
  text = pretrain_job.format_summary(summary)
  lines = text.splitlines()
  assert max(len(line) for line in lines) <= 200, lines
  held = [line for line in lines if line.startswith("Held-out")]
  assert len(held) == 2
  assert "utility=0.1000±0.0300" in held[0] and "utility=0.2000±0.0300" in held[1]
  assert "question_recall@5=0.276 @20=0.441 (BM25 0.890 @20 0.945)" in held[1]
  assert "heldout_utility_improved=yes" in lines[-1]


def test_the_improvement_goal_compares_the_same_sentences_pair_by_pair():
  # Means +0.10 → +0.15 (as above: not beyond the unpaired bound 0.1), but every sentence moved
  # by +0.05 ± 0.01: the paired standard error is tiny and the change is beyond it.
  before = [0.10 + d for d in (-0.2, -0.1, 0.0, 0.1, 0.2)]
  after = [b + 0.05 + e for b, e in zip(before, (0.01, -0.01, 0.0, 0.01, -0.01))]
  start = dict(START, heldout_retrieval_utility_per_query=before)
  end = _end(heldout_retrieval_utility=0.15, heldout_retrieval_utility_stderr=0.04,
             heldout_retrieval_utility_per_query=after)
  assert pretrain_job.learning_goals(start, end)["heldout_utility_improved_beyond_2_stderr"]
  # The same means with the sentences reshuffled: differences of ±0.3, a noise the paired test
  # sees and refuses.
  end["heldout_retrieval_utility_per_query"] = after[::-1]
  assert not pretrain_job.learning_goals(start, end)["heldout_utility_improved_beyond_2_stderr"]


def test_paired_change_lines_and_summary_leave_the_per_sentence_lists_out():
  start = dict(START, heldout_retrieval_utility_per_query=[0.0, 0.1, 0.2, 0.3])
  end = _end(heldout_retrieval_utility_per_query=[0.1, 0.1, 0.4, 0.3])
  change = pretrain_job.heldout_lib.paired_change(start, end)
  # Differences 0.1, 0, 0.2, 0: mean 0.075, sample std sqrt(0.00916667), stderr that / 2.
  assert abs(change["mean"] - 0.075) < 1e-12 and change["sentences"] == 4
  assert abs(change["paired_stderr"] - (0.0275 / 3) ** 0.5 / 2) < 1e-12
  assert pretrain_job.heldout_lib.paired_change(START, end) is None  # an older record
  summary = {"heldout_start": start, "heldout_end": end, "heldout_utility_change": change}
  line = [x for x in pretrain_job.format_summary(summary).splitlines()
          if x.startswith("Held-out utility change")]
  assert line == ["Held-out utility change, sentence by sentence over the same 4: "
                  "+0.0750 ± 0.0479 (standard error)"]
  assert "heldout_retrieval_utility_per_query" not in \
      pretrain_job.heldout_lib.scalar_figures(end)


def test_realm_and_the_warmup_get_the_same_query_split():
  job = pretrain_job.PretrainJobConfig(realm_query_fraction=0.25, heldout_fraction=0.1)
  pretrain = pretrain_job.pretrain_config(job)
  assert (pretrain.heldout_fraction, pretrain.realm_query_fraction) == (0.1, 0.25)
  warmup = pretrain_job.reader_warmup_config(job)
  assert (warmup.heldout_fraction, warmup.realm_query_fraction) == (0.1, 0.25)
  # Without a warm-up (a reader with its MLM head, or none asked for), REALM reads every block.
  no_warmup = pretrain_job.PretrainJobConfig(realm_query_fraction=0.25, reader_warmup_steps=0)
  assert pretrain_job.pretrain_config(no_warmup).realm_query_fraction == 0.0


def test_ict_and_the_warmup_checkpoint_at_realms_cadence():
  """Each stage of the job saves every `checkpoint_every` steps, so a killed ICT run or warm-up
  resumes mid-run instead of from its start (they used to save once, at their last step)."""
  job = pretrain_job.PretrainJobConfig(ict_steps=300, reader_warmup_steps=300, checkpoint_every=50)
  assert pretrain_job.ict_config(job).checkpoint_every == 50
  assert pretrain_job.reader_warmup_config(job).checkpoint_every == 50
  assert pretrain_job.pretrain_config(job).checkpoint_every == 50
  assert pretrain_job.ict_config(job).num_train_steps == 300


def test_the_warmup_reads_distractors_at_the_jobs_rate():
  job = pretrain_job.PretrainJobConfig(reader_warmup_distractor_rate=0.3)
  assert pretrain_job.reader_warmup_config(job).distractor_rate == 0.3


@pytest.mark.parametrize("train_retriever,train_reader", [(True, False), (False, True)])
def test_the_realm_stage_trains_the_towers_the_job_names(train_retriever, train_reader):
  job = pretrain_job.PretrainJobConfig(train_retriever=train_retriever, train_reader=train_reader)
  pretrain = pretrain_job.pretrain_config(job)
  assert (pretrain.train_retriever, pretrain.train_reader) == (train_retriever, train_reader)


@pytest.mark.parametrize("rate", [0.0, 0.05])
def test_a_null_bias_rate_turns_the_models_null_bias_on(rate):
  pretrain = pretrain_job.pretrain_config(pretrain_job.PretrainJobConfig(
      null_bias_learning_rate=rate))
  assert pretrain.null_bias_learning_rate == rate
  assert pretrain.model.null_score_bias == (rate > 0)


def test_paired_recall_change_counts_questions_moved_and_their_sign_test():
  # 14 questions: 3 stay hits, 3 gained (0 → 1), 8 lost (1 → 0).
  before = [1, 1, 1] + [0, 0, 0] + [1] * 8
  after = [1, 1, 1] + [1, 1, 1] + [0] * 8
  start = dict(START, **{"question_hit@5_per_question": before})
  end = _end(**{"question_hit@5_per_question": after})
  moved = pretrain_job.heldout_lib.paired_recall_change(start, end)
  # Sign test: 3 of 11 moved questions went up; two-sided p = 2 * P(X <= 3), X ~ Bin(11, 1/2)
  # = 2 * (1 + 11 + 55 + 165) / 2048.
  assert (moved["questions"], moved["gained"], moved["lost"]) == (14, 3, 8)
  assert abs(moved["change"] - (3 - 8) / 14) < 1e-12
  assert abs(moved["sign_test_p"] - 2 * 232 / 2048) < 1e-12
  # Nothing moved: p = 1. Different question lists or an older record: no comparison.
  assert pretrain_job.heldout_lib.paired_recall_change(start, start)["sign_test_p"] == 1.0
  assert pretrain_job.heldout_lib.paired_recall_change(
      start, _end(**{"question_hit@5_per_question": after[:-1]})) is None
  assert pretrain_job.heldout_lib.paired_recall_change(START, end) is None
  line = [x for x in pretrain_job.format_summary({"question_recall_change": moved}).splitlines()
          if x.startswith("Question recall@5 change")]
  assert line == ["Question recall@5 change, question by question over the same 14: 3 gained, "
                  "8 lost (net -5; two-sided sign test p=0.23)"]
  assert "question_hit@5_per_question" not in pretrain_job.heldout_lib.scalar_figures(end)


def test_lengths_left_to_the_work_dir_are_the_main_jobs_until_it_says():
  job = pretrain_job.PretrainJobConfig()
  assert job.block_length is job.query_length is None
  assert pretrain_job.shapes(job) == (128, 32)
  assert pretrain_job.retriever_config(job).doc_seq_length == 128
  assert pretrain_job.reader_warmup_config(job).seq_length == 160
  job = pretrain_job.PretrainJobConfig(block_length=288, query_length=96)
  assert pretrain_job.pretrain_config(job).model.joint_seq_length == 384
  assert pretrain_job.settings(job) == {
      "block_length": 288, "query_length": 96, "retriever_preset": "minilm",
      "retriever_init": "minilm", "retriever_pooling": "mean", "projection_size": 384,
      "share_towers": True, "reader_preset": "minilm", "reader_init": "minilm"}


def test_the_held_out_questions_and_the_line_that_says_which_figures_are_reported():
  from realm_tf.data.documents import default_corpus_path  # pylint: disable=g-import-not-at-top
  shipped = {"inputs": [default_corpus_path()]}
  mine = {"inputs": ["/data/my_docs.jsonl"]}
  job = pretrain_job.PretrainJobConfig
  assert pretrain_job.heldout_questions(job(), shipped) == "squad_open"
  assert pretrain_job.heldout_questions(job(), mine) is None
  assert pretrain_job.heldout_questions(job(eval_questions="none"), shipped) is None
  assert pretrain_job.heldout_questions(job(eval_questions="jsonl:/q.jsonl"), mine) == \
      "jsonl:/q.jsonl"
  line = pretrain_job.describe_heldout(job(), None)
  assert line.startswith("Held-out figures: retrieval utility, null-document posterior and MLM "
                         "accuracy on 192 masked sentences of held-out blocks (10% of the corpus)")
  assert line.endswith("No question recall: give --eval_questions=jsonl:<path> (questions about "
                       "your documents with \"answers\", optionally \"doc_id\") to measure it.")
  assert pretrain_job.describe_heldout(job(), "squad_open").endswith(
      "; question recall@5/@20 (dense, and BM25 beside it) of up to 1000 SQuAD-open dev "
      "questions.")
  assert "of up to 1000 questions of jsonl:/q.jsonl." in pretrain_job.describe_heldout(
      job(), "jsonl:/q.jsonl")


def test_a_bad_eval_questions_setting_is_refused():
  from realm_tf.openqa import datasets  # pylint: disable=g-import-not-at-top
  for ok in (None, "", "none", "squad_open"):
    pretrain_job.check_eval_questions(ok)
  with pytest.raises(datasets.DatasetError, match="give jsonl:<path>"):
    pretrain_job.check_eval_questions("my.jsonl")
  with pytest.raises(datasets.DatasetError, match="question file /no/q.jsonl does not exist"):
    pretrain_job.check_eval_questions("jsonl:/no/q.jsonl")


def test_a_warm_start_source_that_is_none_is_refused_before_any_work(tmp_path):
  from realm_tf.training import warm_start  # pylint: disable=g-import-not-at-top
  job = pretrain_job.PretrainJobConfig(work_dir=str(tmp_path / "w"),
                                       reader_init=str(tmp_path / "no_bert"))
  with pytest.raises(warm_start.WarmStartError, match="no_bert is none of"):
    pretrain_job.prepare(job)
  assert not (tmp_path / "w").exists()
