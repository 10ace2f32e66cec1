"""`python -m realm_tf.launch.ict` on bad input, and the quiet default of every CLI: a CPU-only
run with neither TF_CPP_MIN_LOG_LEVEL nor CUDA_VISIBLE_DEVICES set prints no CUDA or TF C++ lines.

(Training itself is tested in tests/test_pretrain_e2e.py.)"""
import os

from realm_tf.launch import testing


def test_missing_corpus_is_a_one_line_error_and_the_run_is_quiet(tmp_path):
  missing = str(tmp_path / "no_corpus")
  env = {k: v for k, v in os.environ.items()
         if k not in ("TF_CPP_MIN_LOG_LEVEL", "CUDA_VISIBLE_DEVICES")}
  # The strategy (and so the device probe that fails cuInit without a GPU) comes before the corpus.
  proc = testing.run_cli("realm_tf.launch.ict", f"--corpus_dir={missing}",
                         f"--model_dir={tmp_path / 'ict'}", env=env)
  testing.assert_one_line_error(proc, missing)
  assert "cuInit" not in proc.stderr and "cuda" not in proc.stderr.lower(), proc.stderr[-3000:]
  assert not testing.TF_CPP_LINE.search(proc.stderr), proc.stderr[-3000:]
