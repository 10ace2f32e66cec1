"""launch/demo.sh's control flow: a failed stage stops the demo loudly, and a re-run exports (and
so serves) a new version only when fine-tuning has written checkpoints since the newest export.

The stages themselves take 20 minutes (`make demo`); here a stand-in interpreter (`PY=`) records
each program it is asked to run and writes what the real one would leave on disk, so the
script's own logic runs as it is.
"""
import os
import subprocess
import time

from realm_tf.testing import cli as testing

# A stand-in for `$PY`: logs `-m <program>` (or `-` for inline Python, whose stdin it drains),
# fails with status 3 for $FAIL_PROGRAM, fine-tuning writes a checkpoint and the export the next
# version of realm_openqa (or --version, refused when it exists), in the work dir's layout
# (<work_dir>/finetune, <work_dir>/serving) unless told otherwise, as the real programs do.
FAKE_PYTHON = r"""#!/usr/bin/env bash
program=$1; [[ $program == -m ]] && program=$2
[[ $program == - ]] && cat > /dev/null
echo "$program" >> "$CALLS"
[[ $program == "${FAIL_PROGRAM:-}" ]] && { echo "error: $program failed" >&2; exit 3; }
for arg in "$@"; do
  case $arg in
    --work_dir=*) model_dir=${arg#*=}/finetune export_base=${arg#*=}/serving ;;
    --model_dir=*) model_dir=${arg#*=} ;;
    --export_base=*) export_base=${arg#*=} ;;
    --version=*) version=${arg#*=} ;;
    --output_prefix=*) : > "${arg#*=}.json" ;;
  esac
done
case $program in
  realm_tf.launch.finetune) mkdir -p "$model_dir/checkpoints"; touch "$model_dir/checkpoints/ckpt-$RANDOM" ;;
  realm_tf.launch.export)
    v=1; while [[ -e $export_base/realm_openqa/$v ]]; do v=$((v + 1)); done
    if [[ -n ${version:-} ]]; then
      [[ -e $export_base/realm_openqa/$version ]] && { echo "error: version $version exists" >&2; exit 2; }
      v=$version
    fi
    mkdir -p "$export_base/realm_openqa/$v"; touch "$export_base/realm_openqa/$v/saved_model.pb" ;;
esac
exit 0
"""


def _run_demo(tmp_path, fail_program=""):
  """Runs launch/demo.sh with the stand-in interpreter; (the process, the programs it ran)."""
  calls = tmp_path / "calls.txt"
  calls.write_text("")
  env = dict(os.environ, PY=str(tmp_path / "python"), WORK_DIR=str(tmp_path / "work"),
             CALLS=str(calls), FAIL_PROGRAM=fail_program)
  proc = subprocess.run(["bash", os.path.join(testing.ROOT, "launch", "demo.sh")], env=env,
                        cwd=testing.ROOT, capture_output=True, text=True, timeout=60,
                        check=False)
  return proc, calls.read_text().split()


def _versions(tmp_path):
  """The exported versions of realm_openqa in the demo's work dir, in order."""
  base = tmp_path / "work" / "serving" / "realm_openqa"
  return sorted(int(v) for v in os.listdir(base)) if base.exists() else []


def test_demo_exports_a_new_version_only_after_new_checkpoints(tmp_path):
  (tmp_path / "python").write_text(FAKE_PYTHON)
  (tmp_path / "python").chmod(0o755)
  (tmp_path / "work" / "finetune").mkdir(parents=True)
  proc, calls = _run_demo(tmp_path)
  assert proc.returncode == 0, proc.stderr
  assert calls == ["realm_tf.launch.pretrain", "realm_tf.launch.finetune",
                   "realm_tf.launch.evaluate", "realm_tf.launch.evaluate", "-",
                   "realm_tf.launch.export", "-"]
  assert _versions(tmp_path) == [1]

  # Fine-tuning writes a checkpoint on every call of the stand-in, so each re-run has new ones.
  time.sleep(0.01)
  proc, calls = _run_demo(tmp_path)
  assert proc.returncode == 0, proc.stderr
  assert "realm_tf.launch.export" in calls and _versions(tmp_path) == [1, 2]

  # No checkpoint newer than the newest export: the export is kept and served.
  (tmp_path / "python").write_text(FAKE_PYTHON.replace(
      'touch "$model_dir/checkpoints/ckpt-$RANDOM"', ":"))
  proc, calls = _run_demo(tmp_path)
  assert proc.returncode == 0, proc.stderr
  assert "realm_tf.launch.export" not in calls and _versions(tmp_path) == [1, 2]
  assert "Export version 2 is up to date" in proc.stdout


def test_demo_stops_loudly_when_a_stage_fails(tmp_path):
  (tmp_path / "python").write_text(FAKE_PYTHON)
  (tmp_path / "python").chmod(0o755)
  proc, calls = _run_demo(tmp_path, fail_program="realm_tf.launch.export")
  assert proc.returncode == 3
  assert calls[-1] == "realm_tf.launch.export"  # the server is never started
  assert proc.stderr.strip().splitlines()[-1] == (
      'demo.sh: FAILED in stage "4/4 Export and serve over gRPC" (exit status 3); '
      "see the lines above.")
  proc, calls = _run_demo(tmp_path, fail_program="realm_tf.launch.pretrain")
  assert proc.returncode == 3 and calls == ["realm_tf.launch.pretrain"]
  assert 'stage "1/4 REALM pre-training' in proc.stderr
