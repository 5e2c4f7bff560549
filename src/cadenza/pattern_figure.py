"""Pictures of the attention patterns, like Figure 3 of Child et al. (2019).

Everything drawn comes from the library's own definitions: a two-layer
:class:`cadenza.config.ModelConfig` with the chosen pattern and integration mode gives,
through ``head_groups(layer)``, the pattern parts each layer's heads attend, and each
part's ``mask(n)`` (the specification) gives the cells.

- :func:`layer_grid` -- an (n, n) integer grid for one layer: bit 0 set where the layer
  attends (i, j) through the pattern's first part, bit 1 through its second part.
- :func:`two_hop_reach` -- the positions a query reaches through the last layer and the one
  below it; residual connections carry every position to itself, so a hop may also stay put.
- :func:`draw` -- the figure: for each integration mode, the connectivity matrix of both
  layers (parts in two colours) and the chosen query's keys laid out in rows of l
  positions (as an image is), with its two-hop reach shaded.
"""

from __future__ import annotations

import numpy as np
import torch

from cadenza.config import ATTENTION_KINDS, INTEGRATIONS, ModelConfig
from cadenza.errors import ConfigError

MAX_N = 256
PART_A, PART_B, BOTH = 1, 2, 3
COLOURS = {0: "#ffffff", PART_A: "#1f5aa6", PART_B: "#f28e2b", BOTH: "#6b3fa0"}
REACH_COLOUR = "#d9d9d9"
QUERY_COLOUR = "#000000"


def figure_config(pattern: str, stride: int, n: int, mode: str = "merged", summary: int | None = None) -> ModelConfig:
    """The two-layer model config whose layers the figure draws (checked like any config)."""
    if pattern not in ATTENTION_KINDS:
        raise ConfigError(f"--pattern must be one of {', '.join(ATTENTION_KINDS)}, got {pattern!r}")
    if mode not in INTEGRATIONS:
        raise ConfigError(f"--mode must be one of {', '.join(INTEGRATIONS)} or all, got {mode!r}")
    if isinstance(n, bool) or not isinstance(n, int) or not 2 <= n <= MAX_N:
        raise ConfigError(f"--n must be a whole number from 2 to {MAX_N} (one cell per position), got {n!r}")
    if isinstance(stride, bool) or not isinstance(stride, int) or not 1 <= stride <= n:
        raise ConfigError(f"--stride must be a whole number from 1 to n = {n}, got {stride!r}")
    if summary is not None and (isinstance(summary, bool) or not isinstance(summary, int)
                                or not 1 <= summary <= stride):
        raise ConfigError(f"--summary must be a whole number from 1 to the stride ({stride}), got {summary!r}")
    return ModelConfig(vocab_size=2, d_model=4, n_layers=2, n_heads=2, max_len=n, attention=pattern,
                       stride=stride, summary=summary if summary is not None else 1, integration=mode)


def _part_masks(config: ModelConfig, n: int) -> list[torch.Tensor]:
    return [p.mask(n) for p in config.pattern().parts]


def layer_grid(config: ModelConfig, layer: int, n: int | None = None) -> np.ndarray:
    """(n, n) int grid for ``layer``: bit k set where a head group of that layer attends the
    cell through part k of the whole pattern (dense has a single part)."""
    n = config.max_len if n is None else n
    parts = config.pattern().parts
    grid = torch.zeros(n, n, dtype=torch.int64)
    for _, _, pattern in config.head_groups(layer):
        for part in pattern.parts:
            grid |= part.mask(n).to(torch.int64) << parts.index(part)
    return grid.numpy()


def two_hop_reach(config: ModelConfig, query: int, n: int | None = None) -> np.ndarray:
    """Bool (n,): the positions ``query`` reaches through the top layer and then the one below
    (each hop may also stay at the same position, as the residual stream does)."""
    n = config.max_len if n is None else n
    if not 0 <= query < n:
        raise ConfigError(f"--query must be a position from 0 to {n - 1}, got {query}")
    eye = torch.eye(n, dtype=torch.bool)
    top = torch.from_numpy(layer_grid(config, config.n_layers - 1, n) > 0) | eye
    below = torch.from_numpy(layer_grid(config, config.n_layers - 2, n) > 0) | eye
    return ((top[query].float() @ below.float()) > 0).numpy()


def _cmap():
    from matplotlib.colors import ListedColormap

    return ListedColormap([COLOURS[k] for k in range(4)])


