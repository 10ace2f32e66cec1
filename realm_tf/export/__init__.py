"""Serving exports: REALM's open-QA system and its parts as TF Serving SavedModels.

`export_openqa` writes `realm_openqa` (stock ops) / `realm_openqa_scann`; `export_components`
writes `realm_query_embedder`, `realm_doc_embedder`, `realm_searcher[_scann]` and `realm_reader`.
All tokenize inside the graph with TF.Text ops and contain no py_function. The CLI is
`python -m realm_tf.launch.export`; docs/SERVING_SIGNATURES.md documents the signatures.
"""
from realm_tf.export.components import (BlockTable, COMPONENTS, ServingExportError,
                                        check_saved_model_ops, export_components, next_version,
                                        publish_saved_model, read_export_info,
                                        saved_model_op_types, select_answers, variant_model_name)
from realm_tf.export.openqa import OPENQA, OpenQAModule, export_openqa, in_process_answers
