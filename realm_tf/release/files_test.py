"""Tests of realm_tf.release.files: a damaged TFRecord file is named with its first bad record."""
import pytest
import tensorflow as tf

from realm_tf.release import files
from realm_tf.release.files import ReleaseError

RECORD = b"x" * 50
FRAMED = 8 + 4 + len(RECORD) + 4  # length, its CRC, the data, its CRC


def _write(path, n):
  with tf.io.TFRecordWriter(str(path)) as w:
    for i in range(n):
      w.write(RECORD[:-3] + b"%03d" % i)
  return str(path)


def _refusal(path, **kwargs) -> str:
  with pytest.raises(ReleaseError) as err:
    for _ in files.record_batches(path, **kwargs):
      pass
  message = str(err.value)
  assert "\n" not in message and "function_node" not in message and "[Op:" not in message, \
      message
  return message


def test_a_record_cut_short_is_named_by_its_index_not_its_batch(tmp_path):
  full = _write(tmp_path / "full.tfr", 300)
  data = open(full, "rb").read()
  cut = tmp_path / "cut.tfr"
  cut.write_bytes(data[:250 * FRAMED + 30])  # 250 whole records, then part of record 250
  message = _refusal(str(cut), batch_size=1024)
  assert message.startswith(f"{cut}: record 250 is cut short or corrupt (records 0–249 read;"), \
      message
  # Within a later batch, and a record whose CRC fails.
  flipped = bytearray(data)
  flipped[100 * FRAMED + 20] ^= 1
  bad = tmp_path / "crc.tfr"
  bad.write_bytes(bytes(flipped))
  assert f"record 100 is cut short or corrupt (records 0–99 read;" in _refusal(
      str(bad), batch_size=64)
  # Damage in the first record: nothing was read.
  first = tmp_path / "first.tfr"
  first.write_bytes(data[:20])  # inside its data (a cut inside a header reads as the end)
  assert "record 0 is cut short or corrupt (no record read;" in _refusal(str(first))


def test_a_failing_fn_names_the_batch_and_a_good_file_reads_whole(tmp_path):
  path = _write(tmp_path / "ok.tfr", 10)
  assert sum(len(b) for b in files.record_batches(path, batch_size=4)) == 10
  message = _refusal(path, batch_size=4, fn=lambda x: (tf.strings.to_number(x),))
  assert f"{path}: records 0–3 cannot be processed: StringToNumberOp could not correctly " \
      in message, message
