"""What the dispatcher and the workers agree on: settings, task catalogue, wire format, key names."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from common.catalogue import Catalogue, TaskDefinition, default_catalogue, task
    from common.settings import Settings

__all__ = ["Catalogue", "Settings", "TaskDefinition", "default_catalogue", "task"]

_FROM_CATALOGUE = {"Catalogue", "TaskDefinition", "default_catalogue", "task"}


def __getattr__(name: str) -> Any:
    # Loaded on first use, not with the package: both CLIs build their options from common.settings
    # at start, and the catalogue with its built-in tasks is most of the package's import time.
    if name in _FROM_CATALOGUE:
        from common import builtin_tasks, catalogue

        del builtin_tasks  # imported for what it does: it registers the built-in tasks

        return getattr(catalogue, name)
    if name == "Settings":
        from common.settings import Settings

        return Settings
    raise AttributeError(f"module 'common' has no attribute {name!r}")
