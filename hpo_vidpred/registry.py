"""A small name -> factory registry (timm's ``@register_model`` habit), one instance per kind.

The CLI's ``--arch/--cell/--data`` choices and their error messages come from these registries.
"""

from __future__ import annotations

from typing import Callable, Generic, TypeVar

from .errors import HpoError

__all__ = ["Registry", "module_names"]

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps names to objects (classes or factories) of one kind, e.g. ``cells`` or ``archs``."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator: ``@CELLS.register("convlstm")``."""

        def add(obj: T) -> T:
            if name in self._items:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._items[name] = obj
            return obj

        return add

    def get(self, name: str) -> T:
        """The object registered under ``name``; an :class:`HpoError` listing the valid names if none."""
        try:
            return self._items[name]
        except KeyError:
            raise HpoError(
                f"unknown {self.kind} {name!r}; choose one of: {', '.join(self.names())}"
            ) from None

    def names(self) -> list[str]:
        return list(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items


def module_names(package: str) -> list[str]:
    """The public modules of ``package`` (``hpo_vidpred.archs``), without importing them: each
    registers itself under its module's name, so the command line lists the choices without
    loading PyTorch (``tests/test_layout.py`` checks that the names agree)."""
    import importlib.util
    import pkgutil

    spec = importlib.util.find_spec(package)
    locations = list(spec.submodule_search_locations or []) if spec else []
    return sorted(m.name for m in pkgutil.iter_modules(locations) if not m.name.startswith("_")
                  and not m.ispkg and m.name not in _NOT_REGISTERED.get(package, ()))


# modules of those packages that are helpers, not registered things
_NOT_REGISTERED = {"hpo_vidpred.data": ("batches",)}
