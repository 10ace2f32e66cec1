r"""A gRPC model server speaking TF Serving's protocol, for SavedModels stock TF Serving cannot run.

Serves PredictionService.Predict / GetModelMetadata and ModelService.GetModelStatus /
HandleReloadConfigRequest from `tensorflow_serving.apis`, so any TF Serving client (including
`serving.client`) works unchanged. It exists for machines without `tensorflow_model_server` and for
the ScaNN variant of `realm_openqa`, whose `Scann>*` ops the stock binary lacks (ScaNN is imported
before loading so they are registered).

Usage:
  python -m serving.server --port=8500 --model_config_file=serving/models.config \
      --models_dir=/path/to/exports --enable_batching \
      --batching_parameters_file=serving/batching.config
  python -m serving.server --port=8500 --model_name=realm_openqa \
      --model_base_path=/path/to/exports/realm_openqa

Same layout and config as TF Serving: `<base_path>/<version>/saved_model.pb`; the newest version
(per `model_version_policy`) is served; new versions are picked up every
`--file_system_poll_wait_seconds` and swapped in without failing requests. SIGTERM / SIGINT stop
the server gracefully (in-flight requests get `--shutdown_grace_seconds` to finish).

Caps, all set by ServerOptions / flags: message sizes (`max_receive_message_bytes`, gRPC's
RESOURCE_EXHAUSTED beyond it), string and batch sizes (`validation`), and how long a request may
take (`max_request_seconds`, or the client's own deadline when shorter: DEADLINE_EXCEEDED).
Bytes that are not a request proto are INVALID_ARGUMENT (gRPC's default is INTERNAL with a logged
traceback).
"""
import dataclasses
import runpy
import threading
import time
from concurrent import futures
from typing import List, Optional

from realm_tf.utils import command_line  # first: quiets TensorFlow's C++ logs before it is imported

if __name__ == "__main__":  # a server process: TensorFlow without Keras (imported next)
  command_line.keep_keras_out()

import grpc  # pylint: disable=g-bad-import-order,wrong-import-order
from absl import logging  # pylint: disable=g-bad-import-order,wrong-import-order
from google.protobuf import any_pb2
from tensorflow_serving.apis import (get_model_metadata_pb2, get_model_status_pb2,
                                     model_management_pb2, model_service_pb2_grpc, predict_pb2,
                                     prediction_service_pb2_grpc)

from serving import batching as batching_lib
from serving import model_config, model_manager, tensors
from serving import validation as validation_lib
from serving.validation import ServingError

MiB = 1 << 20


@dataclasses.dataclass(frozen=True)
class ServerOptions:
  """Everything the server needs (the CLI flags, as a config object for in-process use).

  Attributes:
    models: the models to serve.
    port: gRPC port (0 picks a free one; `ModelServer.port` tells which).
    bind_address: interface to listen on.
    file_system_poll_wait_seconds: how often to look for new versions (0: only at start).
    batching: server-side batching parameters, or None to run every request alone.
    validation: string / batch limits applied to every request.
    max_receive_message_bytes, max_send_message_bytes: gRPC message size limits.
    grpc_max_workers: threads handling RPCs (each blocks while its request is batched).
    enable_model_warmup: replay assets.extra/tf_serving_warmup_requests before a version serves.
    max_num_load_retries: later polls retry a failed load this many times.
    max_request_seconds: the longest a Predict may wait to be answered (0: only the client's
      deadline); a shorter client deadline wins. Past it the request is DEADLINE_EXCEEDED.
  """
  models: List[model_config.ModelConfig]
  port: int = 8500
  bind_address: str = "0.0.0.0"
  file_system_poll_wait_seconds: float = 1.0
  batching: Optional[batching_lib.BatchingConfig] = None
  validation: validation_lib.ValidationConfig = validation_lib.ValidationConfig()
  max_receive_message_bytes: int = 64 * MiB
  max_send_message_bytes: int = 64 * MiB
  grpc_max_workers: int = 64
  enable_model_warmup: bool = True
  max_num_load_retries: int = 5
  max_request_seconds: float = 60.0


def _abort(context: grpc.ServicerContext, err: ServingError):
  context.abort(err.code, err.message)


class _Undecodable:
  """Stands for request bytes that are not the method's proto (answered INVALID_ARGUMENT)."""

  def __init__(self, message: str):
    self.message = message


class RejectUndecodableRequests(grpc.ServerInterceptor):
  """Answers a request whose bytes do not parse as the method's proto with INVALID_ARGUMENT.

  gRPC's own handling of a failed parse is INTERNAL with a traceback in the server's log, which
  reads as a server bug; a malformed message is the client's error, as TF Serving reports it.
  """

  def intercept_service(self, continuation, handler_call_details):
    handler = continuation(handler_call_details)
    if (handler is None or handler.request_streaming or handler.unary_unary is None
        or handler.request_deserializer is None):
      return handler
    parse, behavior = handler.request_deserializer, handler.unary_unary
    method = handler_call_details.method

    def safe_parse(data):
      try:
        return parse(data)
      except Exception as e:  # pylint: disable=broad-except
        return _Undecodable(f"{method}: the request ({len(data)} bytes) is not a valid "
                            f"message: {type(e).__name__}: {e}")

    def checked(request, context):
      if isinstance(request, _Undecodable):
        context.abort(grpc.StatusCode.INVALID_ARGUMENT, request.message)
      return behavior(request, context)

    return handler._replace(request_deserializer=safe_parse, unary_unary=checked)


