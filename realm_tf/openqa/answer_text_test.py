"""ORQA's answer strings in the graph equal the NumPy/Python reference's (orqa_reference)."""
import numpy as np
import pytest
import tensorflow as tf

from realm_tf.openqa import answer_text as A
from realm_tf.modeling import openqa_features as F
from realm_tf.testing import orqa_reference as reference
from realm_tf.text import RealmTokenizer
from realm_tf.text.tokenizer import default_vocab_path

# Texts where the reference's wordpieces are realm_tf's (checked): hyphens, multi-piece words,
# accents (precomposed and decomposed), dashes and brackets, CJK, [UNK] pieces.
TEXTS = [
    "Austria-Hungary was dissolved in 1918.",
    "Kilimanjaro is a dormant volcano in Tanzania",
    "Café Müller opened in São Paulo, Brazil!",
    "The U.S. won 3\u20132 (after extra time) in Zürich",
    "Cafe\u0301 au lait",
    "\u6771\u4eac is Tokyo's name",
    "smile \U0001F600 please, x\u2603y snowman",
]


@pytest.fixture(scope="module")
def toks():
  return RealmTokenizer(), reference.WordpieceTokenizer(default_vocab_path())


def _all_spans(n, width=10):
  return [(a, e) for a in range(n) for e in range(a, min(n, a + width))]


def test_orqa_answers_equal_the_reference_for_every_span(toks):
  tok, ref = toks
  texts, starts, ends, want = [], [], [], []
  for text in TEXTS:
    r = ref.tokenize(text)
    assert tok.tokenize([text]).to_list()[0] == r["ids"], text  # same wordpieces
    for a, e in _all_spans(len(r["ids"])):
      texts.append(text), starts.append(a), ends.append(e)
      want.append(reference.answer_of_span(r, a, e))
  got = A.orqa_answer_text(tok, tf.constant(texts), starts, ends).numpy()
  got = [g.decode("utf-8") for g in got]
  bad = [(t, a, e, g, w) for t, a, e, g, w in zip(texts, starts, ends, got, want) if g != w]
  assert not bad, bad[:5]
  # The rule's cases, as ORQA answers them.
  answers = dict(((t, a, e), w) for t, a, e, w in zip(texts, starts, ends, want))
  hyphen = TEXTS[0]
  assert answers[(hyphen, 0, 2)] == "Austria - Hungary"           # joined by spaces
  kili = ref.tokenize(TEXTS[1])
  assert kili["pieces"][:2] == ["kilimanjaro"[:len(kili["pieces"][0])], kili["pieces"][1]]
  assert answers[(TEXTS[1], 1, 2)] == "Kilimanjaro"                # starts inside a word
  assert answers[(TEXTS[1], 0, 0)] == "Kilimanjaro"[:len(kili["pieces"][0])]  # cut at the piece
  assert sum(g != s.decode() for g, s in zip(got, F.span_text(
      tok, tf.constant(texts), starts, ends).numpy())) > len(got) // 4


@pytest.mark.parametrize("pred,orig", [
    ("austria - hungary", "Austria - Hungary"),
    ("mount kil", "Mount Kilimanjaro"),
    ("kil ##iman", "Kilimanjaro"),                 # a ## piece: never found → orig_text
    ("[UNK]", "\U0001F600"),
    ("hungary", "Austria - Hungary"),               # found later in the text
    ("cafe", "Cafe\u0301"),                         # decomposed accent: lengths differ → orig
    ("sao", "São"),
    ("a b", "a\u00a0b"),                            # Python splits a no-break space
    ("x", "\ufffdx"),
    ("", ""),
])
def test_final_text_equals_squad_get_final_text(pred, orig):
  got = A.final_text(tf.constant([pred]), tf.constant([orig])).numpy()[0].decode("utf-8")
  assert got == reference.get_final_text(pred, orig)


def test_answer_text_dispatches_and_refuses_bad_spans(toks):
  tok, _ = toks
  texts = tf.constant([TEXTS[0]] * 4)
  starts, ends = np.array([0, 2, -1, 5]), np.array([2, 1, 0, 99])
  default = A.answer_text(tok, texts, starts, ends).numpy().tolist()
  assert default == F.span_text(tok, texts, starts, ends).numpy().tolist()
  assert default[0] == b"Austria-Hungary"
  orqa = A.answer_text(tok, texts, starts, ends, "orqa").numpy().tolist()
  assert orqa == [b"Austria - Hungary", b"", b"", b""]
