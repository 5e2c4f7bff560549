"""The layout docs/layout.md describes holds in the code: imports run one way, modules stay
small (or say why not), and there is one decode loop."""

import ast
import re
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "cadenza"
MAX_LINES = 450

# (the modules a rule is about, the packages they must never import)
LOW = ("cadenza.music", "cadenza.data", "cadenza.train", "cadenza.server", "cadenza.commands", "cadenza.bench")
RULES = [
    ("cadenza.attention", LOW + ("cadenza.model", "cadenza.sampling", "cadenza.codecs")),
    ("cadenza.cache", LOW + ("cadenza.model", "cadenza.sampling", "cadenza.codecs")),
    ("cadenza.model", LOW + ("cadenza.sampling", "cadenza.codecs")),
    ("cadenza.decode_step", LOW + ("cadenza.sampling", "cadenza.codecs")),
    ("cadenza.sampling", LOW + ("cadenza.codecs",)),
    ("cadenza.prompts", LOW + ("cadenza.codecs", "cadenza.sampling", "cadenza.model")),
    ("cadenza.codecs", LOW + ("cadenza.sampling", "cadenza.model", "cadenza.render")),
    ("cadenza.render", LOW),
    ("cadenza.data", ("cadenza.music", "cadenza.train", "cadenza.server", "cadenza.commands", "cadenza.bench")),
    ("cadenza.train", ("cadenza.music", "cadenza.server", "cadenza.commands", "cadenza.bench")),
    ("cadenza.music", ("cadenza.server", "cadenza.commands", "cadenza.bench")),
]


def modules(root: Path = SRC):
    for path in sorted(root.rglob("*.py")):
        parts = path.relative_to(root.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        yield name, path


def imports_of(path: Path, name: str):
    """Every cadenza module ``path`` imports, at the top or inside a function."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            for a in node.names:
                yield a.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            yield mod, node.lineno
            for a in node.names:        # `from cadenza import model` imports cadenza.model
                yield f"{mod}.{a.name}", node.lineno


def within(mod: str, package: str) -> bool:
    return mod == package or mod.startswith(package + ".")


def test_imports_run_one_way():
    wrong = []
    for name, path in modules():
        for owner, banned in RULES:
            if not within(name, owner):
                continue
            for mod, line in imports_of(path, name):
                if any(within(mod, b) for b in banned) and not within(mod, owner):
                    wrong.append(f"{path.relative_to(SRC)}:{line} imports {mod}")
    assert not wrong, "imports that run the wrong way:\n" + "\n".join(wrong)


def test_music_reaches_evaluation_only_for_the_metrics_format():
    """Evaluation sits on top of the music layer; the one module below it may read is the
    metrics.json format (``music/eval/report.py``)."""
    wrong = []
    for name, path in modules():
        if within(name, "cadenza.music") and not within(name, "cadenza.music.eval"):
            for mod, line in imports_of(path, name):
                if within(mod, "cadenza.music.eval") and not within(mod, "cadenza.music.eval.report"):
                    wrong.append(f"{path.relative_to(SRC)}:{line} imports {mod}")
    assert not wrong, "\n".join(wrong)


def test_the_rule_checker_sees_a_wrong_import(tmp_path):
    """The checks above can fail: a codec module importing the music layer is caught."""
    bad = tmp_path / "cadenza" / "codecs" / "bad.py"
    bad.parent.mkdir(parents=True)
    bad.write_text("def f():\n    from cadenza.music.composition import compose\n    from ..sampling import Decoder\n")
    found = {mod for mod, _ in imports_of(bad, "cadenza.codecs.bad")}
    assert "cadenza.music.composition" in found and "cadenza.sampling" in found


def test_modules_stay_small_or_say_why():
    long = []
    for name, path in modules():
        text = path.read_text()
        lines = len(text.splitlines())
        if lines > MAX_LINES and "one module on purpose" not in (ast.get_docstring(ast.parse(text)) or "").lower():
            long.append(f"{path.relative_to(SRC)}: {lines} lines")
    assert not long, (f"over {MAX_LINES} lines without saying why in the docstring ('One module on purpose: "
                      "...'); split them by job:\n" + "\n".join(long))


def import_graph(root: Path = SRC) -> dict[str, set[str]]:
    """Module -> the package's modules it imports, at the top or inside a function.
    ``from pkg import sub`` imports the module ``pkg.sub`` (not ``pkg``: a package's
    ``__init__`` that re-exports its submodules makes no cycle); ``from pkg import name``
    imports ``pkg``."""
    paths = dict(modules(root))
    graph = {}
    for name, path in paths.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        deps = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                deps.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom):
                mod = node.module or ""
                if node.level:
                    base = package.split(".")
                    mod = ".".join(base[:len(base) - node.level + 1] + ([mod] if mod else []))
                deps.update(f"{mod}.{a.name}" if f"{mod}.{a.name}" in paths else mod for a in node.names)
        graph[name] = {d for d in deps if d in paths and d != name}
    return graph


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle (as a path a -> ... -> a) per strongly connected group of modules."""
    index, low, stack, on, groups = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                groups.append(set(group))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    cycles = []
    for group in groups:                       # a shortest path back to the group's first module
        start = min(group)
        paths, seen = [[start]], {start}
        while paths:
            path = paths.pop(0)
            nxt = sorted(graph[path[-1]] & group)
            if start in nxt:
                cycles.append(path + [start])
                break
            for w in nxt:
                if w not in seen:
                    seen.add(w)
                    paths.append(path + [w])
    return cycles


def test_no_import_cycles():
    """No module imports itself back through others, not even from inside a function (a
    function-level import hides a cycle; it does not break it)."""
    cycles = import_cycles(import_graph())
    assert not cycles, "import cycles (move the shared name to a module both can import):\n" + "\n".join(
        " -> ".join(c) for c in cycles)


def test_the_cycle_checker_sees_a_planted_cycle(tmp_path):
    """The check above can fail: a cycle closed by a function-level import is caught, and a
    package ``__init__`` that re-exports its submodules is not one."""
    pkg = tmp_path / "cadenza"
    (pkg / "server").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "server" / "__init__.py").write_text("from cadenza.server.app import create_app\n")
    (pkg / "server" / "app.py").write_text("from cadenza.server import studio\n")
    (pkg / "server" / "studio.py").write_text("def router():\n    from cadenza.server.app import create_app\n")
    (pkg / "server" / "errors.py").write_text("class Refused(Exception):\n    pass\n")
    graph = import_graph(pkg)
    assert import_cycles(graph) == [["cadenza.server.app", "cadenza.server.studio", "cadenza.server.app"]]
    (pkg / "server" / "studio.py").write_text("from cadenza.server.errors import Refused\n")
    assert import_cycles(import_graph(pkg)) == []


