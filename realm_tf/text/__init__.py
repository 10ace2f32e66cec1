"""Wordpiece tokenization for REALM (TF.Text, usable in tf.data and SavedModels)."""
from realm_tf.text.tokenizer import RealmTokenizer, default_vocab_path, vocab_fingerprint
from realm_tf.text.packing import pack_query, pack_document, pack_pair, pack_query_block
