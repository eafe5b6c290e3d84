"""A small generic registry with did-you-mean errors, used for every family of named things.

Examples:
    >>> from noisyclip_metrics.registry import Registry
    >>> colours = Registry("colour")
    >>> @colours.register("red")
    ... def _red():
    ...     return (255, 0, 0)
    >>> colours.get("red")()
    (255, 0, 0)
    >>> colours.get("rde")
    Traceback (most recent call last):
    ...
    noisyclip_metrics.errors.UnknownNameError: unknown colour 'rde'; did you mean 'red'? Available: red
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from noisyclip_metrics.errors import UnknownNameError

__all__ = ["Registry", "did_you_mean"]

T = TypeVar("T")


def did_you_mean(name: str, choices: list[str] | tuple[str, ...]) -> str:
    """Return ``"; did you mean 'x'?"`` for the closest choice, or ``""`` when nothing is close."""
    close = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.5)
    return f"; did you mean {close[0]!r}?" if close else ""


class Registry(Generic[T]):
    """Maps names to objects (classes, factories, specs). Registration order is kept for listings.

    Args:
        kind: human-readable name of what is registered, used in error messages ("scorer", "preview map").
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str, obj: T | None = None) -> Callable[[T], T] | T:
        """Register ``obj`` under ``name``; without ``obj`` return a decorator.

        Raises:
            ValueError: if ``name`` is empty, has outer whitespace, or is already taken by another object.
        """
        if not isinstance(name, str) or not name or name != name.strip():
            raise ValueError(f"{self.kind} name must be a non-empty string without outer spaces, got {name!r}")

        def _add(item: T) -> T:
            if name in self._items and self._items[name] is not item:
                raise ValueError(f"{self.kind} {name!r} is already registered")
            self._items[name] = item
            return item

        return _add if obj is None else _add(obj)

    def get(self, name: str) -> T:
        """Return the object registered under ``name``.

        Raises:
            UnknownNameError: naming the closest registered name and listing all of them.
        """
        try:
            return self._items[name]
        except (KeyError, TypeError):
            names = list(self._items)
            raise UnknownNameError(
                f"unknown {self.kind} {name!r}{did_you_mean(str(name), names)} Available: {', '.join(names)}"
            ) from None

    def names(self) -> list[str]:
        """Registered names in registration order."""
        return list(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)
