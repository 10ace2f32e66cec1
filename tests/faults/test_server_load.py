"""The server under load and change (benchmarks/faults/server_load.py) at the fast subset's size:
a real server subprocess, well-formed and malformed requests, version churn, then SIGTERM."""
from benchmarks.faults import FaultConfig
from benchmarks.faults import server_load


def test_server_survives_load_churn_and_sigterm(tmp_path):
  config = FaultConfig.fast(str(tmp_path))
  rows = {r.fault.split(":")[0]: r for r in server_load.run(config)}
  assert len(rows) == 4
  for row in rows.values():
    assert row.survived, (row.fault, row.reason, row.figures)
    assert row.failures == 0 and row.tries >= 1
  good = rows["well-formed requests beside malformed ones, while versions are published and "
              "retired"]
  assert good.tries >= 10 and good.figures["baseline"]["requests"] >= 10
  assert good.figures["baseline_failed"] == 0
  assert len(good.figures["versions_published"]) >= 2, good.figures
  assert good.figures["versions_retired"], good.figures
  bad = rows["malformed requests"]
  assert bad.tries >= 10
  assert sum(v["sent"] for v in bad.figures["by_kind"].values()) == bad.tries
  sigterm = rows["SIGTERM with requests in flight"].figures
  assert sigterm["exit_code"] == 0
  assert sigterm["server_answered"] == sigterm["server_in_flight"]
  assert sigterm["client_in_flight"] >= 1
