"""`cadenza train`: thin argument parsing over :func:`cadenza.train.train`."""

from __future__ import annotations

import json
import os

from cadenza.errors import ConfigError


def _override(text: str):
    if "=" not in text:
        raise ConfigError(f"--set expects KEY=VALUE (a ModelConfig field), got {text!r}")
    key, value = text.split("=", 1)
    try:
        value = json.loads(value)
    except json.JSONDecodeError:
        pass  # a bare string such as attention=dense
    return key.strip(), value


def _run(args) -> int:
    from cadenza.train import TrainConfig, train

    overrides = dict(_override(s) for s in args.set or [])
    cfg = TrainConfig(
        data=args.data, out=args.out, preset=args.preset, model_config=args.config, init=args.init,
        model_overrides=overrides, resume=args.resume, steps=args.steps, batch_size=args.batch_size,
        seq_len=args.seq_len, grad_accum=args.grad_accum, lr=args.lr, min_lr_ratio=args.min_lr_ratio,
        warmup_steps=args.warmup_steps, weight_decay=args.weight_decay, grad_clip=args.grad_clip,
        eval_every=args.eval_every, eval_windows=args.eval_windows, save_every=args.save_every,
        keep_last=args.keep_last, seed=args.seed, precision="bf16" if args.bf16 else args.precision,
        activation_checkpointing=True if args.activation_checkpointing else None,
        fsdp=True if args.fsdp else None, log_every=args.log_every, max_bad_steps=args.max_bad_steps,
        transpose=args.transpose, piece_windows=False if args.no_piece_windows else None,
        stop_after=args.stop_after, max_time_s=args.max_time, device=args.device,
        progress=not args.no_progress, tensorboard=not args.no_tensorboard,
    )
    result = train(cfg)
    if os.environ.get("RANK", "0") != "0":  # under torchrun only rank 0 reports
        return 130 if result.interrupted else 0
    if result.reason == "already_done":
        return 0
    ev = f"; held-out {result.eval_loss:.4f} {result.unit}" if result.eval_loss is not None else ""
    print(f"{result.reason}: step {result.step} of {result.steps}{ev}")
    print(f"checkpoint: {result.checkpoint}")
    if result.model_dir:
        print(f"model: {result.model_dir}")
    if result.interrupted:
        print("continue with the same command plus --resume")
        return 130
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "train", help="train a Sparse Transformer on a token dataset",
        description="Train on DATA_DIR (from `cadenza data ...`), writing checkpoints, metrics.jsonl, "
                    "TensorBoard logs and the final model into RUN_DIR. Run under "
                    "`torchrun --nproc_per_node=N -m cadenza train ...` for data-parallel training. "
                    "Options not given on --resume are taken from the run being resumed.")
    p.add_argument("--data", required=True, metavar="DATA_DIR")
    p.add_argument("--out", required=True, metavar="RUN_DIR")
    model = p.add_mutually_exclusive_group()
    model.add_argument("--preset", metavar="NAME", help="a named model size (tiny, small, ...)")
    model.add_argument("--config", metavar="FILE.json", help="a ModelConfig as JSON")
    model.add_argument("--init", metavar="MODEL_DIR",
                       help="fine-tune: start from this model's weights and shape (the data must be built with "
                            "its tokenizer: cadenza data midi DIR --tokenizer MODEL_DIR)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="change one model config field, e.g. --set attention=dense (repeatable)")
    p.add_argument("--steps", type=int, help="total optimizer steps (default 1000)")
    p.add_argument("--batch-size", type=int, help="global batch: windows per step over all processes (default 8)")
    p.add_argument("--seq-len", type=int, help="window length T (default: the model's max_len)")
    p.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in RUN_DIR")
    p.add_argument("--grad-accum", type=int, help="micro-batches per step (default 1)")
    p.add_argument("--lr", type=float, help="peak learning rate (default 6e-4)")
    p.add_argument("--min-lr-ratio", type=float, help="final lr as a fraction of the peak (default 0.1)")
    p.add_argument("--warmup-steps", type=int, help="linear warm-up steps (default min(100, steps/10))")
    p.add_argument("--weight-decay", type=float, help="AdamW weight decay (default 0.01)")
    p.add_argument("--grad-clip", type=float, help="gradient norm clip, 0 for none (default 1.0)")
    p.add_argument("--eval-every", type=int, help="evaluate on the held-out split every K steps (default 100)")
    p.add_argument("--eval-windows", type=int, help="held-out windows per evaluation, 0 for all (default 64)")
    p.add_argument("--save-every", type=int, help="checkpoint every K steps (default 100)")
    p.add_argument("--keep-last", type=int, help="step checkpoints to keep, plus best.pt (default 3)")
    p.add_argument("--seed", type=int, help="seed for the model, data windows and dropout (default 0)")
    p.add_argument("--precision", choices=["fp32", "bf16", "fp16"],
                   help="fp32 (default), bf16 autocast, or fp16 autocast with loss scaling on CUDA (bf16 on the CPU)")
    p.add_argument("--bf16", action="store_true", help="same as --precision bf16")
    p.add_argument("--activation-checkpointing", action="store_true", help="recompute activations in backward")
    p.add_argument("--fsdp", action="store_true", help="shard the model with FSDP2 (under torchrun, N >= 2)")
    p.add_argument("--log-every", type=int, help="write a train metrics record every K steps (default 1)")
    p.add_argument("--transpose", type=int, metavar="SEMITONES",
                   help="music data: transpose each window by a random -S..S-1 semitones, 0 for none (default 6)")
    p.add_argument("--no-piece-windows", action="store_true",
                   help="music data: random windows over all pieces laid end to end instead of one piece per window")
    p.add_argument("--max-bad-steps", type=int, help="stop after this many non-finite steps in a row (default 5)")
    p.add_argument("--stop-after", type=int, metavar="N", help="stop (and save) after N steps in this session")
    p.add_argument("--max-time", type=float, metavar="SECONDS", help="stop (and save) after this much training time")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--no-tensorboard", action="store_true", help="no TensorBoard event files")
    p.set_defaults(func=_run)
