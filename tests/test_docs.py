"""Docs that cannot drift from the programs and the measurements they describe.

Every command line that the docs (README.md, docs/*.md, the other READMEs) and the launch recipes
(launch/*.sh) show, `python -m realm_tf.launch.<x> …`, `python -m serving.<x> …` or
`python -m benchmarks.<x> …`, may only use flags that its program defines, and so may the flag
files it passes with `--flagfile`. A flag is found the way the program finds it: each CLI module's
`define_flags(FlagValues())`, the benchmarks' config dataclass (`config_program.main` in their
`__main__`), absl's own flags, and for the Beam programs Beam's pipeline options. Aliases kept for
old names count as defined, but the docs must use the current name.

Every figure that a doc quotes from benchmarks/results/*.json carries a marker right after it,

    48.0<!-- json openqa_quality.json results.dense.exact_match -->
    53.1<!-- json mips.json scann.at_target.qps /1000 -->k QPS
    met<!-- json openqa_quality.json goals.dense_em_at_least_40 -->

(the file under benchmarks/results/, a dotted key path, an optional `*F` or `/F` scale), and must
equal the JSON value rounded to the decimals shown. In the README's Results section every decimal
figure of a table row must carry such a marker, and each row names its command and JSON.
"""
import ast
import functools
import glob
import importlib
import json
import os
import re
from typing import Dict, Iterator, List, Set, Tuple

import pytest
from absl import flags

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
README = "README.md"
MAX_README_LINES = 300
DOCS = sorted({README, "serving/README.md", "launch/README.md", "launch/configs/README.md",
               "realm_tf/launch/README.md", "tfds_builders/README.md",
               *(os.path.relpath(p, ROOT) for p in glob.glob(os.path.join(ROOT, "docs", "*.md")))})
SCRIPTS = sorted(os.path.relpath(p, ROOT) for p in glob.glob(os.path.join(ROOT, "launch", "*.sh")))
FLAG_FILES = sorted(os.path.relpath(p, ROOT) for pattern in ("launch/configs/*.flags",
                                                             "benchmarks/configs/*.flags")
                    for p in glob.glob(os.path.join(ROOT, pattern)))

# `python -m <program>` as docs and recipes spell it (python, python3, .venv/bin/python, "$PY",
# $PYTHON, ...), and the program's flags after it.
_PROGRAM = r"(?P<program>(?:realm_tf\.launch|serving|benchmarks)\.\w+)"
COMMAND = re.compile(r"(?:python3?|\.venv/bin/python|\"?\$\{?PY(?:THON)?\}?\"?)\s+-m\s+" + _PROGRAM)
# A Python argument list that runs a program: [sys.executable, "-m", "serving.server", f"--port=…"].
ARGV_COMMAND = re.compile(r"[\"']-m[\"'],\s*[\"']" + _PROGRAM + r"[\"'](?P<args>[^\]]*)\]")
# Where a shell command line ends: a control operator, a redirection or a comment.
COMMAND_END = re.compile(r"\|\||&&|;|\s\|\s|\s[12]?>|<<|\s#|\$\(")
FLAG = re.compile(r"(?<![\w-])--(?P<name>[A-Za-z]\w*)(?P<value>=\S*)?")
FLAGFILE = re.compile(r"--flagfile=(?P<path>[\w./-]+\.flags)")
# A doc's short form: `finetune --dataset=…` in inline code names the stage CLI by its module.
SHORT_COMMAND = re.compile(r"^(?P<program>\w+)\s+--")

FIGURE = re.compile(
    r"(?P<shown>[-+\u2212]?\d[\d,]*(?:\.\d+)?|\b(?:met|missed|yes|no|true|false))\s*"
    r"<!--\s*json\s+(?P<file>\S+\.json)\s+(?P<path>\S+)"
    r"(?:\s+(?P<op>[*/])\s*(?P<factor>[\d.eE+-]+))?\s*-->")
DECIMAL = re.compile(r"(?<![\w.])[-+\u2212]?\d[\d,]*\.\d+(?![\w.])")
TRUE_WORDS, FALSE_WORDS = {"met", "yes", "true"}, {"missed", "no", "false"}


