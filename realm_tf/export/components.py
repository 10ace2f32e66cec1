"""What an export run writes: the one list of exportable components, and writing a chosen few.

    component       model(s) written, each `<export_base>/<model>/<version>/`
    openqa          realm_openqa (stock ops) / realm_openqa_scann       (openqa.py)
    query_embedder  realm_query_embedder: questions [B] → embeddings   (modules.py)
    doc_embedder    realm_doc_embedder: titles, bodies [B] → embeddings
    searcher        realm_searcher / realm_searcher_scann: embeddings → top-k block ids
    reader          realm_reader: questions + block texts → answers (holds no corpus)

`export_components` exports a subset of one fine-tuned open-QA model under one version number
(the next free one by default), refusing up front anything that would leave a partial run: an
unknown component, an existing version, a doc embedder without its index bundle. The pieces live
beside this module: versioning.py (SavedModel I/O, versions, op checks), block_table.py (the
corpus inside realm_openqa, the one component holding it), answers.py (in-graph reading and
answer selection), mips.py (the stock / ScaNN search), modules.py (the part modules), openqa.py
and warmup.py. realm_tf/stages/export_job.py rebuilds a model from a model_dir and calls
`export_components` (the `python -m realm_tf.launch.export` job).
"""
import os
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np
import tensorflow as tf

from realm_tf.export import openqa
from realm_tf.export.mips import mips_info
from realm_tf.export import warmup as warmup_lib
from realm_tf.export.modules import (DOC_EMBEDDER, QUERY_EMBEDDER, READER, SEARCHER,
                                     DocEmbedderModule, QueryEmbedderModule, ReaderModule,
                                     SearcherModule)
from realm_tf.export.versioning import (ServingExportError, model_info, next_version,
                                        publish_saved_model, save_options, variant_model_name)
from realm_tf.text import RealmTokenizer

COMPONENTS = ("openqa", "query_embedder", "doc_embedder", "searcher", "reader")
# Components with one model per MIPS variant (the others ignore `variants`).
_PER_VARIANT = {"openqa": openqa.OPENQA, "searcher": SEARCHER}
_SINGLE = {"query_embedder": QUERY_EMBEDDER, "doc_embedder": DOC_EMBEDDER, "reader": READER}


def parse_components(values: Iterable[str]) -> Tuple[str, ...]:
  """`--components` values → a tuple from COMPONENTS (order kept, repeats dropped); "all" or
  nothing → every component. ValueError naming an unknown entry, before anything is loaded."""
  names = [v.strip() for v in values if v.strip()]
  if not names or "all" in names:
    return COMPONENTS
  unknown = [n for n in names if n not in COMPONENTS]
  if unknown:
    raise ValueError(f"--components: unknown {unknown}; choose from {list(COMPONENTS)} or all.")
  return tuple(dict.fromkeys(names))


def model_names(components: Sequence[str], variants: Sequence[str]) -> List[str]:
  """The TF Serving model names the `components` write for `variants`, in component order."""
  names = []
  for c in components:
    if c in _PER_VARIANT:
      names += [variant_model_name(_PER_VARIANT[c], v) for v in variants]
    else:
      names.append(_SINGLE[c])
  return names


