"""The precision of the host-side query embedder: a rule chosen by measurement, and the tower in it.

REALM's input pipeline embeds every query with the exported query tower on the host CPU (the
trainer's client or a tf.data service worker), not on the accelerator. A trainer run with
`--mixed_precision=bfloat16` builds towers that compute in bfloat16. On a CPU that has native
bfloat16 instructions (`avx512_bf16` or `amx_bf16`) and TensorFlow's oneDNN kernels turned on,
bfloat16 matmuls are faster than float32; without them they are emulated and much slower
(benchmarks/host_embedding_bench.py, docs/BENCHMARKS.md: on an AMD EPYC with avx512_bf16,
bfloat16 ran 1.6-1.8x as fast as float32 per CPU second; with oneDNN held to AVX-512 without
its bf16 instructions it took 2.3x the float32 time, and 37x with oneDNN off).

`resolve_query_dtype` is that rule: "auto" exports the query tower in bfloat16 only when the
trainer computes in bfloat16 and the exporting host runs bfloat16 natively; otherwise in float32.
The exporting process runs on the hosts that run the input pipeline (a TPU VM's workers are one
machine type), so its CPU stands for theirs; "float32" / "bfloat16" override the rule.
`query_tower_in(retriever, dtype)` returns a retriever whose query tower computes in `dtype`: the
retriever itself when it already does, else a copy of its query tower built under the matching
Keras policy with the same (float32) weights.
"""
import contextlib
import os
import platform
from typing import FrozenSet, Optional

import tensorflow as tf
import tf_keras

QUERY_DTYPES = ("auto", "float32", "bfloat16")
# CPU flags (/proc/cpuinfo) with which oneDNN runs bfloat16 matmuls in hardware.
NATIVE_BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})
# ONEDNN_MAX_CPU_ISA values that leave out oneDNN's bfloat16 instructions.
_ISAS_WITHOUT_BF16 = frozenset({"SSE41", "AVX", "AVX2", "AVX2_VNNI", "AVX2_VNNI_2", "AVX512_CORE",
                                "AVX512_CORE_VNNI"})
_POLICY = {"float32": "float32", "bfloat16": "mixed_bfloat16"}


def cpu_flags(path: str = "/proc/cpuinfo") -> FrozenSet[str]:
  """The first processor's feature flags in `path` (empty when the file is unreadable)."""
  try:
    with open(path, encoding="utf-8", errors="replace") as f:
      for line in f:
        if line.startswith("flags"):
          return frozenset(line.split(":", 1)[1].split())
  except OSError:
    pass
  return frozenset()


def onednn_enabled() -> bool:
  """Whether TensorFlow uses its oneDNN CPU kernels: on by default on x86-64 Linux since TF 2.9,
  off when TF_ENABLE_ONEDNN_OPTS is 0/false."""
  if platform.machine().lower() not in ("x86_64", "amd64"):
    return False
  return os.environ.get("TF_ENABLE_ONEDNN_OPTS", "1").strip().lower() not in ("0", "false")


def onednn_isa_allows_bf16() -> bool:
  """False when ONEDNN_MAX_CPU_ISA holds oneDNN below its bfloat16 instructions."""
  isa = os.environ.get("ONEDNN_MAX_CPU_ISA", os.environ.get("DNNL_MAX_CPU_ISA", ""))
  return isa.strip().upper() not in _ISAS_WITHOUT_BF16


def native_bf16(flags: Optional[FrozenSet[str]] = None, onednn: Optional[bool] = None) -> bool:
  """True when this host multiplies bfloat16 matrices in hardware: oneDNN on (and not held below
  its bfloat16 instructions) and a bfloat16 CPU flag."""
  flags = cpu_flags() if flags is None else flags
  onednn = onednn_enabled() and onednn_isa_allows_bf16() if onednn is None else onednn
  return bool(onednn and NATIVE_BF16_FLAGS & set(flags))


def resolve_query_dtype(requested: str, trainer_dtype: str,
                        flags: Optional[FrozenSet[str]] = None,
                        onednn: Optional[bool] = None) -> str:
  """The dtype the exported query tower computes in: `requested` unless it is "auto"; "auto" is
  bfloat16 when `trainer_dtype` is bfloat16 and the host runs bfloat16 natively, else float32."""
  if requested not in QUERY_DTYPES:
    raise ValueError(f"query_dtype must be one of {QUERY_DTYPES}, got {requested!r}.")
  if requested != "auto":
    return requested
  return "bfloat16" if trainer_dtype == "bfloat16" and native_bf16(flags, onednn) else "float32"


def compute_dtype(retriever) -> str:
  """The dtype `retriever`'s query tower computes in ("float32", "bfloat16" or "float16")."""
  return str(retriever.query_encoder.compute_dtype)


@contextlib.contextmanager
def keras_policy(name: str):
  """Sets the global Keras mixed-precision policy inside the block (layers built there keep it)."""
  old = tf_keras.mixed_precision.global_policy()
  tf_keras.mixed_precision.set_global_policy(name)
  try:
    yield
  finally:
    tf_keras.mixed_precision.set_global_policy(old)


def query_variables(retriever):
  """The variables of `retriever`'s query tower (encoder, then projection)."""
  return list(retriever.query_encoder.variables) + list(retriever.query_projection.variables)


def query_tower_in(retriever, dtype: str):
  """A retriever whose `embed_queries` computes in `dtype` with `retriever`'s query weights.

  `retriever` itself when its query tower already computes in `dtype`; otherwise a new
  `Retriever` of the same config, built on the host CPU under the matching policy, of which only
  the query tower is built and given the same values (the document tower stays unbuilt).
  """
  if dtype not in _POLICY:
    raise ValueError(f"dtype must be one of {tuple(_POLICY)}, got {dtype!r}.")
  if compute_dtype(retriever) == dtype:
    return retriever
  from realm_tf.modeling.retriever import Retriever  # pylint: disable=g-import-not-at-top
  from realm_tf.text.packing import INPUT_KEYS  # pylint: disable=g-import-not-at-top
  with keras_policy(_POLICY[dtype]), tf.device("/CPU:0"):
    copy = Retriever(retriever.config, name=f"{retriever.name}_{dtype}")
    copy.embed_queries({k: tf.zeros([1, retriever.config.query_seq_length], tf.int32)
                        for k in INPUT_KEYS})
  src, dst = query_variables(retriever), query_variables(copy)
  if [tuple(v.shape) for v in src] != [tuple(v.shape) for v in dst]:
    raise ValueError("The query tower rebuilt in %s does not match the trained one." % dtype)
  for d, s in zip(dst, src):
    d.assign(tf.convert_to_tensor(s))
  return copy
