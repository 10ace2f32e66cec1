"""Model discovery, loading and hot swapping for the TF Serving-protocol server.

Reads TF Serving's layout `<base_path>/<version>/saved_model.pb` (integer version directories; temp
or half-written directories are ignored) and its `ModelServerConfig` text proto. A background thread
polls the file system; when a new version appears it is loaded (and warmed up from
`assets.extra/tf_serving_warmup_requests`), then made current in one atomic switch, and only then
are old versions unloaded, after their in-flight requests finish. So a refreshed index goes live
without a failed or dropped request, which is TF Serving's availability-preserving policy.
"""
import contextlib
import dataclasses
import enum
import os
import threading
from typing import Callable, Dict, Iterator, List, Mapping, Optional

import grpc
import numpy as np
import tensorflow as tf
from absl import logging
from google.protobuf import text_format
from tensorflow.core.protobuf import meta_graph_pb2, saved_model_pb2
from tensorflow_serving.apis import prediction_log_pb2

from realm_tf.io.errors import error_text
from realm_tf.io.memory import return_free_memory
from realm_tf.utils import custom_ops
from serving import validation
from serving.model_config import ModelConfig, list_versions
from serving.validation import ServingError

DEFAULT_SIGNATURE = "serving_default"
WARMUP_FILE = os.path.join("assets.extra", "tf_serving_warmup_requests")
MAX_WARMUP_RECORDS = 1000  # TF Serving's limit.


def import_scann() -> bool:
  """Registers TF.Text's and ScaNN's TF ops (the ScaNN export needs both); False if ScaNN is not
  installed."""
  custom_ops.register_text_ops()
  try:
    import scann  # pylint: disable=import-outside-toplevel,unused-import
    custom_ops.register_scann_ops()
  except Exception as e:  # pylint: disable=broad-except
    logging.warning("ScaNN ops not registered (%s); ScaNN SavedModels will not load", e)
    return False
  return True


class State(enum.IntEnum):
  """Servable states, numbered as in get_model_status.proto's ModelVersionStatus.State."""
  START = 10
  LOADING = 20
  AVAILABLE = 30
  UNLOADING = 40
  END = 50


# Loaded servables.


def read_signature_defs(export_dir: str) -> Dict[str, meta_graph_pb2.SignatureDef]:
  """Reads the serving MetaGraph's SignatureDefs (what GetModelMetadata returns)."""
  saved_model = saved_model_pb2.SavedModel()
  pb = os.path.join(export_dir, "saved_model.pb")
  if tf.io.gfile.exists(pb):
    with tf.io.gfile.GFile(pb, "rb") as f:
      saved_model.ParseFromString(f.read())
  else:
    with tf.io.gfile.GFile(os.path.join(export_dir, "saved_model.pbtxt")) as f:
      text_format.Parse(f.read(), saved_model)
  for meta_graph in saved_model.meta_graphs:
    if "serve" in meta_graph.meta_info_def.tags:
      return dict(meta_graph.signature_def)
  raise ValueError(f"{export_dir}: no MetaGraph tagged 'serve'")


@dataclasses.dataclass
class Signature:
  """One callable signature of a loaded servable.

  Attributes:
    batchable: every input and output has an unknown dimension 0 (a batch dimension), so
      concurrent requests can be concatenated and the outputs split back by rows.
  """
  name: str
  function: Callable
  input_specs: Dict[str, tf.TensorSpec]
  output_specs: Dict[str, tf.TensorSpec]
  batchable: bool

  def __call__(self, inputs: Mapping[str, np.ndarray]) -> Dict[str, np.ndarray]:
    """Runs the signature on numpy inputs; TF errors become `ServingError`s with the same code."""
    feeds = {k: tf.constant(v, dtype=self.input_specs[k].dtype) for k, v in inputs.items()}
    try:
      outputs = self.function(**feeds)
    except tf.errors.OpError as e:
      raise validation.from_tf_error(e) from None
    return {k: v.numpy() for k, v in outputs.items()}