def test_one_decode_loop():
    """Only ``draw.py`` (the decode loop's sampler, ``sampling.py``'s one helper) draws tokens: no
    other module calls torch.multinomial or draws the exponentials it takes."""
    samplers = []
    for name, path in modules():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute) and node.attr in ("multinomial", "exponential_"):
                samplers.append(f"{path.relative_to(SRC)}:{node.lineno}")
    assert samplers and all(s.startswith("draw.py:") for s in samplers), samplers


# --------------------------------------------------------------------------- the bounds table
# The modules that read their user-facing bounds from ``cadenza.bounds``; none may write one
# as a literal again.
READS_BOUNDS = ["music/inputs.py", "music/preflight.py", "music/harmony.py", "music/studio.py", "music/infill.py",
                "prompts.py", "codecs/music/vocab.py", "data/music/music21.py", "commands/write.py",
                "commands/music_options.py", "server/schemas.py", "server/routes/studio.py", "server/prefs.py",
                "music/predict.py", "commands/predict.py", "music/soundtrack.py", "music/stream_controls.py"]
BOUNDED = {"tempo", "bpm", "bars", "seconds", "voices", "temperature", "top_k", "top_p", "k", "top"}
# (file, field) pairs still bounded by a literal, each with its reason; the list only shrinks
LITERAL_BOUNDS_LEFT = {
    ("server/schemas.py", "bars"): "the JSON cap 10,000 lets app.py answer with the server's own limit (Limits.bars)",
    ("server/schemas.py", "seconds"): "the JSON cap 100,000 lets app.py answer with the server's own limit",
}


def _number(node) -> bool:
    return isinstance(node, ast.Constant) and isinstance(node.value, (int, float)) and not isinstance(node.value, bool)


def _names(node) -> set[str]:
    return {n.id for n in ast.walk(node) if isinstance(n, ast.Name)} | {
        n.attr for n in ast.walk(node) if isinstance(n, ast.Attribute)}


