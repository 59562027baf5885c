"""Tasks: what each one trains on and how it is scored (registry), and the family implementations.

What a user's own task module needs is importable from here: `TaskSpec`, `TaskDataset`, `register_task`,
`register_file_format` (README: "Add your own task").
"""

from stilts_jax.data.task_sources.catalog import TaskDataset
from stilts_jax.tasks.registry import TASKS, TaskSpec, get_task, register_file_format, register_task

__all__ = ["TASKS", "TaskDataset", "TaskSpec", "get_task", "register_file_format", "register_task"]
