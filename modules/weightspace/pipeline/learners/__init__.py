"""The named learners, one module each; every module here is imported with this package and registers itself.

Adding a learner is adding one module with a builder decorated with
``@register_learner(name, schedules=...)`` (`weightspace.pipeline.learners.registry`); every command and
experiment folder then accepts its name.
"""

import importlib
import pkgutil

from weightspace.pipeline.learners.registry import (
    LearnerSpec,
    create_learner,
    learner_options,
    learner_schedules,
    list_learners,
    register_learner,
)

for _module in pkgutil.iter_modules(__path__):  # sorted by name
    if _module.name != "registry":
        importlib.import_module(f"{__name__}.{_module.name}")

__all__ = ["LearnerSpec", "create_learner", "learner_options", "learner_schedules", "list_learners",
           "register_learner"]
