"""Every name a benchmark takes from realm_tf exists: `from realm_tf.x import y` and
`module.attr` on an imported realm_tf module, at module level or inside a function. Benchmarks
run for minutes to hours and the default test run reaches few of their stages, so a name that a
move in realm_tf left behind fails here, naming the file and line, instead of in a run of record."""
import ast
import glob
import importlib
import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FILES = sorted(os.path.relpath(p, ROOT) for p in glob.glob(os.path.join(ROOT, "benchmarks", "**",
                                                                          "*.py"), recursive=True))


def _missing_names(path):
  """(line, dotted name) of each realm_tf name the file uses that does not exist."""
  with open(os.path.join(ROOT, path), encoding="utf-8") as f:
    tree = ast.parse(f.read(), path)
  modules, missing = {}, []  # local alias -> imported realm_tf module
  for node in ast.walk(tree):
    if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("realm_tf"):
      parent = importlib.import_module(node.module)
      for alias in node.names:
        if hasattr(parent, alias.name):
          value = getattr(parent, alias.name)
          if isinstance(value, type(parent)):
            modules[alias.asname or alias.name] = value
          continue
        try:
          modules[alias.asname or alias.name] = importlib.import_module(
              f"{node.module}.{alias.name}")
        except ImportError:
          missing.append((node.lineno, f"{node.module}.{alias.name}"))
    elif isinstance(node, ast.Import):
      for alias in node.names:
        if alias.name.startswith("realm_tf") and alias.asname:
          modules[alias.asname] = importlib.import_module(alias.name)
  for node in ast.walk(tree):
    if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
        and node.value.id in modules and not hasattr(modules[node.value.id], node.attr)):
      missing.append((node.lineno, f"{modules[node.value.id].__name__}.{node.attr}"))
  return missing


@pytest.mark.parametrize("path", FILES)
def test_every_realm_tf_name_a_benchmark_uses_exists(path):
  assert not _missing_names(path), [f"{path}:{line}: {name}" for line, name in
                                    _missing_names(path)]