def _query_view(config: ModelConfig, query: int, n: int) -> np.ndarray:
    """(rows, l) codes for the query panel: 0 empty, 1/2/3 part colours of the top layer,
    4 reached in two hops only, 5 the query itself, -1 past the end."""
    l = config.stride
    rows = -(-n // l)
    view = np.full(rows * l, -1, dtype=np.int64)
    top = layer_grid(config, config.n_layers - 1, n)[query]
    reach = two_hop_reach(config, query, n)
    view[:n] = np.where(top > 0, top, np.where(reach, 4, 0))
    view[query] = 5
    return view.reshape(rows, l)


def _label(config: ModelConfig, mode: str, layer: int) -> str:
    """Which heads of the layer attend what, in words."""
    if config.attention == "dense":
        return "dense"
    groups = config.head_groups(layer)
    if len(groups) == 1 and mode == "interleaved":
        return f"interleaved ({type(groups[0][2]).__name__})"
    if mode == "split":
        return "split: " + ", ".join(f"heads {a}..{b - 1} {type(p).__name__}" if b - a > 1
                                     else f"head {a} {type(p).__name__}" for a, b, p in groups)
    return "merged (every head: both parts)"


def draw(pattern: str, stride: int, n: int, modes=None, summary: int | None = None, query: int | None = None):
    """The figure (a matplotlib Figure, not yet saved) for one pattern and some modes."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.colors import ListedColormap
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    modes = list(modes or INTEGRATIONS)
    if pattern == "dense":
        modes = modes[:1]   # the integration mode changes nothing for dense attention
    configs = [figure_config(pattern, stride, n, m, summary) for m in modes]
    query = n - 1 if query is None else query
    if isinstance(query, bool) or not isinstance(query, int) or not 0 <= query < n:
        raise ConfigError(f"--query must be a position from 0 to {n - 1}, got {query!r}")
    names = [type(p).__name__ for p in configs[0].pattern().parts]
    fig = Figure(figsize=(11, 3.4 * len(modes)), constrained_layout=True)
    axes = fig.subplots(len(modes), 3, squeeze=False)
    query_cmap = ListedColormap(["#f4f4f4", COLOURS[0], COLOURS[PART_A], COLOURS[PART_B], COLOURS[BOTH],
                                 REACH_COLOUR, QUERY_COLOUR])
    for row, (mode, cfg) in enumerate(zip(modes, configs)):
        for col, layer in enumerate((1, 0)):
            ax = axes[row][col]
            ax.imshow(layer_grid(cfg, layer), cmap=_cmap(), vmin=0, vmax=3, interpolation="nearest")
            ax.axhline(query, color=QUERY_COLOUR, lw=0.6, alpha=0.5)
            ax.set_title(f"{_label(cfg, mode, layer)}\nlayer {layer}: queries x keys", fontsize=9)
            ax.set_xlabel("key j", fontsize=8)
            ax.set_ylabel("query i", fontsize=8)
            ax.tick_params(labelsize=7)
        ax = axes[row][2]
        view = _query_view(cfg, query, n)
        ax.imshow(view + 1, cmap=query_cmap, vmin=0, vmax=6, interpolation="nearest")
        l = cfg.stride
        for r in range(view.shape[0]):
            for c in range(view.shape[1]):
                if view[r, c] >= 0 and n <= 64:
                    ax.text(c, r, str(r * l + c), ha="center", va="center", fontsize=6,
                            color="white" if view[r, c] in (PART_A, BOTH, 5) else "#444444")
        reach = two_hop_reach(cfg, query, n)
        ax.set_title(f"query {query}: its layer-1 keys\nreach in two hops: {int(reach.sum())} of {query + 1} positions",
                     fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    handles = [Patch(color=COLOURS[PART_A], label=names[0])]
    if len(names) > 1:
        handles += [Patch(color=COLOURS[PART_B], label=names[1]), Patch(color=COLOURS[BOTH], label="both parts")]
    handles += [Patch(color=REACH_COLOUR, label="reached in two hops"), Patch(color=QUERY_COLOUR, label="the query")]
    c = configs[0]
    title = {"strided": f"strided(l={c.stride})", "fixed": f"fixed(l={c.stride}, c={c.summary})",
             "dense": "dense"}[pattern]
    fig.suptitle(f"{title}, n = {n}: which keys each query attends", fontsize=11)
    fig.legend(handles=handles, loc="outside lower center", ncol=len(handles), fontsize=8, frameon=False)
    return fig
