"""Tests of model loading, warm-up, status and in-process hot swap."""
import os
import threading

import grpc
import numpy as np
import pytest

from realm_tf.testing import toy_models
from serving.model_config import ModelConfig, VersionPolicy
from serving.model_manager import ModelManager, State
from serving.validation import ServingError

HERE = os.path.dirname(__file__)
X = {"x": np.ones((2, 3), np.float32), "scale": np.array([1.0, 2.0], np.float32)}


@pytest.fixture(scope="module")
def numeric_v1_v2(tmp_path_factory):
  """A base path holding numeric model versions 1 and 2 (written once per module)."""
  base = str(tmp_path_factory.mktemp("models") / "num")
  toy_models.write_numeric_model(base, 1)
  toy_models.write_numeric_model(base, 2)
  return base


def test_serves_newest_version_and_pinned_versions(numeric_v1_v2):
  config = ModelConfig("num", numeric_v1_v2, VersionPolicy("all"), (("stable", 1),))
  manager = ModelManager([config])
  manager.poll_once()
  assert [(s.version, s.state) for s in manager.status("num")] == [(1, State.AVAILABLE),
                                                                   (2, State.AVAILABLE)]
  for version, label, expect in ((None, None, 2), (1, None, 1), (None, "stable", 1)):
    with manager.servable("num", version, label) as servable:
      assert servable.version == expect
      out = servable.signature("")(X)
      np.testing.assert_allclose(out["y"], toy_models.numeric_reference(X["x"], X["scale"],
                                                                        expect), rtol=1e-6)
  with manager.servable("num") as servable:
    sig = servable.signature("serving_default")
    assert sig.batchable and set(sig.input_specs) == {"x", "scale"}
    assert not servable.signature("single").batchable
    assert not servable.signature("grand_total").batchable
    assert "serving_default" in servable.signature_defs
    with pytest.raises(ServingError) as info:
      servable.signature("nope")
    assert info.value.code == grpc.StatusCode.FAILED_PRECONDITION
  for args, code in ((("other",), grpc.StatusCode.NOT_FOUND),
                     (("num", 3), grpc.StatusCode.NOT_FOUND),
                     (("num", None, "nope"), grpc.StatusCode.INVALID_ARGUMENT)):
    with pytest.raises(ServingError) as info:
      with manager.servable(*args):
        pass
    assert info.value.code == code, args


def test_hot_swap_waits_for_in_flight_requests(tmp_path, numeric_v1_v2):
  base = str(tmp_path / "num")
  os.makedirs(base)
  os.symlink(os.path.join(numeric_v1_v2, "1"), os.path.join(base, "1"))
  manager = ModelManager([ModelConfig("num", base)], unload_grace_seconds=10)
  manager.poll_once()
  with manager.servable("num") as old:
    assert old.version == 1
    os.symlink(os.path.join(numeric_v1_v2, "2"), os.path.join(base, "2"))
    poller = threading.Thread(target=manager.poll_once)
    poller.start()
    deadline = threading.Event()
    while manager.status("num", 1)[0].state != State.UNLOADING and not deadline.wait(0.02):
      pass
    # v2 serves new requests while v1 still finishes the one in flight.
    with manager.servable("num") as new:
      assert new.version == 2
    out = old.signature("")(X)
    np.testing.assert_allclose(out["y"], toy_models.numeric_reference(X["x"], X["scale"], 1),
                               rtol=1e-6)
  poller.join()
  assert [(s.version, s.state) for s in manager.status("num")] == [(1, State.END),
                                                                   (2, State.AVAILABLE)]


def test_failed_load_keeps_old_version_and_gives_up_after_retries(tmp_path, numeric_v1_v2):
  base = tmp_path / "num"
  base.mkdir()
  os.symlink(os.path.join(numeric_v1_v2, "1"), base / "1")
  manager = ModelManager([ModelConfig("num", str(base))], max_num_load_retries=1)
  manager.poll_once()
  (base / "2").mkdir()
  (base / "2" / "saved_model.pb").write_bytes(b"not a proto")
  manager.poll_once()
  status = {s.version: s for s in manager.status("num")}
  assert status[2].state == State.START and "DecodeError" in status[2].error_message
  assert status[2].error_code == grpc.StatusCode.UNKNOWN
  with manager.servable("num") as servable:  # Nothing on disk loads as v2: v1 stays.
    assert servable.version == 1
  manager.poll_once()
  assert manager.status("num", 2)[0].state == State.END
  manager.poll_once()  # Given up: no more attempts, v1 still serves.
  assert manager.status("num", 1)[0].state == State.AVAILABLE


def test_loads_and_warms_up_versions_from_an_object_store(tmp_path):
  # ram:// (TF's in-memory filesystem) stands in for gs://: no open()/os.path call reaches it.
  base = f"ram://{tmp_path.name}/qa"
  toy_models.write_qa_model(base, 3)  # with a warm-up request in assets.extra
  manager = ModelManager([ModelConfig("qa", base)])
  manager.poll_once()
  assert [(s.version, s.state) for s in manager.status("qa")] == [(3, State.AVAILABLE)]
  with manager.servable("qa") as servable:
    assert servable.warm_up() == 1 and "serving_default" in servable.signature_defs
    out = servable.signature("")({"questions": np.array([b"who wrote hamlet"])})
  assert out["answers"].tolist() == [b"v3:HAMLET"]
  manager.stop()


def test_a_version_without_variables_is_reported_on_one_line_naming_it_and_v1_serves(
    tmp_path, numeric_v1_v2):
  import shutil  # pylint: disable=g-import-not-at-top
  base = tmp_path / "num"
  base.mkdir()
  os.symlink(os.path.join(numeric_v1_v2, "1"), base / "1")
  manager = ModelManager([ModelConfig("num", str(base))], max_num_load_retries=0)
  manager.poll_once()
  shutil.copytree(os.path.join(numeric_v1_v2, "2"), base / "2")
  shutil.rmtree(base / "2" / "variables")
  manager.poll_once()
  status = manager.status("num", 2)[0]
  assert status.state == State.END and status.error_code == grpc.StatusCode.UNKNOWN
  message = status.error_message
  assert "\n" not in message and str(base / "2") in message, message
  assert os.path.join(str(base / "2"), "variables", "variables") in message, message
  assert "different device" not in message
  with manager.servable("num") as servable:
    assert servable.version == 1 and servable.signature("")(X)["y"].shape == (2, 2)