def read(path: str) -> str:
  """The text of `path`, relative to the repository root."""
  with open(os.path.join(ROOT, path), encoding="utf-8") as f:
    return f.read()


# ---------------------------------------------------------------------------------------------
# What each program defines.

@functools.lru_cache(maxsize=None)
def absl_flags() -> Set[str]:
  """absl's own flags (--flagfile, --helpfull, -v/--verbosity, --logtostderr, ...)."""
  from absl import app  # pylint: disable=g-import-not-at-top,unused-import
  from absl import logging  # pylint: disable=g-import-not-at-top,unused-import
  names = {"flagfile", "undefok", "help", "helpfull", "helpshort", "helpxml"}  # absl.app's
  for module, module_flags in flags.FLAGS.flags_by_module_dict().items():
    if module.startswith("absl."):
      names.update(n for f in module_flags for n in (f.name, f.short_name) if n)
  return names


@functools.lru_cache(maxsize=None)
def beam_options() -> Set[str]:
  """Beam's pipeline options, which the Beam programs pass on (--runner, --project, ...)."""
  from apache_beam.options.pipeline_options import PipelineOptions  # pylint: disable=g-import-not-at-top
  return set(PipelineOptions([]).get_all_options())


def _cli_module(program: str) -> str:
  """The module that defines `program`'s flags: `serving.server` runs realm_tf.launch.model_server."""
  if program.startswith("serving."):
    path = os.path.join(ROOT, *program.split(".")) + ".py"
    assert os.path.exists(path), f"no program {program}"
    found = re.search(r"runpy\.run_module\(\"(realm_tf\.launch\.\w+)\"", read(path))
    assert found, f"{program} has no command line (no runpy.run_module of a realm_tf.launch CLI)"
    return found.group(1)
  return program


def _benchmark_flags(program: str) -> flags.FlagValues:
  """The flags `config_program.main(Config, HELP, run[, options=…])` defines for a benchmark."""
  from realm_tf.launch import config_program  # pylint: disable=g-import-not-at-top
  path = os.path.join(ROOT, *program.split(".")) + ".py"
  assert os.path.exists(path), f"no program {program}"
  calls = [node for node in ast.walk(ast.parse(read(os.path.relpath(path, ROOT))))
           if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
           and node.func.attr == "main" and getattr(node.func.value, "id", "") == "config_program"]
  assert len(calls) == 1, f"{program}: expected one config_program.main(...) call"
  module = importlib.import_module(program)
  config_cls, help_texts = (getattr(module, arg.id) for arg in calls[0].args[:2])
  options = {k.arg: getattr(module, k.value.id) for k in calls[0].keywords if k.arg == "options"}
  fv = flags.FlagValues()
  config_program.define_flags(config_cls, help_texts, fv, options.get("options"))
  return fv


@functools.lru_cache(maxsize=None)
def program_flags(program: str) -> Tuple[Dict[str, str], Set[str]]:
  """({flag name: the name to write instead, for a deprecated alias; else itself}, boolean flags)
  of `program` (a `python -m` module)."""
  if program.startswith("benchmarks."):
    fv = _benchmark_flags(program)
  else:
    module = importlib.import_module(_cli_module(program))
    assert hasattr(module, "define_flags"), f"{program}: no define_flags()"
    fv = flags.FlagValues()
    module.define_flags(fv)
  names = {name: name for name in absl_flags()}
  module_source = read(os.path.relpath(importlib.import_module(_cli_module(program)).__file__, ROOT))
  if "known_only=True" in module_source:  # a Beam program: the flags it does not know go to Beam
    names.update((name, name) for name in beam_options())
  booleans = set()
  for name in fv:
    flag = fv[name]
    # A deprecated name (config_flags.define_deprecated_alias) or an absl alias: the docs write
    # the name it stands for.
    alias = re.match(r"(?:Alias for|Deprecated name of) --(\w+)", flag.help or "")
    names[name] = getattr(flag, "deprecated_for", None) or (alias.group(1) if alias else name)
    if flag.boolean:
      booleans.add(name)
  return names, booleans


