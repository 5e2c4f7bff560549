"""The layout docs/layout.md describes holds in the code: imports run one way, modules stay
small (or say why not), and there is one decode loop."""

import ast
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


def modules():
    for path in sorted(SRC.rglob("*.py")):
        parts = path.relative_to(SRC.parent).with_suffix("").parts
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
    bad.write_text("def f():\n    from cadenza.music.generate import compose\n    from ..sampling import Decoder\n")
    found = {mod for mod, _ in imports_of(bad, "cadenza.codecs.bad")}
    assert "cadenza.music.generate" in found and "cadenza.sampling" in found


def test_modules_stay_small_or_say_why():
    long = []
    for name, path in modules():
        text = path.read_text()
        lines = len(text.splitlines())
        if lines > MAX_LINES and "one module on purpose" not in (ast.get_docstring(ast.parse(text)) or "").lower():
            long.append(f"{path.relative_to(SRC)}: {lines} lines")
    assert not long, (f"over {MAX_LINES} lines without saying why in the docstring ('One module on purpose: "
                      "...'); split them by job:\n" + "\n".join(long))


def test_one_decode_loop():
    """Only ``sampling.py`` samples tokens: no other module calls torch.multinomial."""
    samplers = []
    for name, path in modules():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute) and node.attr == "multinomial":
                samplers.append(f"{path.relative_to(SRC)}:{node.lineno}")
    assert samplers and all(s.startswith("sampling.py:") for s in samplers), samplers
