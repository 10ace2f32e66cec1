"""The kill group's fast subset: `kill -9` of ICT (the cheapest trainer) after one of its
checkpoints and before its last, then the same command again, which must resume from that
checkpoint and end with the uninterrupted run's step, data position, bit-equal weights and
bundle; and the checks the whole group relies on, each shown to catch what it names."""
import json
import os

import numpy as np

from benchmarks.faults import FaultConfig
from benchmarks.faults import kill, kill_stages, outputs

FAST_STAGES = ["ict"]  # the cheapest trainer: a tiny retriever, 6 steps, a checkpoint each


def test_ict_killed_between_two_checkpoints_resumes_to_the_uninterrupted_run(tmp_path):
  rows = kill.run(FaultConfig.fast(str(tmp_path)), only=FAST_STAGES)
  assert [r.fault.split("(")[1].split(")")[0] for r in rows] == FAST_STAGES
  row, = rows
  # Fails when a re-run starts over instead of resuming, or ends with other weights, another
  # step, data position or newest bundle than the uninterrupted run.
  assert row.survived, row.reason
  assert row.failures == 0 and row.tries >= 1
  # The uninterrupted run's markers: a checkpoint at every step.
  assert [level for level, _ in row.figures["reference_timeline"]["ict"]] == \
      list(range(1, kill_stages.STEPS + 1))
  inside = [t for t in row.figures["tries"] if t["killed"] and t["in_window"]]
  assert len(inside) == 1, row.figures["tries"]
  try_, = inside
  # Killed after its first checkpoint and before its last: the re-run resumed mid-run.
  assert 1 <= try_["checkpoint_step_at_kill"]["ict"] < kill_stages.STEPS
  assert try_["between_checkpoints"] == {"ict": True}
  assert row.figures["kills_between_checkpoints"]["ict"] >= 1
  assert try_["ict"]["step"] == kill_stages.STEPS and try_["ict"]["weights_bit_equal"]
  assert try_["newest_bundle"]["version"] == 1
  assert try_["newest_bundle"]["step"] == kill_stages.STEPS
  assert not try_["temporaries_left"]


def _corpus(root, shard_bytes=b"abc", listed_sha=None):
  corpus = root / "corpus"
  corpus.mkdir()
  (corpus / "blocks-00000-of-00001.tfrecord.gz").write_bytes(shard_bytes)
  sha = listed_sha or outputs.sha256(str(corpus / "blocks-00000-of-00001.tfrecord.gz"))
  (corpus / "manifest.json").write_text(json.dumps(
      {"created": 1.0, "shards": [{"file": "blocks-00000-of-00001.tfrecord.gz", "sha256": sha}]}))
  return corpus


def test_half_published_finds_shards_checkpoints_and_versions_without_their_files(tmp_path):
  _corpus(tmp_path)
  assert outputs.half_published(str(tmp_path)) == []
  other = tmp_path / "other"
  other.mkdir()
  _corpus(other, listed_sha="0" * 64)  # a manifest published before its shard was whole
  ckpt = tmp_path / "ict" / "checkpoints"
  ckpt.mkdir(parents=True)
  (ckpt / "checkpoint").write_text('model_checkpoint_path: "ckpt-2"\n'
                                   'all_model_checkpoint_paths: "ckpt-2"\n')
  (ckpt / "ckpt-2.index").write_bytes(b"")  # no data file
  (tmp_path / "index" / "00000001").mkdir(parents=True)  # a bundle without its files
  (tmp_path / "index" / ".tmp-00000002-ab").mkdir()  # hidden: no reader lists it
  (tmp_path / "serving" / "realm_reader" / "1").mkdir(parents=True)
  problems = outputs.half_published(str(tmp_path))
  assert len(problems) == 4, problems
  assert any("other/corpus/blocks-00000-of-00001" in p for p in problems)
  assert any("checkpoint" in p and "ckpt-2" in p for p in problems)
  assert any("index bundle" in p for p in problems)
  assert any("serving version" in p for p in problems)


def test_temporaries_and_digests(tmp_path):
  _corpus(tmp_path)
  (tmp_path / "corpus" / "manifest.json.tmp-1a2b").write_text("{}")
  (tmp_path / "index").mkdir()
  (tmp_path / "index" / ".tmp-00000001-ff").mkdir()
  (tmp_path / "index" / ".tmp-00000001-ff" / "inner.npy").write_bytes(b"x")
  assert outputs.temporaries(str(tmp_path)) == ["corpus/manifest.json.tmp-1a2b",
                                             "index/.tmp-00000001-ff"]
  digests = outputs.file_digests(str(tmp_path), ["corpus", "index"])
  assert sorted(digests) == ["corpus/blocks-00000-of-00001.tfrecord.gz", "corpus/manifest.json"]
  # A manifest's write time is not its content; any other change is.
  path = tmp_path / "corpus" / "manifest.json"
  manifest = json.loads(path.read_text())
  path.write_text(json.dumps(dict(manifest, created=2.0)))
  assert outputs.file_digests(str(tmp_path), ["corpus"]) == \
      {k: v for k, v in digests.items() if k.startswith("corpus")}
  path.write_text(json.dumps(dict(manifest, num_blocks=3)))
  assert outputs.file_digests(str(tmp_path), ["corpus"])["corpus/manifest.json"] != \
      digests["corpus/manifest.json"]
  assert os.path.exists(path)


