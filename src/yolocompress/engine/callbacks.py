"""The trainer's extension points. Sparse training and distillation are callbacks; the loop never knows them.

Order within one iteration:
  1. `capture_layers()` (asked once at start): layer indices whose outputs the callback needs; the trainer
     runs `model(imgs, capture=...)` and passes them in `StepOutputs.features`.
  2. `loss_terms(trainer, out)`: extra loss terms for this batch, name -> scalar tensor. They are added to the
     detection loss (times the batch size, like it), shown in the progress bar and written to results.csv and
     TensorBoard under their names.
  3. backward.
  4. `after_backward(trainer)`: at each optimizer step, after AMP unscaling and before gradient clipping
     (regularisers add to `.grad` here).
  5. `on_epoch_end(trainer, epoch)`: returns extra columns for results.csv (e.g. BN sparsity), may write plots.
`extra_parameters()` contributes trainable modules' parameters to the optimizer (distillation adapters);
`state_dict()`/`load_state_dict()` let a resumed run continue a callback's state.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass
class StepOutputs:
    imgs: torch.Tensor
    targets: torch.Tensor
    raw: list
    features: dict = field(default_factory=dict)
    epoch: int = 0
    iteration: int = 0  # global iteration since the start of training
    total_iterations: int = 1


class Callback:
    name = "callback"
    # True when the callback compares the head's raw outputs with another model's, so AutoAnchor must not
    # re-fit the student's anchors (a raw w/h output means something else under other anchors)
    fixes_anchors = False

    def capture_layers(self) -> list[int]:
        return []

    def extra_parameters(self) -> list:
        return []

    def on_train_start(self, trainer) -> None:
        pass

    def loss_terms(self, trainer, out: StepOutputs) -> dict:
        return {}

    def after_backward(self, trainer) -> None:
        pass

    def on_epoch_end(self, trainer, epoch: int) -> dict:
        return {}

    def on_train_end(self, trainer) -> None:
        pass

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass
