"""The kill group's fast subset: `kill -9` of the corpus build at one seeded random point, then the
same command again (byte-equal corpus); and the checks the whole group relies on, each shown to
catch what it names."""
import json
import os

from benchmarks.faults import FaultConfig
from benchmarks.faults import kill

FAST_STAGES = ["build_corpus"]  # the cheapest long stage (Beam, no training)


def test_killed_corpus_build_rerun_equals_the_uninterrupted_build(tmp_path):
  rows = kill.run(FaultConfig.fast(str(tmp_path)), only=FAST_STAGES)
  assert [r.fault.split("(")[1].split(")")[0] for r in rows] == FAST_STAGES
  row, = rows
  assert row.survived, row.reason
  assert row.tries == 1 and row.failures == 0
  assert "seeded random times in (0, " in row.injected_at
  # Two shards, the manifest and the bad-record log, all byte-equal to the uninterrupted build.
  assert row.figures["tries"][0]["files_compared"] == 4
  assert not row.figures["tries"][0]["temporaries_left"]


def _corpus(root, shard_bytes=b"abc", listed_sha=None):
  corpus = root / "corpus"
  corpus.mkdir()
  (corpus / "blocks-00000-of-00001.tfrecord.gz").write_bytes(shard_bytes)
  sha = listed_sha or kill._sha256(str(corpus / "blocks-00000-of-00001.tfrecord.gz"))  # pylint: disable=protected-access
  (corpus / "manifest.json").write_text(json.dumps(
      {"created": 1.0, "shards": [{"file": "blocks-00000-of-00001.tfrecord.gz", "sha256": sha}]}))
  return corpus


def test_half_published_finds_shards_checkpoints_and_versions_without_their_files(tmp_path):
  _corpus(tmp_path)
  assert kill.half_published(str(tmp_path)) == []
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
  problems = kill.half_published(str(tmp_path))
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
  assert kill.temporaries(str(tmp_path)) == ["corpus/manifest.json.tmp-1a2b",
                                             "index/.tmp-00000001-ff"]
  digests = kill.file_digests(str(tmp_path), ["corpus", "index"])
  assert sorted(digests) == ["corpus/blocks-00000-of-00001.tfrecord.gz", "corpus/manifest.json"]
  # A manifest's write time is not its content; any other change is.
  path = tmp_path / "corpus" / "manifest.json"
  manifest = json.loads(path.read_text())
  path.write_text(json.dumps(dict(manifest, created=2.0)))
  assert kill.file_digests(str(tmp_path), ["corpus"]) == \
      {k: v for k, v in digests.items() if k.startswith("corpus")}
  path.write_text(json.dumps(dict(manifest, num_blocks=3)))
  assert kill.file_digests(str(tmp_path), ["corpus"])["corpus/manifest.json"] != \
      digests["corpus/manifest.json"]
  assert os.path.exists(path)


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