def check_flag(program: str, name: str) -> str:
  """'' when `program` defines `--name` under its current name, else what is wrong."""
  names, booleans = program_flags(program)
  if name not in names and name.startswith("no") and name[2:] in booleans:
    name = name[2:]
  if name not in names:
    return f"--{name} is not a flag of {program}"
  if names[name] != name:
    return f"--{name} is a deprecated name in {program}: write --{names[name]}"
  return ""


# ---------------------------------------------------------------------------------------------
# Where the docs and recipes show command lines.

def _line_of(text: str, offset: int) -> int:
  """The 1-based line of `text` that character `offset` is on."""
  return text.count("\n", 0, offset) + 1


def _logical_lines(text: str, shell: bool) -> Iterator[Tuple[int, str]]:
  """(first line number, text) of each command line: `\\` continuations joined; in a shell
  script a comment's `#` is dropped first, since recipes show commands in their comments."""
  start, parts = None, []
  for number, line in enumerate(text.split("\n"), 1):
    if shell:
      line = re.sub(r"^\s*#", "", line)
    if start is None:
      start = number
    stripped = line.rstrip()
    if stripped.endswith("\\"):
      parts.append(stripped[:-1])
      continue
    parts.append(line)
    yield start, " ".join(parts)
    start, parts = None, []


def _commands_in(line: str) -> Iterator[Tuple[str, str]]:
  """(program, its arguments) of every `python -m` command in one command line."""
  matches = list(COMMAND.finditer(line))
  for i, match in enumerate(matches):
    end = matches[i + 1].start() if i + 1 < len(matches) else len(line)
    args = line[match.end():end]
    stop = COMMAND_END.search(args)
    yield match.group("program"), args[:stop.start()] if stop else args


def _code_spans(text: str) -> Iterator[Tuple[int, str, bool]]:
  """(line number, code, fenced) of a markdown file's code: each command line of a fenced block,
  and each inline code span of the prose (which may run over a line break)."""
  prose, block, block_start = [], None, 0
  for number, line in enumerate(text.split("\n"), 1):
    if re.match(r"^\s*(```|~~~)", line):
      if block is None:
        block, block_start = [], number
      else:
        for offset, logical in _logical_lines("\n".join(block), shell=False):
          yield block_start + offset, logical, True
        block = None
      prose.append("")
    elif block is not None:
      block.append(line)
      prose.append("")
    else:
      prose.append(line)
  flat = "\n".join(prose)
  for span in re.finditer(r"`([^`]+)`", flat):
    yield _line_of(flat, span.start()), span.group(1).replace("\n", " "), False


@functools.lru_cache(maxsize=None)
def stage_programs() -> Set[str]:
  """The stage CLIs' short names (`pretrain`, `finetune`, ...): realm_tf/launch/<name>.py with a
  `__main__` block."""
  return {os.path.basename(p)[:-3] for p in glob.glob(os.path.join(ROOT, "realm_tf", "launch",
                                                                  "*.py"))
          if not p.endswith("_test.py")
          and re.search(r"^if __name__ == .__main__.:", read(os.path.relpath(p, ROOT)), re.M)}


def doc_commands(path: str) -> List[Tuple[int, str, str]]:
  """(line, program, arguments) of every command line in a doc or recipe."""
  text = read(path)
  found = []
  if path.endswith(".sh"):
    for number, line in _logical_lines(text, shell=True):
      found.extend((number, p, a) for p, a in _commands_in(line))
    for match in ARGV_COMMAND.finditer(text):
      found.append((_line_of(text, match.start()), match.group("program"), match.group("args")))
    return found
  for number, code, fenced in _code_spans(text):
    commands = list(_commands_in(code))
    found.extend((number, p, a) for p, a in commands)
    short = SHORT_COMMAND.match(code)
    if not commands and not fenced and short and short.group("program") in stage_programs():
      found.append((number, f"realm_tf.launch.{short.group('program')}", code[short.end() - 2:]))
  # CLI tables: a row whose first cell is `program` lists that program's flags.
  for match in re.finditer(r"^\|\s*`(?:python -m )?(?P<program>[\w.]+)`\s*\|(?P<rest>.*)$", text,
                           re.M):
    program = match.group("program")
    if program in stage_programs():
      program = f"realm_tf.launch.{program}"
    if re.fullmatch(_PROGRAM, program):
      found.append((_line_of(text, match.start()), program, match.group("rest")))
  return found


