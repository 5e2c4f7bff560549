"""The training engine: ``train()``, its config, checkpoints, schedule, metrics, DDP/FSDP.

Modules: ``config`` (TrainConfig), ``prepare`` (every input checked before anything is built),
``loop`` (train() and the ``Trainer``: step, evaluate, save, resume), ``build`` (the
model's starting weights, AdamW's groups, the data sampler), ``stop`` (Ctrl-C),
``precision`` (autocast and loss scaling), ``evaluate`` (the held-out loss), ``checkpoint`` (atomic checkpoints), ``schedule`` (warm-up + cosine), ``metrics``
(metrics.jsonl + TensorBoard), ``distributed`` (torchrun process groups, DDP, FSDP2), ``plot``
(loss-curve PNGs).
"""

from cadenza.train.config import DEFAULTS, TrainConfig
from cadenza.train.loop import Trainer, TrainingDiverged, TrainResult, loss_fn, train

__all__ = ["DEFAULTS", "TrainConfig", "TrainResult", "Trainer", "TrainingDiverged", "loss_fn", "train"]