def export_components(model, tokenizer: RealmTokenizer, export_base: str,
                      version: Optional[int] = None, components: Sequence[str] = COMPONENTS,
                      variants: Sequence[str] = ("stock",), bundle=None, searcher_k: int = 10,
                      num_answers: int = 5, max_candidates: int = 20, scann_config=None,
                      warmup_questions: Optional[Sequence[str]] = None, scann_source=None
                      ) -> Dict[str, str]:
  """Exports the chosen components of a fine-tuned open-QA model; returns {model name: path}.

  Args:
    model: a built `realm_tf.modeling.openqa_model.OpenQAModel` (query tower, reader, FrozenIndex).
    tokenizer: the RealmTokenizer the model was trained with.
    export_base: TF Serving base directory; models go to `<export_base>/<name>/<version>`.
    version: the version of every model written (default: one more than the newest version of
      any of them, so models exported together share a number).
    components: subset of COMPONENTS.
    variants: MIPS variants of openqa and searcher ("stock" → realm_searcher, "scann" →
      realm_searcher_scann).
    bundle: the IndexBundle (needed for doc_embedder: its embedder export is the document tower;
      recorded in realm_export.json).
    searcher_k: neighbours returned by realm_searcher's serving_default.
    num_answers, max_candidates: answers returned per question, and best spans considered before
      dropping repeated answer strings (>= num_answers).
    scann_config: ScannConfig of the ScaNN variants (default: by corpus size).
    scann_source: the searcher the ScaNN variants serve (a mips.ScannSource, e.g. the index
      bundle's own: `mips.scann_source_of`), shared by openqa and searcher; when given,
      `scann_config` is not used.
    warmup_questions: questions of the warm-up requests (default: warmup.DEFAULT_QUESTIONS).

  Raises:
    ServingExportError: unknown component or variant, max_candidates < num_answers, or a
      doc_embedder without `bundle`.
    FileExistsError: `version` already exists for one of the models.
  """
  unknown = sorted(set(components) - set(COMPONENTS))
  if unknown:
    raise ServingExportError(f"Unknown components {unknown}; choose from {COMPONENTS}.")
  if max_candidates < num_answers:
    raise ServingExportError(f"--max_candidates={max_candidates} must be >= "
                             f"--num_answers={num_answers}.")
  if "doc_embedder" in components and bundle is None:
    raise ServingExportError("doc_embedder needs the index bundle (its embedder export is the "
                             "document tower); pass --index_dir.")
  names = model_names(components, variants)
  if version is None:
    version = next_version(export_base, names)
  for name in names:
    path = os.path.join(export_base, name, str(version))
    if tf.io.gfile.exists(path):
      raise FileExistsError(f"{path} already exists; choose another --version.")
  questions = list(warmup_questions or warmup_lib.DEFAULT_QUESTIONS)
  info = model_info(model, bundle)
  out = {}
  if "openqa" in components:
    out.update(openqa.export_openqa(model, tokenizer, export_base, version, variants,
                                    bundle=bundle, num_answers=num_answers,
                                    max_candidates=max_candidates, scann_config=scann_config,
                                    warmup_questions=questions, scann_source=scann_source))
  if "query_embedder" in components:
    m = QueryEmbedderModule(model, tokenizer)
    out[QUERY_EMBEDDER] = publish_saved_model(
        m, export_base, QUERY_EMBEDDER, version, m.signatures(), info=info,
        warmup_requests=warmup_lib.string_requests(QUERY_EMBEDDER, "questions", questions))
  if "doc_embedder" in components:
    out[DOC_EMBEDDER] = _export_doc_embedder(model, tokenizer, bundle, export_base, version,
                                             info, len(questions))
  if "searcher" in components:
    for variant in variants:
      name, path = _export_searcher(model, export_base, version, variant, searcher_k,
                                    scann_config, info, scann_source)
      out[name] = path
  if "reader" in components:
    out[READER] = _export_reader(model, tokenizer, export_base, version, info, questions,
                                 num_answers, max_candidates)
  return out


def _export_doc_embedder(model, tokenizer, bundle, export_base, version, info, n) -> str:
  """realm_doc_embedder, warmed up with the first `n` blocks of the index."""
  m = DocEmbedderModule(bundle.query_embedder, tokenizer)
  titles, bodies = model.index.texts(range(min(n, model.index.size)))
  return publish_saved_model(
      m, export_base, DOC_EMBEDDER, version, m.signatures(), info=info,
      warmup_requests=warmup_lib.requests(DOC_EMBEDDER, [
          {"titles": titles[:1], "bodies": bodies[:1]}, {"titles": titles, "bodies": bodies}]))


def _export_searcher(model, export_base, version, variant, searcher_k, scann_config, info,
                     scann_source=None):
  """(name, path) of realm_searcher[_scann] over the index, warmed up with random queries."""
  name = variant_model_name(SEARCHER, variant)
  m = SearcherModule(model.index.embeddings_np, model.index.block_ids, searcher_k, variant,
                     scann_config, embedding_variable=model.index.variables()[0],
                     scann_source=scann_source)
  dim = model.index.embeddings_np.shape[1]
  q = np.random.default_rng(0).normal(size=(4, dim)).astype(np.float32)
  return name, publish_saved_model(
      m, export_base, name, version, m.signatures(), options=save_options(variant),
      info=dict(info, variant=variant, k=m.k, **mips_info(m.mips)),
      warmup_requests=warmup_lib.requests(name, [{"query_embeddings": q[:1]},
                                                  {"query_embeddings": q}]))


def _export_reader(model, tokenizer, export_base, version, info, questions, num_answers,
                   max_candidates) -> str:
  """realm_reader, with a warm-up request for each of its signatures (the first K blocks)."""
  m = ReaderModule(model, tokenizer, num_answers, max_candidates)
  k = model.reader_beam_size
  texts = np.array([t.encode("utf-8") for t in model.index.texts(range(k))[1]], dtype=object)
  batch = {"questions": questions[:1], "block_texts": texts[None]}
  return publish_saved_model(
      m, export_base, READER, version, m.signatures(),
      info=dict(info, num_answers=num_answers, max_candidates=max_candidates),
      warmup_requests=warmup_lib.requests(READER, [batch]) + warmup_lib.requests(
          READER, [dict(batch, retrieval_scores=np.zeros([1, k], np.float32))],
          signature_name="read_scored"))