def flag_problems(path: str) -> List[str]:
  """Every flag a doc's command lines (and the flag files they pass) use that their program does
  not define under that name."""
  problems = []
  for number, program, args in doc_commands(path):
    where = f"{path}:{number}: {program}"
    try:
      program_flags(program)
    except (AssertionError, ImportError) as e:
      problems.append(f"{where}: {e}")
      continue
    for flag in FLAG.finditer(args):
      problem = check_flag(program, flag.group("name"))
      if problem:
        problems.append(f"{where}: {problem}")
    for flagfile in FLAGFILE.finditer(args):
      problems.extend(f"{where}: {p}" for p in flagfile_problems(flagfile.group("path"), program))
  return problems


def flagfile_problems(path: str, program: str) -> List[str]:
  """The flags of flag file `path` that `program` does not define under that name."""
  if not os.path.exists(os.path.join(ROOT, path)):
    return [f"--flagfile={path}: no such file"]
  problems = []
  for number, line in enumerate(read(path).split("\n"), 1):
    flag = FLAG.match(line.strip())
    if flag:
      problem = check_flag(program, flag.group("name"))
      if problem:
        problems.append(f"{path}:{number}: {problem}")
  return problems


@functools.lru_cache(maxsize=None)
def all_programs() -> Tuple[str, ...]:
  """Every program a doc may name: the stage CLIs, serving's two and the benchmarks."""
  benchmarks = [f"benchmarks.{os.path.basename(p)[:-3]}"
                for p in glob.glob(os.path.join(ROOT, "benchmarks", "*.py"))
                if "config_program.main(" in read(os.path.relpath(p, ROOT))]
  return tuple(sorted([f"realm_tf.launch.{m}" for m in stage_programs()]
                      + ["serving.server", "serving.client"] + benchmarks))


@functools.lru_cache(maxsize=None)
def current_flag_names() -> Set[str]:
  """The names some program defines as current (not a deprecated alias)."""
  return {new for program in all_programs() for new in program_flags(program)[0].values()}


def prose_flag_problems(path: str) -> List[str]:
  """`--flags` in a doc's inline code, outside any command line, that no program defines under
  that name (a renamed or removed flag in prose). Fenced blocks hold command lines: those of the
  programs are checked against their program, the others are other tools' (docker, pip)."""
  problems = []
  for number, code, fenced in _code_spans(read(path)):
    if fenced or COMMAND.search(code) or ARGV_COMMAND.search(code):
      continue
    for flag in FLAG.finditer(code):
      name = flag.group("name")
      if code[flag.end("name"):flag.end("name") + 1] in ("-", "*"):
        continue  # another tool's --dashed-flag, or a family of flags (--scann_*)
      if name not in current_flag_names() and not (name.startswith("no")
                                                    and name[2:] in current_flag_names()):
        problems.append(f"{path}:{number}: --{name} is no program's flag (renamed or removed?)")
  return problems


# ---------------------------------------------------------------------------------------------
# Figures quoted from benchmarks/results/*.json.

def json_value(file: str, key_path: str):
  """The value at dotted `key_path` of benchmarks/results/`file` (a list takes an index; a key
  that itself holds dots, such as scale.json's "bm25.build_seconds", is matched whole)."""
  value = json.loads(read(os.path.join("benchmarks", "results", file)))
  parts = key_path.split(".")
  while parts:
    if isinstance(value, list):
      value = value[int(parts.pop(0))]
      continue
    for n in range(len(parts), 0, -1):
      if ".".join(parts[:n]) in value:
        value, parts = value[".".join(parts[:n])], parts[n:]
        break
    else:
      raise KeyError(f"{file} has no {key_path!r} (no {parts[0]!r} in {sorted(value)[:20]})")
  return value