def _is_batch_major(spec) -> bool:
  return spec.shape.rank is not None and spec.shape.rank >= 1 and spec.shape[0] is None


def _make_signature(name: str, fn) -> Signature:
  input_specs = dict(fn.structured_input_signature[1])
  output_specs = {k: tf.TensorSpec(v.shape, v.dtype) for k, v in fn.structured_outputs.items()}
  batchable = (bool(input_specs) and all(map(_is_batch_major, input_specs.values())) and
               all(map(_is_batch_major, output_specs.values())))
  return Signature(name, fn, input_specs, output_specs, batchable)


class Servable:
  """A loaded SavedModel version with its signatures and an in-flight request count."""

  def __init__(self, name: str, version: int, path: str):
    self.name = name
    self.version = version
    self.path = path
    self.signature_defs = read_signature_defs(path)
    self._model = tf.saved_model.load(path, tags=["serve"])
    self.signatures = {k: _make_signature(k, fn) for k, fn in self._model.signatures.items()}
    self._in_flight = 0
    self._idle = threading.Condition()

  def signature(self, name: str) -> Signature:
    """Returns the named signature ('' means serving_default); FAILED_PRECONDITION if absent."""
    name = name or DEFAULT_SIGNATURE
    sig = self.signatures.get(name)
    if sig is None:
      raise ServingError(grpc.StatusCode.FAILED_PRECONDITION,
                         f"Serving signature key \"{name}\" not found.")
    return sig

  def warm_up(self) -> int:
    """Replays `assets.extra/tf_serving_warmup_requests` (PredictionLogs); returns the count."""
    path = os.path.join(self.path, WARMUP_FILE)
    if not tf.io.gfile.exists(path):
      return 0
    count = 0
    for record in tf.data.TFRecordDataset(path).take(MAX_WARMUP_RECORDS):
      log = prediction_log_pb2.PredictionLog.FromString(record.numpy())
      if log.WhichOneof("log_type") != "predict_log":
        raise ValueError(f"{path}: record {count} is not a predict_log (only Predict warm-up is "
                         "supported)")
      request = log.predict_log.request
      sig = self.signature(request.model_spec.signature_name)
      try:
        arrays = validation.decode_inputs(sig.input_specs, request.inputs,
                                          validation.ValidationConfig(max_string_bytes=0))
        sig(arrays)
      except ServingError as e:
        raise ValueError(f"{path}: warm-up record {count} failed: {e.message}") from None
      count += 1
    return count

  def acquire(self) -> None:
    with self._idle:
      self._in_flight += 1

  def release(self) -> None:
    with self._idle:
      self._in_flight -= 1
      if not self._in_flight:
        self._idle.notify_all()

  def wait_idle(self, timeout: float) -> bool:
    """Waits until no request uses this servable; False on timeout."""
    with self._idle:
      return self._idle.wait_for(lambda: self._in_flight == 0, timeout)

  def unload(self) -> None:
    """Drops the loaded model (TF frees its resources once in-flight references are gone)."""
    self._model = None
    self.signatures = {}


def load_error_message(path: str, error: BaseException) -> str:
  """What GetModelStatus reports for a version that failed to load: one line naming the version
  directory and, where TensorFlow names one, the damaged or missing file inside it."""
  text = error_text(error)
  # TF's loader appends a hint about devices that does not apply to a damaged file.
  text = text.split(" You may be trying to load on a different device")[0]
  return f"Version directory {path} failed to load: {type(error).__name__}: {text[:500]}"


@dataclasses.dataclass
class VersionStatus:
  """What GetModelStatus reports for one version."""
  version: int
  state: State
  error_code: grpc.StatusCode = grpc.StatusCode.OK
  error_message: str = ""


class _ModelEntry:

  def __init__(self, config: ModelConfig):
    self.config = config
    self.servables: Dict[int, Servable] = {}   # available versions (swapped as a whole)
    self.status: Dict[int, VersionStatus] = {}
    self.load_failures: Dict[int, int] = {}


