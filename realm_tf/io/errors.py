"""User-facing text of TensorFlow errors.

A TensorFlow runtime error's message carries the runtime's own context: a
`{{function_node __wrapped__IteratorGetNext_output_types_1_device_/job:localhost/...}}` prefix,
a `[[{{node Reshape}}]]` graph location, an `[Op:IteratorGetNext] name: ` suffix and tf.data's
`Error in user-defined function passed to MapDataset:1 transformation with iterator: ...:`.
None of it helps the person who reads an error about their file. `error_text` keeps the message
itself, on one line, for every error path that wraps a TensorFlow error in its own message.
"""
import re

_FUNCTION_NODE = re.compile(r"\{\{function_node [^}]*\}\}")
# The graph location and everything after it (`\n\t [[{{node X}}]]`, `[[{{function_node ...`).
_GRAPH_CONTEXT = re.compile(r"\s*\[\[(\{\{)?(function_)?node .*\Z", re.S)
# The eager op suffix: ` [Op:IteratorGetNext] name: ` (the name may be empty).
_OP_SUFFIX = re.compile(r"\s*\[Op:[^\]]*\](\s*name:.*)?\Z", re.S)
_TF_DATA_FUNCTION = re.compile(r"Error in user-defined function passed to \S+ transformation "
                               r"with iterator: \S+: ")


def _is_op_error(error: BaseException) -> bool:
  """Whether `error` is a `tf.errors.OpError` (told without importing TensorFlow)."""
  return any(k.__name__ == "OpError" and k.__module__.startswith("tensorflow")
             for k in type(error).__mro__)


def error_text(error: BaseException) -> str:
  """The message of `error` (a `tf.errors.OpError` or any exception) on one line, without
  TensorFlow's internal context: the `{{function_node ...}}` prefix, `[[...]]` graph locations
  and what follows them, the `[Op:...] name:` suffix and tf.data's user-function preamble. Falls
  back to the exception's type name when nothing is left."""
  text = error.message if _is_op_error(error) else str(error)
  text = _FUNCTION_NODE.sub(" ", text)
  text = _GRAPH_CONTEXT.sub("", text)
  text = _OP_SUFFIX.sub("", text)
  text = _TF_DATA_FUNCTION.sub("", text)
  return " ".join(text.split()) or type(error).__name__