def figure_problems(text: str, path: str) -> List[str]:
  """Figures whose marker's JSON value, scaled and rounded as shown, is not the figure."""
  problems = []
  for match in FIGURE.finditer(text):
    where = f"{path}:{_line_of(text, match.start())}"
    shown, file, key_path = match.group("shown"), match.group("file"), match.group("path")
    try:
      value = json_value(file, key_path)
    except (FileNotFoundError, KeyError, IndexError, ValueError) as e:
      problems.append(f"{where}: {e}")
      continue
    if shown.lower() in TRUE_WORDS | FALSE_WORDS:
      if value is not (shown.lower() in TRUE_WORDS):
        problems.append(f"{where}: {shown!r} but {file} {key_path} = {value!r}")
      continue
    if isinstance(value, bool) or not isinstance(value, (int, float)):
      problems.append(f"{where}: {file} {key_path} = {value!r} is not a number")
      continue
    if match.group("op"):
      factor = float(match.group("factor"))
      value = value * factor if match.group("op") == "*" else value / factor
    number = float(shown.replace(",", "").replace("\u2212", "-"))
    decimals = len(shown.split(".")[1]) if "." in shown else 0
    if abs(number - value) > 0.5 * 10 ** -decimals + 1e-9:
      problems.append(f"{where}: {shown} but {file} {key_path} = {value!r} "
                      f"({value:.{decimals}f} to the decimals shown)")
  return problems


def results_section(text: str) -> Tuple[int, str]:
  """(first line, text) of the README's `## Results` section."""
  match = re.search(r"^## Results\b.*?(?=^## )", text, re.M | re.S)
  assert match, "README.md has no '## Results' section"
  return _line_of(text, match.start()), match.group(0)


# ---------------------------------------------------------------------------------------------
# The tests.

@pytest.mark.parametrize("path", DOCS + SCRIPTS)
def test_every_command_line_uses_flags_its_program_defines(path):
  problems = flag_problems(path)
  assert not problems, "\n".join(problems)


@pytest.mark.parametrize("path", DOCS)
def test_flags_named_in_prose_are_current(path):
  problems = prose_flag_problems(path)
  assert not problems, "\n".join(problems)


def test_the_docs_show_commands_of_the_programs():
  # The parser finds what the docs hold: a parser that found nothing would pass everything.
  programs = {program for path in DOCS + SCRIPTS for _, program, _ in doc_commands(path)}
  for expected in ("realm_tf.launch.pretrain", "realm_tf.launch.finetune",
                   "realm_tf.launch.evaluate", "realm_tf.launch.export", "serving.server",
                   "serving.client"):
    assert expected in programs, f"no doc shows a {expected} command"
  demo = {program for _, program, _ in doc_commands("launch/demo.sh")}
  assert {"realm_tf.launch.pretrain", "realm_tf.launch.finetune", "serving.server",
          "serving.client"} <= demo, demo


def test_every_flag_file_is_passed_by_a_documented_command():
  passed = set()
  for path in DOCS + SCRIPTS:
    for _, _, args in doc_commands(path):
      passed.update(m.group("path") for m in FLAGFILE.finditer(args))
  assert set(FLAG_FILES) <= passed, f"flag files no doc passes to a program (so unchecked): " \
                                    f"{sorted(set(FLAG_FILES) - passed)}"


