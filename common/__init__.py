"""What the dispatcher and the workers agree on: settings, task catalogue, wire format, key names."""

from common import builtin_tasks as _builtin_tasks  # registers the built-in tasks
from common.catalogue import Catalogue, TaskDefinition, default_catalogue, task
from common.settings import Settings

__all__ = ["Catalogue", "Settings", "TaskDefinition", "default_catalogue", "task"]

del _builtin_tasks
