"""The page scripts in server/static are small ES modules (docs/layout.md): each page loads one
module, every import names a file and something that file exports, the helpers the pages share
are defined once (in common.js), and the testing hooks live under window.cadenza.debug only."""

import re
from pathlib import Path

STATIC = Path(__file__).resolve().parents[1] / "src" / "cadenza" / "server" / "static"
MAX_LINES = 200
SHARED = ("setStatus", "problem", "clearProblem", "withToken", "$")

IMPORT = re.compile(r'^import\s*\{([^}]*)\}\s*from\s*"([^"]+)";', re.M)


def scripts():
    """Every page script (not the vendored builds)."""
    return sorted(p for p in STATIC.rglob("*.js") if "vendor" not in p.relative_to(STATIC).parts)


def resolve(spec: str, importer: Path) -> Path:
    if spec.startswith("/static/"):
        return STATIC / spec.removeprefix("/static/")
    assert spec.startswith("./"), f"{importer.name}: import {spec!r} is neither /static/... nor ./..."
    return importer.parent / spec


def exports(path: Path) -> set[str]:
    text = path.read_text()
    names = set(re.findall(r"^export (?:async )?function (\w+)", text, re.M))
    for decl in re.findall(r"^export (?:const|let) ([^;]*)", text, re.M):
        names |= set(re.findall(r"(?:^|,)\s*(\$|\w+)\s*=", decl))
    return names


def definitions(name: str, text: str) -> int:
    n = re.escape(name)
    return len(re.findall(rf"^\s*(?:export )?(?:async )?function {n}\(|^\s*(?:export )?(?:const|let|var) {n}\s*=",
                          text, re.M))


def test_page_scripts_are_small():
    long = {p.relative_to(STATIC).as_posix(): n for p in scripts() if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not long, f"page scripts over {MAX_LINES} lines (split them by concern): {long}"


def test_shared_helpers_are_defined_once_in_common_js():
    where = {name: [p.relative_to(STATIC).as_posix() for p in scripts() if definitions(name, p.read_text())]
             for name in SHARED}
    assert where == {name: ["common.js"] for name in SHARED}


def test_each_page_loads_one_module_whose_imports_resolve():
    for html in ("index.html", "listen.html", "studio.html"):
        tags = re.findall(r"<script\b([^>]*)>", (STATIC / html).read_text())
        assert len(tags) == 1 and 'type="module"' in tags[0], (html, tags)
        src = re.search(r'src="(/static/[^"]+)"', tags[0]).group(1)
        assert resolve(src, STATIC / html).is_file(), (html, src)
    for path in scripts():
        for names, spec in IMPORT.findall(path.read_text()):
            target = resolve(spec, path)
            assert target.is_file(), f"{path.relative_to(STATIC)} imports {spec}, which is not there"
            if "vendor" in target.parts:
                continue
            missing = {n.strip() for n in names.split(",")} - exports(target)
            assert not missing, f"{path.relative_to(STATIC)} imports {sorted(missing)} that {spec} does not export"


def test_testing_hooks_live_under_window_cadenza_debug():
    assigned = {p.relative_to(STATIC).as_posix(): re.findall(r"\bwindow\.(\w+)\s*=(?!=)", p.read_text())
                for p in scripts()}
    assert {k: v for k, v in assigned.items() if v} == {"common.js": ["cadenza"]}
