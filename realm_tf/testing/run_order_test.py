"""Tests of the test run's file order (run_order) and of the hooks in tests/conftest.py that
apply it."""
import os
import subprocess
import sys

from realm_tf.testing import cli as cli_testing
from realm_tf.testing import run_order


def test_listed_files_go_first_longest_first_and_each_file_keeps_its_order():
  items = ["a_test.py::t1", "b_test.py::t1", "a_test.py::t2", "c_test.py::t1[x]",
           "d_test.py::t1", "c_test.py::t1[y]", "e_test.py::t1"]
  seconds = {"c_test.py": 50, "d_test.py": 90, "zz_test.py": 500}  # zz: not collected here
  ordered = run_order.longest_first(items, nodeid=lambda s: s, seconds=seconds)
  assert ordered == ["d_test.py::t1", "c_test.py::t1[x]", "c_test.py::t1[y]",  # listed, longest
                     "a_test.py::t1", "a_test.py::t2", "b_test.py::t1", "e_test.py::t1"]


def test_equal_seconds_keep_the_collection_order():
  items = ["b_test.py::t", "a_test.py::t"]
  assert run_order.longest_first(items, nodeid=lambda s: s,
                                 seconds={"a_test.py": 5, "b_test.py": 5}) == items


def test_every_listed_file_exists():
  missing = [p for p in run_order.FILE_SECONDS
             if not os.path.exists(os.path.join(cli_testing.ROOT, p))]
  assert not missing, f"renamed or removed; update run_order.FILE_SECONDS: {missing}"


# Collects the files named in argv under tests/conftest.py's hooks, with run_order's table
# replaced by two of them (files that import no TensorFlow, so the probe takes a second), and
# prints the order of the collected files and whether pytest-xdist will reorder them.
_PROBE = r"""
import sys, pytest
from realm_tf.testing import run_order
run_order.FILE_SECONDS.clear()
run_order.FILE_SECONDS.update({"tests/test_tpu_vm_script.py": 2, "tests/test_demo_script.py": 1})
class Probe:
  def pytest_collection_finish(self, session):
    files = []
    for item in session.items:
      f = item.nodeid.split("::")[0]
      if f not in files:
        files.append(f)
    print("FILES", " ".join(files))
    print("REORDER", session.config.option.loadscopereorder)
sys.exit(pytest.main(["--co", "-q", "-p", "no:cacheprovider", *sys.argv[1:]], plugins=[Probe()]))
"""


def test_conftest_orders_the_run_and_turns_off_xdists_reordering():
  files = ["tests/test_benchmark_clis.py", "tests/test_demo_script.py",
           "tests/test_tpu_vm_script.py"]
  proc = subprocess.run([sys.executable, "-c", _PROBE, *files], cwd=cli_testing.ROOT,
                        capture_output=True, text=True, timeout=300, check=False)
  assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
  lines = dict(l.split(" ", 1) for l in proc.stdout.splitlines() if l.startswith(("FILES",
                                                                                   "REORDER")))
  # The listed files first, longest first; the unlisted one after them.
  assert lines["FILES"].split() == [files[2], files[1], files[0]], proc.stdout[-2000:]
  assert lines["REORDER"] == "False"