class ModelManager:
  """Serves the configured models: loads versions, swaps them atomically, counts usage.

  Args:
    configs: the models to serve.
    enable_warmup: replay each version's warm-up requests before it goes live.
    max_num_load_retries: a version that failed to load is retried on this many later polls.
    unload_grace_seconds: how long an old version waits for in-flight requests before unloading.
  """

  def __init__(self, configs: List[ModelConfig], enable_warmup: bool = True,
               max_num_load_retries: int = 5, unload_grace_seconds: float = 30.0):
    self.enable_warmup = enable_warmup
    self.max_num_load_retries = max_num_load_retries
    self.unload_grace_seconds = unload_grace_seconds
    self._lock = threading.Lock()
    self._poll_lock = threading.Lock()
    self._models: Dict[str, _ModelEntry] = {c.name: _ModelEntry(c) for c in configs}
    self._stop = threading.Event()
    self._thread: Optional[threading.Thread] = None

  # Requests.

  def model_names(self) -> List[str]:
    with self._lock:
      return sorted(self._models)

  def config(self, name: str) -> ModelConfig:
    with self._lock:
      entry = self._models.get(name)
    if entry is None:
      raise ServingError(grpc.StatusCode.NOT_FOUND,
                         f"Servable not found for request: Latest({name})")
    return entry.config

  def _resolve(self, name: str, version: Optional[int], label: Optional[str]) -> Servable:
    with self._lock:
      entry = self._models.get(name)
      if entry is None:
        raise ServingError(grpc.StatusCode.NOT_FOUND,
                           f"Servable not found for request: Latest({name})")
      if label:
        version = entry.config.label_to_version(label)
      servables = entry.servables
      if version is None:
        if not servables:
          raise ServingError(grpc.StatusCode.NOT_FOUND,
                             f"Servable not found for request: Latest({name})")
        servable = servables[max(servables)]
      else:
        servable = servables.get(version)
        if servable is None:
          raise ServingError(grpc.StatusCode.NOT_FOUND,
                             f"Servable not found for request: Specific({name}, {version})")
      servable.acquire()
      return servable

  @contextlib.contextmanager
  def servable(self, name: str, version: Optional[int] = None,
               label: Optional[str] = None) -> Iterator[Servable]:
    """Context manager holding the requested servable (newest if no version/label) in use.

    Raises:
      ServingError: NOT_FOUND for an unknown model or a version not loaded, INVALID_ARGUMENT for
        an unknown label.
    """
    servable = self._resolve(name, version, label)
    try:
      yield servable
    finally:
      servable.release()

  def status(self, name: str, version: Optional[int] = None) -> List[VersionStatus]:
    """Returns the state of every version the manager knows for `name` (or just `version`)."""
    with self._lock:
      entry = self._models.get(name)
      if entry is None:
        raise ServingError(grpc.StatusCode.NOT_FOUND,
                           f"Could not find any versions of model {name}")
      statuses = [dataclasses.replace(s) for _, s in sorted(entry.status.items())]
    if version is not None:
      statuses = [s for s in statuses if s.version == version]
      if not statuses:
        raise ServingError(grpc.StatusCode.NOT_FOUND,
                           f"Could not find version {version} of model {name}")
    elif not statuses:
      raise ServingError(grpc.StatusCode.NOT_FOUND,
                         f"Could not find any versions of model {name}")
    return statuses

  # Loading.

  def _set_status(self, entry, version, state, error=None):
    with self._lock:
      s = VersionStatus(version, state)
      if error is not None:
        s.error_code, s.error_message = error
      entry.status[version] = s

  def _load(self, entry: _ModelEntry, version: int) -> Optional[Servable]:
    path = os.path.join(entry.config.base_path, str(version))
    self._set_status(entry, version, State.LOADING)
    logging.info("Loading servable %s version %d from %s", entry.config.name, version, path)
    try:
      servable = Servable(entry.config.name, version, path)
      warmed = servable.warm_up() if self.enable_warmup else 0
    except Exception as e:  # pylint: disable=broad-except
      failures = entry.load_failures.get(version, 0) + 1
      entry.load_failures[version] = failures
      final = failures > self.max_num_load_retries
      message = load_error_message(path, e)
      logging.error("Loading %s version %d failed (attempt %d%s): %s", entry.config.name, version,
                    failures, ", giving up" if final else ", will retry", message)
      self._set_status(entry, version, State.END if final else State.START,
                       (grpc.StatusCode.UNKNOWN, message))
      return None
    # The restore's and the warm-up's transient buffers are freed by now; hand them back so the
    # server's resident size is what it serves.
    return_free_memory()
    logging.info("Loaded servable %s version %d (%d warm-up requests)", entry.config.name, version,
                 warmed)
    return servable

  def _unload(self, entry: _ModelEntry, servable: Servable) -> None:
    self._set_status(entry, servable.version, State.UNLOADING)
    if not servable.wait_idle(self.unload_grace_seconds):
      logging.warning("Unloading %s version %d with requests still in flight", servable.name,
                      servable.version)
    servable.unload()
    return_free_memory()
    self._set_status(entry, servable.version, State.END)
    logging.info("Unloaded servable %s version %d", servable.name, servable.version)

  def _poll_model(self, entry: _ModelEntry) -> None:
    config = entry.config
    available = list_versions(config.base_path)
    wanted = config.version_policy.select(available)
    for label, version in config.version_labels:
      if version not in available:
        logging.warning("%s: label %r names version %d, which is not on disk", config.name, label,
                        version)
    loaded = dict(entry.servables)
    new = {}
    for version in wanted:
      if version in loaded:
        continue
      if entry.load_failures.get(version, 0) > self.max_num_load_retries:
        continue
      servable = self._load(entry, version)
      if servable is not None:
        new[version] = servable
    keep = {v: s for v, s in loaded.items() if v in wanted}
    serving = {**keep, **new}
    if not serving:
      serving = loaded  # Never drop to zero versions: keep the old ones until a new one loads.
    removed = [s for v, s in loaded.items() if v not in serving]
    if serving is not loaded or new:
      with self._lock:  # The switch: one dict replacement, seen atomically by requests.
        entry.servables = serving
        for v in new:
          entry.status[v] = VersionStatus(v, State.AVAILABLE)
    for servable in removed:
      self._unload(entry, servable)

  def poll_once(self) -> None:
    """Scans every model's base path once: loads new versions, switches, unloads old ones."""
    with self._poll_lock:
      with self._lock:
        entries = list(self._models.values())
      for entry in entries:
        try:
          self._poll_model(entry)
        except Exception:  # pylint: disable=broad-except
          logging.exception("Polling model %s failed", entry.config.name)

  def reload_config(self, configs: List[ModelConfig]) -> None:
    """Replaces the served model list: new models are loaded, removed models unloaded."""
    with self._poll_lock:
      with self._lock:
        old = self._models
        self._models = {}
        for c in configs:
          entry = old.get(c.name)
          if entry is None or entry.config.base_path != c.base_path:
            entry = _ModelEntry(c)
          else:
            entry.config = c
          self._models[c.name] = entry
        dropped = [e for n, e in old.items() if self._models.get(n) is not e]
      for entry in dropped:
        for servable in entry.servables.values():
          self._unload(entry, servable)
    self.poll_once()

  def start_polling(self, interval_seconds: float) -> None:
    """Polls in a daemon thread every `interval_seconds` (0 disables polling)."""
    if interval_seconds <= 0:
      return

    def loop():
      while not self._stop.wait(interval_seconds):
        self.poll_once()

    self._thread = threading.Thread(target=loop, name="fs-poll", daemon=True)
    self._thread.start()

  def stop(self) -> None:
    """Stops polling (loaded models stay until the process exits)."""
    self._stop.set()
    if self._thread is not None:
      self._thread.join()