def _deadline(context: grpc.ServicerContext, cap_seconds: float) -> Optional[float]:
  """Seconds this request may still take: the shorter of the client's deadline and the cap
  (None: neither)."""
  limits = [s for s in (context.time_remaining(), cap_seconds or None) if s is not None]
  return min(limits) if limits else None


def _requested_version(model_spec):
  version = model_spec.version.value if model_spec.HasField("version") else None
  label = model_spec.version_label if model_spec.WhichOneof("version_choice") == \
      "version_label" else None
  return version, label


class DrainCounter:
  """Counts the Predict calls in flight when a stop begins and those of them that finish within
  the grace period, so a shutdown can say whether it answered everything it had accepted."""

  def __init__(self):
    self._lock = threading.Lock()
    self._next = 0
    self._running = set()
    self._at_stop = set()
    self._deadline = None
    self.answered = 0

  def enter(self) -> int:
    with self._lock:
      self._next += 1
      self._running.add(self._next)
      return self._next

  def leave(self, token: int) -> None:
    with self._lock:
      self._running.discard(token)
      if token in self._at_stop and time.monotonic() <= self._deadline:
        self.answered += 1

  def begin(self, grace_seconds: float) -> int:
    """Marks the calls running now; returns how many there are."""
    with self._lock:
      self._at_stop = set(self._running)
      self._deadline = time.monotonic() + grace_seconds
      return len(self._at_stop)


class PredictionServicer(prediction_service_pb2_grpc.PredictionServiceServicer):
  """Predict and GetModelMetadata over the model manager (Classify/Regress stay UNIMPLEMENTED)."""

  def __init__(self, manager: model_manager.ModelManager,
               scheduler: Optional[batching_lib.BatchScheduler],
               validation_config: validation_lib.ValidationConfig,
               max_request_seconds: float = 0.0):
    self._manager = manager
    self._scheduler = scheduler
    self._validation = validation_config
    self._max_request_seconds = max_request_seconds
    self.drain = DrainCounter()

  def predict(self, request: predict_pb2.PredictRequest,
              timeout: Optional[float] = None) -> predict_pb2.PredictResponse:
    """Serves one PredictRequest within `timeout` seconds (None: no limit); raises ServingError
    for anything the client got wrong, DEADLINE_EXCEEDED when the time ran out before the model
    ran."""
    start = time.monotonic()
    if timeout is not None and timeout <= 0:
      raise ServingError(grpc.StatusCode.DEADLINE_EXCEEDED,
                         "the request's deadline passed before it was served")
    spec = request.model_spec
    version, label = _requested_version(spec)
    with self._manager.servable(spec.name, version, label) as servable:
      sig = servable.signature(spec.signature_name)
      wanted = validation_lib.check_output_filter(list(sig.output_specs), request.output_filter)
      arrays = validation_lib.decode_inputs(
          sig.input_specs, request.inputs,
          validation_lib.for_signature(self._validation, sig.output_specs))
      size = validation_lib.batch_size_of(arrays)
      left = None if timeout is None else timeout - (time.monotonic() - start)
      if left is not None and left <= 0:
        raise ServingError(grpc.StatusCode.DEADLINE_EXCEEDED,
                           f"the request's deadline of {timeout:.3g} s passed before it ran")
      if self._scheduler is not None and sig.batchable and size:
        outputs = self._scheduler.run((servable.name, servable.version, sig.name), sig, arrays,
                                      size, timeout=left)
      else:
        outputs = sig(arrays)
      response = predict_pb2.PredictResponse()
      response.model_spec.name = spec.name
      response.model_spec.version.value = servable.version
      response.model_spec.signature_name = sig.name
      for name in wanted:
        response.outputs[name].CopyFrom(tensors.to_proto(outputs[name]))
    return response

  def Predict(self, request, context):  # pylint: disable=invalid-name
    token = self.drain.enter()
    try:
      return self.predict(request, _deadline(context, self._max_request_seconds))
    except ServingError as e:
      _abort(context, e)
    except Exception as e:  # pylint: disable=broad-except
      logging.exception("Predict failed")
      context.abort(grpc.StatusCode.INTERNAL, f"{type(e).__name__}: {e}")
    finally:
      self.drain.leave(token)

  def GetModelMetadata(self, request, context):  # pylint: disable=invalid-name
    try:
      if not request.metadata_field:
        raise validation_lib.invalid_argument(
            "GetModelMetadataRequest must specify at least one metadata_field")
      for field in request.metadata_field:
        if field != "signature_def":
          raise validation_lib.invalid_argument(f"Metadata field {field} is not supported")
      version, label = _requested_version(request.model_spec)
      with self._manager.servable(request.model_spec.name, version, label) as servable:
        sig_map = get_model_metadata_pb2.SignatureDefMap()
        for key, sig_def in servable.signature_defs.items():
          sig_map.signature_def[key].CopyFrom(sig_def)
        response = get_model_metadata_pb2.GetModelMetadataResponse()
        response.model_spec.name = request.model_spec.name
        response.model_spec.version.value = servable.version
        packed = any_pb2.Any()
        packed.Pack(sig_map)
        response.metadata["signature_def"].CopyFrom(packed)
      return response
    except ServingError as e:
      _abort(context, e)


