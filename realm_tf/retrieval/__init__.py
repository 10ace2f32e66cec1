"""REALM's retrieval side: MIPS searchers, embedder exports, index bundles and the refresh job.

Readers of an index call `latest(index_dir)`; searchers share one interface,
`search(query_embeddings [B, 128], k) → (rows int32 [B, k], scores float32 [B, k])`.
"""
from realm_tf.retrieval.searcher import Searcher, SearcherError, load_searcher, save_searcher
from realm_tf.retrieval.brute_force import BruteForceConfig, BruteForceSearcher
from realm_tf.retrieval.topk import exact_top_k
from realm_tf.retrieval.scann_searcher import ScannConfig, ScannSearcher
from realm_tf.retrieval.embedder_export import (ExportError, LoadedEmbedder, export_embedder,
                                                latest_export, load_embedder)
from realm_tf.retrieval.bundle import (BundleError, BundleNotFoundError, IndexBundle, latest,
                                       publish)
