"""Name -> component registries, filled by a decorator where each component is defined.

    @register_estimator("rloo")            # latro/estimators.py
    @register_reward("covo", ...)          # latro/rewards/covo.py
    @register_task("gsm8k")                # latro/tasks/gsm8k.py
    @register_discriminator("prompt")      # latro/discriminators.py

A package whose every module registers something (rewards, tasks) imports its modules with
`import_all`, so adding one is one new file.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    """Named components of one kind. Iterates its names (in registration order, or sorted) so
    that it can serve as the `choices` of a setting and list what is known in an error."""

    def __init__(self, kind: str, sort: bool = False):
        self.kind, self.sort = kind, sort
        self._entries: dict[str, T] = {}

    def add(self, name: str, entry: T) -> T:
        if name in self._entries:
            raise ValueError(f"{self.kind} {name!r} is registered twice")
        self._entries[name] = entry
        return entry

    def remove(self, name: str) -> None:
        """Forget `name` (a component registered for one run or one test)."""
        del self._entries[name]

    def __getitem__(self, name: str) -> T:
        if name not in self._entries:
            raise ValueError(f"unknown {self.kind} {name!r}; known: {', '.join(self)}")
        return self._entries[name]

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._entries) if self.sort else self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def items(self) -> list[tuple[str, T]]:
        return [(name, self._entries[name]) for name in self]

    def decorator(self, name: str, make: Callable[[T], T] = lambda x: x) -> Callable[[T], T]:
        """A decorator that registers what it decorates (or `make` of it) under `name`."""
        def register(obj):
            self.add(name, make(obj))
            return obj
        return register


def import_all(package: str) -> None:
    """Import every module of a package, so that their registrations run."""
    for module in pkgutil.iter_modules(importlib.import_module(package).__path__):
        if not module.name.startswith("_"):
            importlib.import_module(f"{package}.{module.name}")