def _trainer_dir(root, sub, weights, step=6, position=12):
  """A trainer model dir whose newest checkpoint holds `weights`, its step and data position."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  ckpt = tf.train.Checkpoint(model=tf.train.Checkpoint(w=tf.Variable(weights)),
                             step=tf.Variable(step, dtype=tf.int64),
                             data_position=tf.Variable([position], dtype=tf.int64))
  tf.train.CheckpointManager(ckpt, str(root / sub / "checkpoints"), 3).save(
      checkpoint_number=step)


def _bundle(root, version, step=6, rows=4):
  path = root / "index" / f"{version:08d}"
  path.mkdir(parents=True)
  (path / "manifest.json").write_text(json.dumps({"step": step}))
  np.save(path / "block_ids.npy", np.arange(rows))


def test_compare_fails_other_weights_of_a_resumed_trainer_and_another_bundle_version(tmp_path):
  """A killed trainer whose re-run ends at the same step and position with other weights, or a
  run whose newest bundle is another version, is a failure; a companion trainer's weights and a
  refresh worker's bundle version (both follow timing) are recorded only."""
  roots = {name: tmp_path / name for name in ("ref", "same", "weights", "version")}
  for name, root in roots.items():
    _trainer_dir(root, "ict", [1.0, 2.0 + 1e-6 * (name == "weights")])
    _bundle(root, 1)
  _bundle(roots["version"], 2)  # one bundle more, of the same step and rows
  stage = kill_stages.Stage("ict", lambda d: [], ["ict", "index"], False,
                            kill_stages.trainer_progress("ict"), trainer_dirs=("ict",))
  compare = lambda name, stage=stage: outputs.compare(  # pylint: disable=unnecessary-lambda-assignment
      stage, str(roots[name]), str(roots["ref"]))
  diffs, figures = compare("same")
  assert diffs == [] and figures["ict"]["weights_bit_equal"] is True
  diffs, figures = compare("weights")
  assert figures["ict"]["weights_bit_equal"] is False
  assert len(diffs) == 1 and "ict: final weights differ" in diffs[0] and "model/w" in diffs[0]
  diffs, figures = compare("version")
  assert figures["newest_bundle"] == {"version": 2, "step": 6, "rows": 4}
  assert len(diffs) == 1 and "newest index bundle" in diffs[0] and "version" in diffs[0]
  worker = kill_stages.Stage("worker", lambda d: [], ["index"], False,
                             kill_stages.bundle_progress, trainer_dirs=("ict",),
                             companion=lambda d: [])
  assert worker.killed_trainers == () and not worker.judges_bundle_version
  assert compare("weights", worker)[0] == [] and compare("version", worker)[0] == []


