"""`cadenza attention plot`: pictures of the attention patterns (see cadenza.pattern_figure)."""

from __future__ import annotations

from pathlib import Path


def figure_writer(fig, dpi: int = 110):
    """A FileTransaction writer that saves a matplotlib figure as PNG."""
    def write(tmp):
        fig.savefig(tmp, format="png", dpi=dpi)
    return write


def _plot(args) -> int:
    from cadenza.config import INTEGRATIONS
    from cadenza.io import FileTransaction, check_writable_folder
    from cadenza.pattern_figure import draw

    out = Path(args.out)
    if out.is_dir():
        raise IsADirectoryError(21, "Is a directory", str(out))
    check_writable_folder(out.parent)
    modes = list(INTEGRATIONS) if args.mode == "all" else [args.mode]
    fig = draw(args.pattern, args.stride, args.n, modes, summary=args.summary, query=args.query)
    with FileTransaction() as txn:
        txn.write(out, figure_writer(fig))
    print(f"wrote {out}")
    return 0


def register(subparsers) -> None:
    from cadenza.config import ATTENTION_KINDS, INTEGRATIONS

    parser = subparsers.add_parser("attention", help="pictures of the attention patterns",
                                   description="Tools for the attention patterns.")
    sub = parser.add_subparsers(dest="attention_command", metavar="TOOL", required=True)
    p = sub.add_parser("plot", help="draw which keys each query attends (like the paper's Figure 3)",
                       description="Draw, for each integration mode, the connectivity matrix of a two-layer "
                                   "model (the pattern's two parts in two colours) and one query's keys laid out "
                                   "in rows of STRIDE positions with its two-hop reach shaded. Every cell comes "
                                   "from the pattern's own mask(n).")
    p.add_argument("--pattern", choices=ATTENTION_KINDS, default="strided")
    p.add_argument("--stride", type=int, default=4, help="l: band width / block size (default 4)")
    p.add_argument("--n", type=int, default=16, help="sequence length, 2..256 (default 16)")
    p.add_argument("--summary", type=int, help="c, the fixed pattern's summary columns (default 1)")
    p.add_argument("--mode", choices=list(INTEGRATIONS) + ["all"], default="all",
                   help="integration mode to draw (default all)")
    p.add_argument("--query", type=int, help="the query whose keys and two-hop reach are shown (default n-1)")
    p.add_argument("-o", "--out", required=True, metavar="FIG.png")
    p.set_defaults(func=_plot)