def literal_bounds(source: str, where: str = "") -> list[str]:
    """Bounds written as literals: a ``MAX_``/``MIN_`` constant of a bounded quantity set to a
    number, a range check of a bounded quantity with a number (or a comparison with one of the
    table's numbers), a pydantic ``Field`` of a bounded field with
    a numeric ``ge``/``gt``/``le``/``lt``, and a text giving a range ("10 to 400", "at most
    3600") with a number from the bounds table."""
    import cadenza.bounds as B

    table = {v for b in vars(B).values() if isinstance(b, B.Bound) for v in (b.lo, b.hi)} - {0, 1}
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Compare):
            numbers = [side.value for side in (node.left, *node.comparators) if _number(side)]
            if numbers and _names(node) & BOUNDED and (len(node.ops) > 1 or set(numbers) & table):   # a range check
                found.append(f"{where}:{node.lineno} {ast.unparse(node)}")
        elif isinstance(node, ast.Assign) and any(map(_number, ast.walk(node.value))):
            names = {n.id for t in node.targets for n in ast.walk(t) if isinstance(n, ast.Name)}
            if any(re.search(r"(^|_)(MAX|MIN)(_|$)", n) and set(n.lower().split("_")) & BOUNDED for n in names):
                found.append(f"{where}:{node.lineno} {ast.unparse(node)}")
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.target.id in BOUNDED \
                and isinstance(node.value, ast.Call) and getattr(node.value.func, "id", "") == "Field":
            if any(k.arg in ("ge", "gt", "le", "lt") and _number(k.value) for k in node.value.keywords) \
                    and (where, node.target.id) not in LITERAL_BOUNDS_LEFT:
                found.append(f"{where}:{node.lineno} {ast.unparse(node)}")
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            for m in re.finditer(r"(\d+(?:\.\d+)?) (?:to|and) (\d+(?:\.\d+)?)|at (?:most|least) (\d+(?:\.\d+)?)",
                                 node.value):
                if {float(x) for x in m.groups() if x} & table:
                    found.append(f"{where}:{node.lineno} {m.group(0)!r}")
    return found


def test_bounds_come_from_the_table():
    """Every user-facing bound is set once, in ``cadenza.bounds``: the modules that read it
    write none as a literal (a comparison, a schema field, or a range in a message or help)."""
    found = [f for rel in READS_BOUNDS for f in literal_bounds((SRC / rel).read_text(), rel)]
    assert not found, "literal bounds (read them from cadenza.bounds):\n" + "\n".join(found)


def test_the_bounds_check_sees_a_literal():
    """The check above can fail: each kind of literal bound is caught, the table's names are not."""
    bad = ("def f(tempo, bars):\n    if not 30 <= tempo <= 240:\n        raise ValueError('tempo from 30 to 240')\n"
           "    return bars > 32\n"
           "class R:\n    voices: int = Field(default=3, ge=1, le=4)\n"
           "HELP = 'length in seconds (at most 3600)'\n"
           "TEMPO_MIN, TEMPO_MAX = 30, 240\nMAX_VOICES = 4\n")
    assert len(literal_bounds(bad)) == 7
    good = ("def f(tempo):\n    if not LIVE_TEMPO.lo <= tempo <= LIVE_TEMPO.hi:\n"
            "        raise ValueError(f'tempo from {LIVE_TEMPO.lo} to {LIVE_TEMPO.hi}')\n"
            "class R:\n    voices: int = Field(default=3, **VOICES.pydantic())\n"
            "NAME = 'a listener id is 1 to 64 letters'\nMAX_VOICES = VOICES.hi\nDEFAULT_BARS = 16\n")
    assert literal_bounds(good) == []


# --------------------------------------------------------------------------- private names
# Cross-module imports of a ``_private`` name still left, "importer: source.name" (paths under
# src/cadenza, without .py). The list only shrinks: make the name public where it is defined
# and import that; a file that cannot change yet may keep importing the old name through an
# alias (``_x = x``) at the source.
PRIVATE_IMPORTS_LEFT: set[str] = set()   # empty: every name shared across modules is public


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def private_imports(root: Path = SRC) -> set[str]:
    """Every ``_private`` name one module takes from another: ``from m import _x``, or
    ``m._x`` where ``m`` names another of the package's modules."""
    paths = dict(modules(root))

    def rel(mod: str) -> str:
        return str(paths[mod].relative_to(root).with_suffix("")) if mod in paths else mod

    found = set()
    for name, path in paths.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        tree = ast.parse(path.read_text())
        bound = {}                                      # local name -> the module it names
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                bound.update({a.asname: a.name for a in node.names if a.asname and a.name in paths})
            elif isinstance(node, ast.ImportFrom):
                mod = node.module or ""
                if node.level:
                    base = package.split(".")
                    mod = ".".join(base[:len(base) - node.level + 1] + ([mod] if mod else []))
                for a in node.names:
                    if f"{mod}.{a.name}" in paths:
                        bound[a.asname or a.name] = f"{mod}.{a.name}"
                    elif _private(a.name) and mod in paths and mod != name:
                        found.add(f"{rel(name)}: {rel(mod)}.{a.name}")
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and _private(node.attr) \
                    and bound.get(node.value.id, name) != name:
                found.add(f"{rel(name)}: {rel(bound[node.value.id])}.{node.attr}")
    return found