def test_progress_levels_and_the_kill_window(tmp_path):
  """What places a kill: each series' level read from disk, and a window from the uninterrupted
  run's first marker to its last."""
  assert outputs.checkpoint_step(str(tmp_path / "ict")) == 0
  _trainer_dir(tmp_path, "ict", [1.0], step=3)
  assert kill_stages.trainer_progress("ict", "other")(str(tmp_path)) == {"ict": 3, "other": 0}
  beam = kill_stages.beam_progress("corpus")
  assert beam(str(tmp_path)) == {"corpus": 0}
  (tmp_path / "corpus.tmp-ab12").mkdir()  # claimed, nothing written yet
  assert beam(str(tmp_path)) == {"corpus": 0}
  (tmp_path / "corpus.tmp-ab12" / "beam-temp-x").mkdir()
  (tmp_path / "corpus.tmp-ab12" / "beam-temp-x" / "part-0").write_bytes(b"x")
  assert beam(str(tmp_path)) == {"corpus": 1}
  _corpus(tmp_path)
  assert beam(str(tmp_path)) == {"corpus": 2}
  assert kill_stages.bundle_progress(str(tmp_path)) == {"index": 0}
  _bundle(tmp_path, 1)
  _bundle(tmp_path, 3)
  (tmp_path / "index" / ".tmp-00000004-ff").mkdir()
  assert kill_stages.bundle_progress(str(tmp_path)) == {"index": 3}
  (tmp_path / "serving" / "realm_reader" / "1").mkdir(parents=True)
  (tmp_path / "serving" / "realm_openqa" / "1").mkdir(parents=True)
  (tmp_path / "serving" / ".tmp-realm_openqa-2").mkdir()
  assert kill_stages.serving_progress(str(tmp_path)) == {"serving": 2}

  reference = {"wall_s": 20.0, "timeline": {"ict": [[1, 10.0], [2, 10.5], [4, 11.0], [6, 11.5]],
                                            "worker": [[2, 15.0]], "idle": []}}
  windows = kill.kill_windows(reference)
  assert windows["worker"] == [[2, 15.0], [None, 20.0]] and "idle" not in windows
  assert [kill.in_window(windows, "ict", level, True) for level in (0, 1, 4, 5, 6)] == \
      [False, True, True, True, False]
  assert not kill.in_window(windows, "ict", 3, killed=False)
  assert kill.in_window(windows, "worker", 2, True)
  assert not kill.in_window(windows, "worker", 1, True)
  rng = FaultConfig().rng("test")
  for _ in range(20):
    plan = kill.plan_kill({"ict": windows["ict"]}, {}, rng)
    assert plan["after_level"] in (1, 2, 4) and 0 <= plan["delay_s"] <= 0.5
  # The series with the fewest kills landed in its window comes next.
  assert kill.plan_kill(windows, {"ict": 1}, rng)["series"] == "worker"


def test_a_run_of_some_kill_stages_keeps_the_other_stages_rows(tmp_path, monkeypatch):
  """`--kill_stages=export` replaces the export row only; the other kill rows and groups stay.
  A run of the whole group replaces all its rows."""
  import json  # pylint: disable=g-import-not-at-top
  from benchmarks import common, fault_bench  # pylint: disable=g-import-not-at-top
  monkeypatch.setattr(common, "RESULTS_DIR", str(tmp_path))
  row = lambda group, fault, when: {"group": group, "fault": fault, "survived": True, "tries": 1,  # pylint: disable=unnecessary-lambda-assignment
                                    "time_utc": when}
  old = [row("kill", "kill -9 of `export` (export)", "old"),
         row("kill", "kill -9 of `ict` (ict)", "old"), row("fuzz", "corpus", "old")]
  with open(tmp_path / "faults.json", "w", encoding="utf-8") as f:
    json.dump({"rows": old, "crashed_groups": {}}, f)
  new = {"rows": [row("kill", "kill -9 of `export` (export)", "new")], "crashed_groups": {}}
  merged = fault_bench._merged("faults", new, ["kill"], partial=("kill",))  # pylint: disable=protected-access
  assert sorted((r["fault"], r["time_utc"]) for r in merged["rows"]) == [
      ("corpus", "old"), ("kill -9 of `export` (export)", "new"),
      ("kill -9 of `ict` (ict)", "old")]
  assert merged["total"] == 3 and merged["tries"] == 3
  whole = fault_bench._merged("faults", new, ["kill"])  # pylint: disable=protected-access
  assert sorted(r["fault"] for r in whole["rows"]) == ["corpus", "kill -9 of `export` (export)"]


def test_a_checkpoint_swept_by_tensorflow_is_not_half_published_but_a_missing_latest_is(tmp_path):
  """A kill during CheckpointManager's sweep leaves an older, deleted checkpoint listed (it
  records the new state before it deletes): not a defect. The latest, or a listed one not older
  than it, without its files is."""
  ckpts = tmp_path / "model" / "checkpoints"
  ckpts.mkdir(parents=True)

  def state(latest, listed, whole):
    for f in ckpts.iterdir():
      f.unlink()
    (ckpts / "checkpoint").write_text(
        f'model_checkpoint_path: "{latest}"\n'
        + "".join(f'all_model_checkpoint_paths: "{p}"\n' for p in listed), encoding="utf-8")
    for p in whole:
      (ckpts / f"{p}.index").write_text("i", encoding="utf-8")
      (ckpts / f"{p}.data-00000-of-00001").write_text("d", encoding="utf-8")
    return outputs.half_published(str(tmp_path))

  assert state("ckpt-5", ["ckpt-2", "ckpt-4", "ckpt-5"], ["ckpt-4", "ckpt-5"]) == []
  missing_latest = state("ckpt-5", ["ckpt-4", "ckpt-5"], ["ckpt-4"])
  assert len(missing_latest) == 1 and "ckpt-5 (the latest)" in missing_latest[0]
  newer = state("ckpt-4", ["ckpt-4", "ckpt-6"], ["ckpt-4"])
  assert len(newer) == 1 and "ckpt-6" in newer[0] and "not older" in newer[0]
