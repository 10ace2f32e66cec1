"""The fault matrix's numerics group, one seeded step per fault: NaN / Inf / overflowing inputs
stop the run at that step with its last good checkpoint kept; a learning rate that jumps to
1e38 is the fault the stop rule cannot survive (finite but huge weights are checkpointed before
the loss overflows), and its row says so."""
from benchmarks.faults import FaultConfig, numerics


def test_numerical_faults_stop_at_the_step_and_keep_the_last_good_checkpoint(tmp_path):
  rows = {r.fault: r for r in numerics.run(FaultConfig.fast(str(tmp_path)))}
  assert list(rows) == list(numerics.ROWS.values())
  for kind in ("nan_input", "inf_input", "overflow_input"):
    row = rows[numerics.ROWS[kind]]
    assert row.survived and row.tries == 1 and row.failures == 0, row
    assert row.figures["stop_steps"] == [int(row.injected_at.rsplit(": ", 1)[1])]
  explosion = rows[numerics.ROWS["learning_rate_explosion"]]
  assert not explosion.survived and explosion.failures == 1
  assert explosion.reason.startswith(numerics.EXPLOSION_REASON)
  assert "the clean rerun resumed from" in explosion.reason
