"""The best-export rule of REALM pre-training: a NaN held-out utility never names the best."""
import json

from realm_tf.stages.realm_experiment import improves_best


def test_first_finite_utility_is_the_best_and_a_larger_one_replaces_it():
  assert improves_best(0.1, None)
  assert improves_best(0.2, {"heldout_retrieval_utility": 0.1})
  assert not improves_best(0.1, {"heldout_retrieval_utility": 0.2})
  assert not improves_best(None, None)


def test_a_non_finite_utility_is_never_the_best():
  for bad in (float("nan"), float("inf"), float("-inf")):
    assert not improves_best(bad, None)
    assert not improves_best(bad, {"heldout_retrieval_utility": -1.0})


def test_a_nan_best_on_disk_is_replaced_by_the_next_finite_utility():
  best = json.loads(json.dumps({"step": 4, "heldout_retrieval_utility": float("nan")}))
  assert improves_best(-5.0, best)
