"""The house's layers (docs/ARCHITECTURE.md, "The layers"): every import, at module level or
inside a function, points down a floor, and no files import each other in a circle.

Read from the source with `ast`, nothing imported: a new upward import or circle fails here with
the file, the line and the two rooms named.
"""
import ast
import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGES = ("realm_tf", "serving", "tfds_builders", "benchmarks")

# Each room's floor: a room imports only rooms on lower floors (its own files aside).
FLOORS = {
    "io": 0, "text": 0, "config_base": 0,
    "utils": 1, "tfds_builders": 1,
    "modeling": 2,
    "checkpoints": 3, "data": 3, "serving": 3,
    "retrieval": 4,
    "openqa": 5, "training": 5,
    "evaluation": 6, "export": 6,
    "stages": 7,
    "release": 8,
    "launch": 9, "testing": 9,
    "benchmarks": 10,
}

# Upward imports kept on purpose, each with its reason (at most 3; docs/ARCHITECTURE.md).
ALLOWED_UP = {}


def _room(module: str):
  """The room of a dotted module name: realm_tf's subpackage (or config_base), else the
  top-level package; None outside the house."""
  parts = module.split(".")
  if parts[0] == "realm_tf":
    return parts[1] if len(parts) > 1 else None
  return parts[0] if parts[0] in PACKAGES else None


def _product_files():
  """(path relative to the root, dotted module) of every product file (tests and fixtures of
  pytest aside)."""
  for package in PACKAGES:
    for dirpath, dirnames, filenames in os.walk(os.path.join(ROOT, package)):
      dirnames[:] = [d for d in dirnames if d != "__pycache__"]
      for name in filenames:
        if not name.endswith(".py") or name.endswith("_test.py") or name == "conftest.py":
          continue
        rel = os.path.relpath(os.path.join(dirpath, name), ROOT)
        module = rel[:-3].replace(os.sep, ".")
        yield rel, module[:-len(".__init__")] if module.endswith(".__init__") else module


def _imports(path: str):
  """(line, imported dotted name) of every absolute import in the file, functions included."""
  with open(os.path.join(ROOT, path), encoding="utf-8") as f:
    tree = ast.parse(f.read(), path)
  for node in ast.walk(tree):
    if isinstance(node, ast.Import):
      for alias in node.names:
        yield node.lineno, alias.name
    elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
      for alias in node.names:
        yield node.lineno, f"{node.module}.{alias.name}"


def _graph():
  """{module: {(line, imported module or package)}} over the house's product files."""
  files = dict((module, rel) for rel, module in _product_files())
  graph = {}
  for module, rel in files.items():
    edges = set()
    for line, name in _imports(rel):
      # `from pkg import mod` names a module; `from mod import name` names its module.
      target = name if name in files else name.rsplit(".", 1)[0]
      if target in files and target != module:
        edges.add((line, target))
    graph[module] = edges
  return files, graph


def _room_of_module(module: str) -> str:
  parts = module.split(".")
  if parts[0] == "realm_tf" and len(parts) == 2:
    return parts[1] if parts[1] == "config_base" else None
  return _room(module)


def test_every_room_has_a_floor():
  files, _ = _graph()
  rooms = {_room_of_module(m) for m in files} - {None}
  assert rooms <= set(FLOORS), sorted(rooms - set(FLOORS))


def test_no_import_runs_up_a_floor():
  files, graph = _graph()
  up = []
  for module, edges in graph.items():
    src = _room_of_module(module)
    for line, target in edges:
      dst = _room_of_module(target)
      if src is None or dst is None or src == dst:
        continue
      if FLOORS[dst] >= FLOORS[src] and (module, target) not in ALLOWED_UP:
        up.append(f"{files[module]}:{line} imports {target} ({src}, floor {FLOORS[src]} → "
                  f"{dst}, floor {FLOORS[dst]})")
  assert not up, "\n".join(up)
  assert len(ALLOWED_UP) <= 3


def test_no_files_import_each_other_in_a_circle():
  files, graph = _graph()
  edges = {m: {t for _, t in e} for m, e in graph.items()}
  # Tarjan's strongly connected components; a component of more than one file is a circle.
  index, low, stack, on_stack, circles = {}, {}, [], set(), []

  def visit(v):
    index[v] = low[v] = len(index)
    stack.append(v)
    on_stack.add(v)
    for w in edges[v]:
      if w not in index:
        visit(w)
        low[v] = min(low[v], low[w])
      elif w in on_stack:
        low[v] = min(low[v], index[w])
    if low[v] == index[v]:
      component = []
      while True:
        w = stack.pop()
        on_stack.discard(w)
        component.append(w)
        if w == v:
          break
      if len(component) > 1:
        circles.append(sorted(files[m] for m in component))

  for v in sorted(edges):
    if v not in index:
      visit(v)
  assert not circles, circles


@pytest.mark.parametrize("room,floor", sorted(FLOORS.items()))
def test_the_architecture_doc_names_every_room(room, floor):
  del floor
  with open(os.path.join(ROOT, "docs", "ARCHITECTURE.md"), encoding="utf-8") as f:
    text = f.read()
  head = text[:text.index("## Package map")]
  assert f"{room}/" in head or f"{room}.py" in head, room