class ModelServicer(model_service_pb2_grpc.ModelServiceServicer):
  """GetModelStatus (per-version state) and HandleReloadConfigRequest (swap the model list)."""

  def __init__(self, manager: model_manager.ModelManager):
    self._manager = manager

  def GetModelStatus(self, request, context):  # pylint: disable=invalid-name
    try:
      version, label = _requested_version(request.model_spec)
      name = request.model_spec.name
      if label:
        version = self._manager.config(name).label_to_version(label)
      response = get_model_status_pb2.GetModelStatusResponse()
      for s in self._manager.status(name, version):
        entry = response.model_version_status.add()
        entry.version = s.version
        entry.state = int(s.state)
        entry.status.error_code = s.error_code.value[0]
        entry.status.error_message = s.error_message
      return response
    except ServingError as e:
      _abort(context, e)

  def HandleReloadConfigRequest(self, request, context):  # pylint: disable=invalid-name
    response = model_management_pb2.ReloadConfigResponse()
    try:
      configs = model_config.model_configs_from_proto(request.config, "ReloadConfigRequest")
    except ValueError as e:
      response.status.error_code = grpc.StatusCode.INVALID_ARGUMENT.value[0]
      response.status.error_message = str(e)
      return response
    self._manager.reload_config(configs)
    return response


class ModelServer:
  """Owns the model manager, batch scheduler and gRPC server; usable in-process (tests, bench)."""

  def __init__(self, options: ServerOptions):
    self.options = options
    self.manager = model_manager.ModelManager(options.models,
                                              enable_warmup=options.enable_model_warmup,
                                              max_num_load_retries=options.max_num_load_retries)
    self.scheduler = (batching_lib.BatchScheduler(options.batching)
                      if options.batching is not None else None)
    vcfg = options.validation
    if options.batching is not None and not vcfg.max_batch_size:
      vcfg = dataclasses.replace(vcfg, max_batch_size=options.batching.max_batch_size)
    self._server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=options.grpc_max_workers,
                                   thread_name_prefix="grpc"),
        interceptors=[RejectUndecodableRequests()],
        options=[("grpc.max_receive_message_length", options.max_receive_message_bytes),
                 ("grpc.max_send_message_length", options.max_send_message_bytes),
                 ("grpc.so_reuseport", 0)])
    self.prediction_servicer = PredictionServicer(self.manager, self.scheduler, vcfg,
                                                  options.max_request_seconds)
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(
        self.prediction_servicer, self._server)
    model_service_pb2_grpc.add_ModelServiceServicer_to_server(ModelServicer(self.manager),
                                                              self._server)
    self.port = None

  def start(self) -> int:
    """Loads the current versions, then opens the port and starts polling; returns the port."""
    self.manager.poll_once()
    for model in self.options.models:
      try:
        self.manager.status(model.name)
      except ServingError:
        logging.warning("No servable version of %s under %s yet (waiting for <version>/ "
                        "directories)", model.name, model.base_path)
    address = f"{self.options.bind_address}:{self.options.port}"
    self.port = self._server.add_insecure_port(address)
    if not self.port:
      raise RuntimeError(f"cannot bind gRPC server to {address}")
    self._server.start()
    self.manager.start_polling(self.options.file_system_poll_wait_seconds)
    logging.info("Running gRPC ModelServer at %s:%d ...", self.options.bind_address, self.port)
    return self.port

  def batch_stats(self) -> Optional[batching_lib.BatchStats]:
    """Batching counters (None when batching is off)."""
    return self.scheduler.stats if self.scheduler is not None else None

  def stop(self, grace_seconds: float = 10.0) -> None:
    """Stops accepting RPCs, lets in-flight ones finish within the grace period, stops threads;
    logs how many Predict calls were in flight and how many of them were answered in time."""
    start = time.monotonic()
    in_flight = self.prediction_servicer.drain.begin(grace_seconds)
    done = self._server.stop(grace_seconds)
    done.wait()
    logging.info("drain: %d Predict requests in flight at stop, %d answered within the grace "
                 "period (%.3g s of %.3g s)", in_flight, self.prediction_servicer.drain.answered,
                 time.monotonic() - start, grace_seconds)
    self.manager.stop()
    if self.scheduler is not None:
      self.scheduler.stop()
      logging.info("batching stats: %s", self.scheduler.stats.as_dict())
    logging.info("Server stopped")


if __name__ == "__main__":  # `python -m serving.server`: the command line lives in realm_tf/launch
  runpy.run_module("realm_tf.launch.model_server", run_name="__main__")
