"""The benchmarks' child-process peak RSS is the child's own: a small child of a large benchmark
process reads small, and a child's allocation is seen."""
import sys

import numpy as np

from benchmarks import procs

MB = 2**20


def test_a_childs_peak_rss_is_its_own_not_the_benchmark_processes():
  ballast = np.ones(600 * MB // 8)  # 600 MB resident here, before the children start
  small = procs.run_process([sys.executable, "-c", "pass"])
  big = procs.run_process([sys.executable, "-c",
                           "import time, numpy as np; a = np.ones(300 * 2**20 // 8); "
                           "time.sleep(0.3)"])
  assert ballast.sum() == 600 * MB // 8  # held through both runs
  assert (small["rc"], big["rc"]) == (0, 0)
  assert small["peak_rss"] < 100 * MB, small["peak_rss"]  # ru_maxrss would say ≥ 600 MB
  assert 300 * MB <= big["peak_rss"] < 500 * MB, big["peak_rss"]
