"""`cadenza models`: the installed music models, their size and held-out metrics."""

from __future__ import annotations

from pathlib import Path


def _models(args) -> int:
    import json

    from cadenza.music.registry import list_models, models_root

    root = Path(args.dir) if args.dir else models_root()
    infos = list_models(root)
    if args.json:
        print(json.dumps([i.to_dict() for i in infos], indent=2, default=str))
        return 0
    if not infos:
        print(f"no music models installed in {root} (a model is a folder with model.safetensors, config.json "
              f"and tokenizer.json; train one with `cadenza train`, or pass --model DIR to the music commands)")
        return 0
    print(f"music models in {root} (* = default):")
    for i in infos:
        c = i.config
        params = f"{i.parameters / 1e6:.2f}M params" if i.parameters else "? params"
        arch = (f"{c.get('n_layers', '?')} layers x d{c.get('d_model', '?')}, {c.get('attention', '?')} attention, "
                f"context {c.get('max_len', '?')}")
        print(f"{'*' if i.is_default else ' '} {i.name}: {params}, {arch}, {i.size_mb:.1f} MB"
              + (f"  [{i.problem}]" if i.problem else ""))
        if i.title:
            print(f"    {i.title}")
        for k, v in _flat_metrics(i.metrics)[:args.max_metrics]:
            print(f"    {k}: {v}")
        print(f"    {i.path}")
    return 0


def _flat_metrics(d: dict, prefix: str = "") -> list:
    out = []
    for k, v in d.items():
        name = f"{prefix}{k}"
        if isinstance(v, dict):
            out += _flat_metrics(v, name + ".")
        elif isinstance(v, float):
            out.append((name, f"{v:.4g}"))
        elif isinstance(v, (int, str, bool)) or v is None:
            out.append((name, str(v)))
    return out


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "models", help="list the installed music models and their metrics",
        description="List the music models installed in the repository's models/ folder (or --dir): size, "
                    "architecture, the title of the model card and the held-out metrics from metrics.json (or "
                    "the 'metrics' entry of config.json). The default model, used when --model is not given, "
                    "is marked with *.")
    p.add_argument("--dir", metavar="DIR", help="folder of model directories (default: models/ of the repository)")
    p.add_argument("--json", action="store_true", help="print everything as JSON")
    p.add_argument("--max-metrics", type=int, default=12, metavar="N", help="metrics to show per model (default 12)")
    p.set_defaults(func=_models)