def test_no_new_private_imports():
    """A helper another module needs is public: no module imports another's ``_private``
    name, apart from the shrinking list above (tests may)."""
    found = private_imports()
    new, gone = sorted(found - PRIVATE_IMPORTS_LEFT), sorted(PRIVATE_IMPORTS_LEFT - found)
    assert not new, "private names imported across modules (make them public):\n" + "\n".join(new)
    assert not gone, "no longer imported; remove from PRIVATE_IMPORTS_LEFT:\n" + "\n".join(gone)


def test_the_private_import_check_sees_one(tmp_path):
    """The check above can fail: a private name taken by ``from`` or through the module is caught."""
    pkg = tmp_path / "cadenza"
    (pkg / "music").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "music" / "__init__.py").write_text("")
    (pkg / "music" / "inputs.py").write_text("def check_style():\n    pass\n_check_style = check_style\n")
    (pkg / "music" / "studio.py").write_text("from cadenza.music.inputs import _check_style, check_style\n")
    (pkg / "music" / "harmony.py").write_text("from cadenza.music import inputs as I\n\ndef f():\n"
                                              "    return I._check_style(), I.check_style()\n")
    assert private_imports(pkg) == {"music/studio: music/inputs._check_style",
                                    "music/harmony: music/inputs._check_style"}


# --------------------------------------------------------------------------- long functions
MAX_FUNCTION_LINES = 80
SHORT_FUNCTIONS_IN = ["train", "server"]   # folders under src/cadenza whose functions stay short
# "file: function" still over the limit, with its reason; the list only shrinks (empty since the
# server was split by resource into server/routes/)
LONG_FUNCTIONS_LEFT: dict[str, str] = {}


def long_functions(root: Path, folders, limit: int = MAX_FUNCTION_LINES) -> dict[str, int]:
    """Every function (or method, nested ones too) in ``folders`` under ``root`` longer than
    ``limit`` lines, from its ``def`` to its last line: "file: qualified.name" -> lines."""
    found = {}

    def visit(node, prefix, rel):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                name = prefix + child.name
                if not isinstance(child, ast.ClassDef) and child.end_lineno - child.lineno + 1 > limit:
                    found[f"{rel}: {name}"] = child.end_lineno - child.lineno + 1
                visit(child, name + ".", rel)
            else:
                visit(child, prefix, rel)

    for folder in folders:
        for path in sorted((root / folder).rglob("*.py")):
            visit(ast.parse(path.read_text()), "", str(path.relative_to(root).with_suffix("")))
    return found


def test_functions_stay_short():
    """No function in the folders above runs over 80 lines (split it by job), apart from the
    shrinking list of ones left."""
    found = long_functions(SRC, SHORT_FUNCTIONS_IN)
    new = sorted(f"{k} ({n} lines)" for k, n in found.items() if k not in LONG_FUNCTIONS_LEFT)
    gone = sorted(set(LONG_FUNCTIONS_LEFT) - set(found))
    assert not new, f"functions over {MAX_FUNCTION_LINES} lines (split them by job):\n" + "\n".join(new)
    assert not gone, "now short; remove from LONG_FUNCTIONS_LEFT:\n" + "\n".join(gone)


def test_the_function_length_check_sees_one(tmp_path):
    """The check above can fail: a long method and a long nested function are caught, a long
    class of short methods and a file outside the folders are not."""
    (tmp_path / "train").mkdir()
    (tmp_path / "other").mkdir()
    body = "    x = 1\n" * 80
    (tmp_path / "train" / "loop.py").write_text(
        "class T:\n    def step(self):\n" + "    " + body.replace("\n    ", "\n        ").rstrip(" ")
        + "\ndef outer():\n    def inner():\n" + body.replace("    ", "        ") + "    return inner\n"
        + "class Big:\n" + "".join(f"    def m{i}(self):\n        pass\n" for i in range(50)))
    (tmp_path / "other" / "x.py").write_text("def f():\n" + body)
    assert long_functions(tmp_path, ["train"]) == {"train/loop: T.step": 81, "train/loop: outer": 83,
                                                   "train/loop: outer.inner": 81}
