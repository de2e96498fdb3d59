"""The contract between the trainer and the things it trains.

The trainer (``audiossl.train``) knows nothing of BEATs or EAT. A *task* tells it how to build a
*training model* (:class:`audiossl.models.abs_train_model.AbsTrainModel`, whose docstring also says
what a batch holds) from the config's ``model:`` section and what the data says
(:class:`audiossl.data.dataset.DataInfo`).

A task is a class of classmethods registered by name (``@register_task("eat_pretrain")``); its
``ModelConfig`` dataclass receives the ``model:`` section of the YAML config.
"""
from __future__ import annotations

import abc
from typing import Any, ClassVar

from torch import nn

from audiossl.data.dataset import DataInfo
from audiossl.models.abs_train_model import AbsTrainModel

TASKS: dict[str, type["AbsTask"]] = {}


def register_task(name: str):
    """Class decorator: make a task available as ``task: <name>`` in configs."""

    def wrap(cls):
        assert name not in TASKS, f"task {name!r} registered twice"
        cls.name = name
        TASKS[name] = cls
        return cls

    return wrap


def get_task(name: str) -> type["AbsTask"]:
    """The task registered as ``name``; imports the built-in tasks on first use."""
    import audiossl.tasks.registry  # noqa: F401  (registers the built-in tasks)

    if name not in TASKS:
        raise KeyError(f"unknown task {name!r}; known tasks: {', '.join(sorted(TASKS))}")
    return TASKS[name]


class AbsTask(abc.ABC):
    """A thing we train. Classmethods only."""

    name: ClassVar[str] = ""
    ModelConfig: ClassVar[type]  # a dataclass; the config's ``model:`` section is loaded into it

    @classmethod
    @abc.abstractmethod
    def build_model(cls, model_cfg: Any, data_info: DataInfo) -> AbsTrainModel:
        """A fresh training model (weights initialised, or loaded from model_cfg's init file)."""

    @classmethod
    def build_encoder(cls, model_cfg: Any) -> nn.Module:
        """The encoder alone (an ``AbsEncoder``) as it sits at ``<training model>.encoder``;
        fine-tuning loads ``encoder.*`` keys of a model.pt from this task into it."""
        raise NotImplementedError(f"task {cls.name!r} has no encoder to fine-tune")
