"""The small real corpus shipped with realm_tf (see ATTRIBUTION.md for sources and licences)."""
import os

_HERE = os.path.dirname(os.path.abspath(__file__))
SQUAD_DEV = "squad-dev-v1.1.json.gz"
WIKITEXT2_TEST = "wikitext-2-raw-test.txt.gz"


def default_corpus_path() -> str:
  """SQuAD v1.1 dev (48 articles, 2,067 paragraphs), the default knowledge corpus (gzipped JSON)."""
  return os.path.join(_HERE, SQUAD_DEV)


def wikitext2_test_path() -> str:
  """WikiText-2 raw test articles (` = Title = ` headings), gzipped; an optional second corpus."""
  return os.path.join(_HERE, WIKITEXT2_TEST)
