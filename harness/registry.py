"""A generic name -> plug-in registry.

Entries are either objects registered with a decorator or lazy ``"module:attr"`` strings that are imported only
when the name is looked up, so that listing names never imports heavy dependencies (transformers, onnx).
Third-party plug-ins can be added through a Python entry-point group.
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Callable, Iterator
from importlib import metadata
from typing import Generic, TypeVar

T = TypeVar("T")


class RegistryError(KeyError):
    """Unknown or duplicate registry name. ``str()`` gives the full message (KeyError would quote it)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class Registry(Generic[T]):
    """Maps names to plug-ins of one kind (workload, compressor, backend, dataset)."""

    def __init__(self, kind: str, entry_point_group: str | None = None) -> None:
        self.kind = kind
        self._entries: dict[str, T | str] = {}
        self._entry_point_group = entry_point_group
        self._entry_points_loaded = False
        self.shadowed: list[str] = []  # plug-ins refused because they reuse a registered name

    def register(self, name: str, obj: T | None = None) -> Callable[[T], T] | T:
        """Register ``obj`` under ``name``; used bare or as a decorator. Duplicate names raise."""
        if obj is not None:
            self._add(name, obj)
            return obj

        def decorator(target: T) -> T:
            self._add(name, target)
            return target

        return decorator

    def register_lazy(self, name: str, target: str) -> None:
        """Register ``"package.module:attr"``, imported on first :meth:`get`."""
        if ":" not in target:
            raise ValueError(f"Lazy {self.kind} entry {target!r} must look like 'package.module:attr'")
        self._add(name, target)

    def _add(self, name: str, obj: T | str) -> None:
        if name in self._entries:
            existing = self._entries[name]
            if existing is obj or (isinstance(existing, str) and not isinstance(obj, str)):
                # a lazy entry being resolved by its own module's decorator
                self._entries[name] = obj
                return
            raise RegistryError(f"Duplicate {self.kind} name {name!r}: already registered as {existing!r}")
        self._entries[name] = obj

    def _load_entry_points(self) -> None:
        if self._entry_points_loaded or self._entry_point_group is None:
            return
        self._entry_points_loaded = True
        for ep in metadata.entry_points(group=self._entry_point_group):
            if ep.name in self._entries:  # a built-in name is never replaced by a plug-in
                source = getattr(ep.dist, "name", None) or "an unknown distribution"
                self.shadowed.append(f"plug-in {self.kind} {ep.name!r} ({ep.value}, from {source}) reuses a built-in "
                                     "name and is ignored; rename it in its entry point")  # fmt: skip
                continue
            self._entries[ep.name] = ep.value

    def get(self, name: str) -> T:
        """Return the plug-in for ``name``; unknown names raise with close matches and the full list, and a lazy
        entry that cannot be imported raises :class:`RegistryError` naming it and the import error."""
        self._load_entry_points()
        if name not in self._entries:
            raise RegistryError(self.unknown_message(name))
        entry = self._entries[name]
        if isinstance(entry, str):
            module_name, attr = entry.split(":", 1)
            try:
                obj = getattr(importlib.import_module(module_name), attr)
            except (ImportError, AttributeError, SyntaxError) as exc:
                raise RegistryError(
                    f"{self.kind} {name!r} ({entry}) cannot be loaded: {type(exc).__name__}: {exc}"
                ) from exc
            self._entries[name] = obj
            return obj
        return entry

    def unknown_message(self, name: str) -> str:
        names = self.names()
        close = difflib.get_close_matches(name, names, n=3, cutoff=0.6)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        return f"Unknown {self.kind} {name!r}.{hint} Available: {', '.join(names)}"

    def names(self, pattern: str | None = None) -> list[str]:
        """Sorted names, optionally filtered by a shell-style pattern (``'resnet*'``)."""
        import fnmatch

        self._load_entry_points()
        names = sorted(self._entries)
        return [n for n in names if pattern is None or fnmatch.fnmatch(n, pattern)]

    def __contains__(self, name: object) -> bool:
        self._load_entry_points()
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self.names())
