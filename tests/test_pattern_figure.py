"""`cadenza attention plot`: the drawn cells are the patterns' own masks; bad options exit 2."""

import numpy as np
import pytest
import torch

from cadenza.attention import Dense
from cadenza.cli import main
from cadenza.pattern_figure import draw, figure_config, layer_grid, two_hop_reach


@pytest.mark.parametrize("pattern", ["strided", "fixed"])
@pytest.mark.parametrize("mode", ["interleaved", "merged", "split"])
def test_grid_bits_are_the_parts_masks(pattern, mode):
    n, l = 23, 5
    cfg = figure_config(pattern, l, n, mode, summary=2 if pattern == "fixed" else None)
    parts = cfg.pattern().parts
    for layer in (0, 1):
        grid = torch.from_numpy(layer_grid(cfg, layer))
        seen = torch.zeros(n, n, dtype=torch.bool)
        for _, _, p in cfg.head_groups(layer):
            seen |= p.mask(n)
        assert torch.equal(grid > 0, seen)
        for k, part in enumerate(parts):
            used = any(part in p.parts for _, _, p in cfg.head_groups(layer))
            expected = part.mask(n) if used else torch.zeros(n, n, dtype=torch.bool)
            assert torch.equal((grid >> k) & 1 == 1, expected)


@pytest.mark.parametrize("pattern", ["strided", "fixed"])
@pytest.mark.parametrize("mode", ["interleaved", "merged", "split"])
def test_two_hops_reach_every_earlier_position(pattern, mode):
    n = 30
    cfg = figure_config(pattern, 5, n, mode)
    causal = Dense().mask(n).numpy()
    for q in range(n):
        assert np.array_equal(two_hop_reach(cfg, q), causal[q])


def test_one_part_alone_does_not_reach_everything():
    # interleaved with both layers drawn from the band alone would not connect everything:
    # the reach is computed from the layers, not assumed.
    cfg = figure_config("strided", 4, 20, "interleaved")
    reach_top_only = torch.from_numpy(layer_grid(cfg, 0) > 0).float()
    two = ((reach_top_only @ reach_top_only) > 0).numpy()[19]
    assert not two.all()


def test_figure_draws_the_grids():
    fig = draw("strided", 4, 16, ["interleaved"], query=9)
    ax_top, ax_below, ax_query = fig.axes[:3]
    cfg = figure_config("strided", 4, 16, "interleaved")
    assert np.array_equal(np.asarray(ax_top.images[0].get_array()), layer_grid(cfg, 1))
    assert np.array_equal(np.asarray(ax_below.images[0].get_array()), layer_grid(cfg, 0))
    view = np.asarray(ax_query.images[0].get_array()).reshape(-1)[:16] - 1
    assert view[9] == 5
    top = layer_grid(cfg, 1)[9]
    keys = (view >= 1) & (view <= 3)
    keys[9] = top[9] > 0
    assert np.array_equal(keys, top > 0)


def test_cli_writes_png(tmp_path):
    out = tmp_path / "fig.png"
    assert main(["attention", "plot", "--pattern", "fixed", "--stride", "4", "--n", "16", "-o", str(out)]) == 0
    from PIL import Image

    with Image.open(out) as im:
        assert im.format == "PNG" and im.size[0] > 300


@pytest.mark.parametrize("argv", [
    ["--n", "1"], ["--n", "999"], ["--stride", "0"], ["--stride", "20", "--n", "16"], ["--query", "16"],
    ["--pattern", "fixed", "--summary", "9", "--stride", "4"],
])
def test_bad_options_exit_2_one_line(tmp_path, capsys, argv):
    out = tmp_path / "fig.png"
    assert main(["attention", "plot", *argv, "-o", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("cadenza: error:")
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_missing_folder_exit_2(tmp_path, capsys):
    assert main(["attention", "plot", "-o", str(tmp_path / "no" / "fig.png")]) == 2
    assert capsys.readouterr().err.count("\n") == 1
