"""Serving exports: REALM's open-QA system and its parts as TF Serving SavedModels.

`export_openqa` (openqa.py) writes `realm_openqa` (stock ops) / `realm_openqa_scann`;
`export_components` (components.py) writes any of COMPONENTS: those two, `realm_query_embedder`,
`realm_doc_embedder`, `realm_searcher[_scann]` and `realm_reader` (modules.py). All tokenize
inside the graph with TF.Text ops and contain no py_function (versioning.py checks). The CLI is
`python -m realm_tf.launch.export` over realm_tf.stages.export_job; docs/SERVING_SIGNATURES.md documents the signatures.
"""
from realm_tf.export.answers import select_answers
from realm_tf.export.block_table import BlockTable
from realm_tf.export.components import COMPONENTS, export_components
from realm_tf.export.openqa import OPENQA, OpenQAModule, export_openqa, in_process_answers
from realm_tf.export.versioning import (ServingExportError, check_saved_model_ops, next_version,
                                        publish_saved_model, read_export_info,
                                        saved_model_op_types, variant_model_name)
