"""Small explicit registries: a name maps to one entry, duplicates are refused.

Modelled on torchvision's ``register_model``/``get_model``: a new activation, encoding,
supervision, built-in dataset or task is one registration, and an unknown name fails with
the list of the known ones.
"""

from __future__ import annotations

from typing import Callable, Dict, Generic, Iterator, List, Optional, TypeVar

from sobolev.errors import ConfigError

T = TypeVar("T")


class Registry(Generic[T]):
    """A named table of entries of one kind (``kind`` appears in error messages).

    ``load``, if given, is called once before the first lookup: it imports the modules that
    register the built-in entries (so a registry can live below the modules that fill it).
    """

    def __init__(self, kind: str, load: Optional[Callable[[], None]] = None) -> None:
        self.kind = kind
        self._entries: Dict[str, T] = {}
        self._load = load

    def _loaded(self) -> Dict[str, T]:
        if self._load is not None:
            load, self._load = self._load, None
            load()
        return self._entries

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator that adds ``obj`` under ``name``; a second entry of the same name is an error."""

        def decorator(obj: T) -> T:
            if name in self._entries:
                raise ValueError(f"{self.kind} {name!r} is already registered")
            self._entries[name] = obj
            return obj

        return decorator

    def unregister(self, name: str) -> T:
        """Remove and return the entry ``name`` (a plugin or a test that registered it for a while)."""
        return self._loaded().pop(name)

    def get(self, name: str) -> T:
        """The entry called ``name``, or a :class:`ConfigError` that lists the known names."""
        try:
            return self._loaded()[name]
        except (KeyError, TypeError):
            raise ConfigError(f"unknown {self.kind} {name!r}; known: {', '.join(self.names())}") from None

    def names(self) -> List[str]:
        """The known names, sorted."""
        return sorted(self._loaded())

    def in_order(self) -> List[str]:
        """The known names in the order they were registered."""
        return list(self._loaded())

    def __contains__(self, name: object) -> bool:
        return name in self._loaded()

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())
