"""Imports every module of the ``audiossl.tasks`` package so that each task registers itself.

Adding a task is adding a file ``audiossl/tasks/<name>.py`` with a class decorated by
``@register_task("<name>")``; :func:`audiossl.tasks.abs_task.get_task` imports this module first.
"""
from __future__ import annotations

import importlib
import pkgutil

import audiossl.tasks as _tasks_pkg

_SKIP = {"abs_task", "registry"}


def import_all_tasks() -> list[str]:
    """Import every module of audiossl.tasks (sub-packages included); returns the module names."""
    names = []
    for info in pkgutil.walk_packages(_tasks_pkg.__path__, prefix=f"{_tasks_pkg.__name__}."):
        if info.name.rsplit(".", 1)[-1] in _SKIP:
            continue
        try:
            importlib.import_module(info.name)
        except Exception as e:
            raise ImportError(f"task module {info.name} failed to import ({type(e).__name__}: {e}); fix or remove it") from e
        names.append(info.name)
    return names


import_all_tasks()
