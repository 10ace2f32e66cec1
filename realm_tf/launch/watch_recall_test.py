"""`python -m realm_tf.launch.watch_recall` on bad input: one line, exit status 2."""
from realm_tf.launch import testing


def test_unreadable_bundle_manifest_is_a_one_line_error(tmp_path):
  manifest = tmp_path / "index" / "00000001" / "manifest.json"
  manifest.parent.mkdir(parents=True)
  manifest.write_text("{not json", encoding="utf-8")
  proc = testing.run_cli("realm_tf.launch.watch_recall", f"--work_dir={tmp_path}",
                         "--max_poll_seconds=1", timeout=120)
  testing.assert_one_line_error(proc, str(manifest))
