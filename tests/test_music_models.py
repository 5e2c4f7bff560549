"""Music model directories: loading with clear errors, the default model, `cadenza models`."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from conftest import require

require("miditok")
require("music21")
torch = require("torch")

import music_fixtures as mf  # noqa: E402

from cadenza.cli import main  # noqa: E402
from cadenza.errors import ModelFileError  # noqa: E402
from cadenza.music import load as L  # noqa: E402
from cadenza.music import registry as M  # noqa: E402
from cadenza.music.eval import report  # noqa: E402

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def model_dir():
    return mf.tiny_model_dir()


def test_load_model_gives_model_codec_and_identity(model_dir):
    mm = L.load_model(model_dir)
    assert mm.codec.vocab_size == mm.network.config.vocab_size
    assert mm.name == "tiny-chorales" and len(mm.digest) == 12
    assert mm.digest == M.weights_digest(model_dir)
    assert mm.metrics["held_out"]["bits_per_token"] > 0
    assert L.load_model(model_dir) is mm                 # cached per process
    assert not mm.network.training


def test_changed_files_are_reloaded(model_dir, tmp_path):
    d = tmp_path / "copy"
    shutil.copytree(model_dir, d)
    a = L.load_model(d)
    model = a.network
    with torch.no_grad():
        model.head.weight.add_(0.01)
    model.save(d)
    b = L.load_model(d)
    assert b is not a and b.digest != a.digest


def test_load_errors_name_the_problem(model_dir, tmp_path):
    from cadenza.model import SparseTransformer
    from cadenza.presets import get_preset

    with pytest.raises(ModelFileError, match="does not exist"):
        L.load_model(tmp_path / "nowhere")
    d = tmp_path / "m"
    shutil.copytree(model_dir, d)
    (d / "tokenizer.json").unlink()
    with pytest.raises(ModelFileError, match="no tokenizer.json"):
        L.load_model(d)
    (d / "tokenizer.json").write_text("{not json")
    with pytest.raises(ModelFileError, match="not valid JSON"):
        L.load_model(d)
    # a tokenizer that belongs to another model
    other = tmp_path / "other"
    SparseTransformer(get_preset("tiny", vocab_size=700)).save(other)
    shutil.copy(model_dir / "tokenizer.json", other / "tokenizer.json")
    with pytest.raises(ModelFileError, match=r"tokenizer.json has a vocabulary of \d+ tokens but .*config.json says the model was built for 700"):
        L.load_model(other)
    (other / "config.json").write_text("[]")
    with pytest.raises(ModelFileError, match="config"):
        L.load_model(other)


def _install(root: Path, name: str, source: Path) -> Path:
    shutil.copytree(source, root / name)
    return root / name


def test_default_model_and_listing(model_dir, tmp_path, monkeypatch):
    monkeypatch.delenv("CADENZA_MODEL", raising=False)
    root = tmp_path / "models"
    root.mkdir()
    with pytest.raises(ModelFileError, match="no music model is installed"):
        M.default_model_dir(root)
    b = _install(root, "b-model", model_dir)
    a = _install(root, "a-model", model_dir)
    (root / "notes").mkdir()                             # not a model: ignored
    assert M.find_models(root) == [a, b]
    assert M.default_model_dir(root) == a                # the first by name ...
    (root / "DEFAULT").write_text("b-model\n")
    assert M.default_model_dir(root) == b                # ... unless DEFAULT names one
    meta = json.loads((a / "config.json").read_text())
    meta["metrics"] = {"bits_per_note": 3.25}
    (a / "config.json").write_text(json.dumps(meta))
    (a / "metrics.json").unlink()
    infos = {i.name: i for i in M.list_models(root)}
    assert infos["b-model"].is_default and not infos["a-model"].is_default
    assert infos["a-model"].metrics == {"bits_per_note": 3.25}          # from config.json
    assert "bits_per_token" in infos["b-model"].metrics["held_out"]      # from metrics.json
    mm = L.load_model(b)
    assert infos["b-model"].parameters == mm.network.num_params()
    assert infos["b-model"].title == "Tiny chorale model (test fixture)"
    monkeypatch.setenv("CADENZA_MODEL", str(a))
    assert M.default_model_dir() == a


def test_the_repository_models_folder_is_found():
    root = M.repo_root()
    assert (root / "pyproject.toml").is_file() and (root / "src" / "cadenza").is_dir()
    assert M.models_root() == root / "models" or M.models_root() == Path(__import__("os").environ["CADENZA_MODELS"])


def test_cli_models_lists_metrics(model_dir, tmp_path, capsys):
    root = tmp_path / "models"
    root.mkdir()
    _install(root, "tiny-chorales", model_dir)
    assert main(["models", "--dir", str(root)]) == 0
    out = capsys.readouterr().out
    assert "* tiny-chorales:" in out and "held_out.bits_per_token:" in out and "context 512" in out
    assert main(["models", "--dir", str(root), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data[0]["name"] == "tiny-chorales" and data[0]["default"] is True
    assert data[0]["metrics"]["held_out"]["bits_per_token"] == pytest.approx(
        json.loads((model_dir / "metrics.json").read_text())["held_out"]["bits_per_token"])
    assert main(["models", "--dir", str(tmp_path / "empty")]) == 0
    assert "no music models installed" in capsys.readouterr().out


def test_compose_uses_the_default_model(model_dir, tmp_path, monkeypatch, capsys):
    root = tmp_path / "models"
    root.mkdir()
    _install(root, "only", model_dir)
    monkeypatch.delenv("CADENZA_MODEL", raising=False)
    monkeypatch.setenv("CADENZA_MODELS", str(root))
    out = tmp_path / "x.mid"
    assert main(["compose", "--bars", "1", "--seed", "1", "--no-audio", "-o", str(out)]) == 0
    assert out.is_file() and "only@" in out.read_bytes().decode("latin-1")
    monkeypatch.setenv("CADENZA_MODELS", str(tmp_path / "none"))
    assert main(["compose", "--bars", "1", "-o", str(tmp_path / "y.mid")]) == 2
    assert "no music model is installed" in capsys.readouterr().err


def test_metrics_from_the_model_card_when_there_is_no_json(model_dir, tmp_path):
    d = _install(tmp_path, "carded", model_dir)
    (d / "metrics.json").unlink()
    (d / "MODEL_CARD.md").write_text(
        "# Carded model\n\n## Data\n\n| pieces | 120 |\n\n## Held-out evaluation\n\n| metric | value |\n|---|---|\n"
        "| bits per token | 1.87 |\n| top-5 pitch accuracy | 64.5% |\n| notes | see below |\n\n"
        "- bits per note: 6.1 bits\n\n## Known limits\n\n- context: 4096\n")
    assert report.read_metrics(d) == {"bits per token": "1.87", "top-5 pitch accuracy": "64.5%", "bits per note": "6.1 bits"}
    (d / "MODEL_CARD.md").write_text("# No numbers here\n")
    assert report.read_metrics(d) == {}
