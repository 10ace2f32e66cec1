"""The chief of a multi-worker job writes the shared outputs; the others wait for them."""
import json

import pytest

from realm_tf.io import chief
from realm_tf.io import work_dir_lock

WORKER_1 = {"cluster": {"worker": ["a:1", "b:2"]}, "task": {"type": "worker", "index": 1}}


@pytest.mark.parametrize("tf_config,is_chief", [
    (None, True),
    ({"cluster": {"worker": ["a:1", "b:2"]}, "task": {"type": "worker", "index": 0}}, True),
    (WORKER_1, False),
    ({"cluster": {"chief": ["c:0"], "worker": ["a:1"]}, "task": {"type": "worker", "index": 0}},
     False),
    ({"cluster": {"chief": ["c:0"], "worker": ["a:1"]}, "task": {"type": "chief", "index": 0}},
     True),
])
def test_the_chief_is_task_chief_else_worker_0(tf_config, is_chief):
  env = {} if tf_config is None else {"TF_CONFIG": json.dumps(tf_config)}
  assert chief.is_chief_process(env) is is_chief


def test_only_the_chief_takes_the_writer_lock(tmp_path, monkeypatch):
  monkeypatch.setenv("TF_CONFIG", json.dumps(WORKER_1))
  with work_dir_lock.writer_lock(str(tmp_path)) as lock:
    assert lock is None
    assert not (tmp_path / work_dir_lock.LOCK_FILE).exists()


def test_a_worker_waits_until_the_chief_output_reads():
  answers = iter([None, None, {"num_blocks": 3}])
  sleeps = []
  assert chief.wait_for_chief(lambda: next(answers), "the corpus", poll_s=0.5,
                              sleep=sleeps.append) == {"num_blocks": 3}
  assert sleeps == [0.5, 0.5]


def test_a_worker_gives_up_after_its_limit_naming_the_output():
  with pytest.raises(chief.ChiefTimeoutError, match="the corpus in /w/corpus"):
    chief.wait_for_chief(lambda: None, "the corpus in /w/corpus", timeout_s=-1.0,
                         sleep=lambda s: None)
