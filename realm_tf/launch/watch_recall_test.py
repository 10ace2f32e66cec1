"""`python -m realm_tf.launch.watch_recall` on bad input: one line, exit status 2."""
from absl import flags

from realm_tf.evaluation import recall_watcher
from realm_tf.launch import config_flags
from realm_tf.testing import cli as testing
from realm_tf.launch import watch_recall


def test_flags_are_the_watch_configs_fields():
  assert not flags.FLAGS.flags_by_module_dict().get(watch_recall.__name__)
  fv = flags.FlagValues()
  watch_recall.define_flags(fv)
  fv(["watch_recall", "--work_dir=/w", "--nosquad", "--wait_pid=7"])
  assert config_flags.config_from_flags(recall_watcher.WatchConfig, fv) == (
      recall_watcher.WatchConfig(work_dir="/w", squad=False, wait_pid=7))


def test_unreadable_bundle_manifest_is_a_one_line_error(tmp_path):
  manifest = tmp_path / "index" / "00000001" / "manifest.json"
  manifest.parent.mkdir(parents=True)
  manifest.write_text("{not json", encoding="utf-8")
  proc = testing.run_cli("realm_tf.launch.watch_recall", f"--work_dir={tmp_path}",
                         "--max_poll_seconds=1", timeout=120)
  testing.assert_one_line_error(proc, str(manifest))
