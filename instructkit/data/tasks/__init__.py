"""FLAN/T0 task system: tasks and templates as data, formats, mixtures, held-out clusters."""

from instructkit.data.tasks.task import Task, builtin_tasks, load_task, load_tasks
from instructkit.data.tasks.template import Template

__all__ = ["Task", "Template", "builtin_tasks", "load_task", "load_tasks"]