def test_the_checks_catch_drift():
  # A wrong flag, a wrong program, a --noflag form, a deprecated alias and a wrong figure.
  assert check_flag("realm_tf.launch.pretrain", "work_dir") == ""
  assert "not a flag" in check_flag("realm_tf.launch.pretrain", "no_such_flag")
  assert check_flag("realm_tf.launch.pretrain", "notrain_retriever") == ""
  assert check_flag("realm_tf.launch.build_corpus", "temp_location") == ""  # Beam's
  assert "not a flag" in check_flag("realm_tf.launch.pretrain", "temp_location")
  assert "deprecated" in check_flag("realm_tf.launch.ict", "init_from_hf")
  assert check_flag("serving.server", "model_config_file") == ""
  assert check_flag("benchmarks.openqa_quality", "work_dir") == ""
  line = ("x \\\n  python -m realm_tf.launch.evaluate --model_dir=$W/f \\\n"
          "    --bogus 1 || true  # --also_bogus")
  (_, program, args), = [c for n, l in _logical_lines(line, shell=True) for c in
                         [(n, *pa) for pa in _commands_in(l)]]
  assert program == "realm_tf.launch.evaluate"
  assert [f.group("name") for f in FLAG.finditer(args)] == ["model_dir", "bogus"]
  ok = "EM 49.0<!-- json openqa_quality.json results.dense.exact_match -->"
  assert figure_problems(ok, "x") == []
  assert figure_problems(ok.replace("49.0", "48.1"), "x")
  assert figure_problems("0.85<!-- json openqa_quality.json results.dense.recall@5 -->", "x") == []
  assert figure_problems("85<!-- json openqa_quality.json results.dense.recall@5 *100 -->", "x") \
      == []
  assert figure_problems("missed<!-- json openqa_quality.json goals.dense_em_at_least_40 -->",
                         "x")


@pytest.mark.parametrize("path", DOCS)
def test_quoted_figures_equal_the_json(path):
  problems = figure_problems(read(path), path)
  assert not problems, "\n".join(problems)


def test_readme_results_rows_quote_their_json():
  text = read(README)
  first, section = results_section(text)
  rows = [(first + i, line) for i, line in enumerate(section.split("\n"))
          if line.startswith("|") and not re.match(r"^\|[\s|:-]+\|$", line)]
  data_rows = [(n, line) for n, line in rows if FIGURE.search(line)]
  assert len(data_rows) >= 5, "the Results tables hold too few measured rows"
  problems = []
  for number, line in rows:
    bare = re.sub(r"`[^`]*`", "", FIGURE.sub("", line))
    for figure in DECIMAL.findall(bare):
      problems.append(f"README.md:{number}: {figure} has no <!-- json … --> marker")
  for number, line in data_rows:
    files = {m.group("file") for m in FIGURE.finditer(line)}
    for file in files:
      if f"benchmarks/results/{file}" not in line:
        problems.append(f"README.md:{number}: the row quotes {file} without naming it")
    if not COMMAND.search(line):
      problems.append(f"README.md:{number}: the row has no `python -m …` command")
  assert not problems, "\n".join(problems)


def test_readme_is_short_and_has_no_work_log():
  lines = read(README).split("\n")
  assert len(lines) <= MAX_README_LINES, f"README.md has {len(lines)} lines"
  log = re.compile(r"\bstop \d+|(?<![\w/])#\d+\b|\bissue\b|\byesterday\b|\b20\d\d-\d\d-\d\d\b|"
                   r"\bsession\b", re.I)
  hits = [f"README.md:{n}: {line.strip()}" for n, line in enumerate(lines, 1) if log.search(line)]
  assert not hits, "\n".join(hits)


@pytest.mark.parametrize("path", [p for p in DOCS if p != README])
def test_docs_have_no_work_log_numbers(path):
  log = re.compile(r"\bstop \d+|(?<![\w/])#\d+\b|\bitem \d+ of\b|\b[Ii]ssue \d+")
  hits = [f"{path}:{n}: {line.strip()}" for n, line in enumerate(read(path).split("\n"), 1)
          if log.search(line)]
  assert not hits, "\n".join(hits)


def test_readme_sections_in_the_users_order():
  headings = re.findall(r"^## (.+)$", read(README), re.M)
  order = ["Install", "Quickstart", "Pre-train", "Fine-tune", "Export and serve", "Results",
           "Scale", "CLI reference", "Limitations", "Layout", "Licences"]
  positions = []
  for name in order:
    found = [i for i, h in enumerate(headings) if h.startswith(name)]
    assert found, f"README.md has no '## {name}…' section; it has {headings}"
    positions.append(found[0])
  assert positions == sorted(positions), f"sections out of order: {headings}"
  text = read(README)
  assert "https://arxiv.org/abs/2002.08909" in text and "@inproceedings{" in text
  makefile = read("Makefile")
  for command in ("make demo", "make test"):
    assert f"\n{command.split()[1]}:" in makefile and command in text
