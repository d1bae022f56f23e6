"""Optimizers, gradient clipping and learning-rate schedules with torch.optim's update rules.

One file per concern: the base class (optimizer.py), one per update rule, clip.py and
lr_scheduler.py. ``fastseq.optim.lr_scheduler`` mirrors ``torch.optim.lr_scheduler``.
"""
from . import lr_scheduler
from .adagrad import Adagrad
from .adam import Adam, AdamW
from .clip import clip_grad_norm_
from .lr_scheduler import CosineAnnealingLR, LRScheduler, StepLR
from .optimizer import Optimizer
from .rmsprop import RMSprop
from .sgd import SGD

__all__ = [
    "Optimizer", "SGD", "Adam", "AdamW", "RMSprop", "Adagrad",
    "clip_grad_norm_", "LRScheduler", "StepLR", "CosineAnnealingLR", "lr_scheduler",
]
