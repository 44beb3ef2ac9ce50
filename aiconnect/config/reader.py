# -*- test-case-name: tests.test_config -*-
"""
Reading one TOML table: L{Table} rejects the keys the table does not know
and has typed getters that name the dotted key (with array indices:
C{tenant[0].trunk[1].transport}) in every L{ConfigError}.

It knows TOML's types and nothing of what the keys mean; the meaning of a
value is L{aiconnect.config.values}, the keys of each section
L{aiconnect.config.sections}.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from aiconnect.errors import ConfigError


class _Missing:
    """
    Marker type of a key without default.
    """


_MISSING = _Missing()


class Table:
    """
    A TOML table being read: typed getters that name the dotted key in every
    error, and a check that every key present is known.

    @ivar path: The dotted path of the table (C{""} at the top).
    """

    def __init__(self, data: Mapping[str, Any], path: str, known: Sequence[str]) -> None:
        """
        @param data: The table's contents.
        @param path: Its dotted path.
        @param known: The keys it may hold.
        @raise ConfigError: Naming the first unknown key, if any.
        """
        self._data = data
        self.path = path
        for name in data:
            if name not in known:
                raise ConfigError(
                    self.key(name),
                    f"unknown key (known keys: {', '.join(known)})",
                )

    def key(self, name: str) -> str:
        """
        @param name: A key of this table.
        @return: Its dotted path.
        """
        return f"{self.path}.{name}" if self.path else name

    def has(self, name: str) -> bool:
        """
        @param name: A key of this table.
        @return: Whether the key is present.
        """
        return name in self._data

    def raw(self, name: str, default: Any = _MISSING) -> Any:
        """
        @param name: A key of this table.
        @param default: The value when absent; required if omitted.
        @return: The value as parsed by C{tomllib}.
        @raise ConfigError: If the key is absent and required.
        """
        if name in self._data:
            return self._data[name]
        if isinstance(default, _Missing):
            raise ConfigError(self.key(name), "required key is missing")
        return default

    def string(self, name: str, default: str | _Missing = _MISSING) -> str:
        """
        @return: A string value.
        """
        value = self.raw(name, default)
        if not isinstance(value, str):
            raise ConfigError(self.key(name), f"expected a string, got {_describe(value)}")
        return value

    def choice(self, name: str, choices: Sequence[str], default: str) -> str:
        """
        @return: A string value that is one of C{choices}.
        """
        value = self.string(name, default)
        if value not in choices:
            raise ConfigError(
                self.key(name),
                f"{value!r} is not one of {' | '.join(choices)}",
            )
        return value

    def boolean(self, name: str, default: bool) -> bool:
        """
        @return: A boolean value.
        """
        value = self.raw(name, default)
        if not isinstance(value, bool):
            raise ConfigError(self.key(name), f"expected true or false, got {_describe(value)}")
        return value

    def integer(self, name: str, default: int, low: int, high: int) -> int:
        """
        @return: An integer value in C{low..high}.
        """
        value = self.raw(name, default)
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(self.key(name), f"expected an integer, got {_describe(value)}")
        if not low <= value <= high:
            raise ConfigError(self.key(name), f"{value} is not in {low}..{high}")
        return value

    def port(self, name: str, default: int, allow_zero: bool = True) -> int:
        """
        @return: A port number, 0..65535 (1..65535 unless C{allow_zero}).
        """
        return self.integer(name, default, 0 if allow_zero else 1, 65535)

    def number(
        self, name: str, default: float, allow_zero: bool = False
    ) -> float:
        """
        @return: A finite number (integer or float in the file), positive
            (or zero when C{allow_zero}), as a float.
        """
        value = self.raw(name, default)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(self.key(name), f"expected a number, got {_describe(value)}")
        number = float(value)
        if not math.isfinite(number):
            raise ConfigError(self.key(name), f"{value} is not a finite number")
        if number < 0 or (number == 0 and not allow_zero):
            bound = ">= 0" if allow_zero else "> 0"
            raise ConfigError(self.key(name), f"{value} must be {bound}")
        return number

    def strings(self, name: str) -> list[tuple[str, str]]:
        """
        @return: A list of strings (empty when absent), each with the dotted
            key of its element (C{name[i]}).
        """
        value = self.raw(name, [])
        if not isinstance(value, list):
            raise ConfigError(self.key(name), f"expected an array of strings, got {_describe(value)}")
        result = []
        for i, item in enumerate(value):
            key = f"{self.key(name)}[{i}]"
            if not isinstance(item, str):
                raise ConfigError(key, f"expected a string, got {_describe(item)}")
            result.append((key, item))
        return result

    def table(self, name: str, known: Sequence[str]) -> Table:
        """
        @return: A sub-table (empty when absent).
        """
        value = self.raw(name, {})
        if not isinstance(value, dict):
            raise ConfigError(self.key(name), f"expected a table [{self.key(name)}], got {_describe(value)}")
        return Table(value, self.key(name), known)

    def tables(self, name: str, known: Sequence[str]) -> list[Table]:
        """
        @return: The elements of an array of tables (C{[[name]]}), empty
            when absent; element C{i} has the path C{name[i]}.
        """
        value = self.raw(name, [])
        if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
            raise ConfigError(
                self.key(name),
                f"expected an array of tables [[{self.key(name)}]], got {_describe(value)}",
            )
        return [Table(v, f"{self.key(name)}[{i}]", known) for i, v in enumerate(value)]


def _describe(value: object) -> str:
    """
    @return: The TOML type name of a parsed value, for error messages.
    """
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a float"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "a table"
    return "a date/time"

