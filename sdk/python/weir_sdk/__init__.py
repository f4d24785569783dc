"""Write Weir plugins in Python.

A transform is a class with ``init(config)`` and ``transform(table) -> table``, marked with
``@export``::

    from weir_sdk import Transform, Table, export

    @export
    class Upper(Transform):
        def transform(self, table: Table) -> Table:
            ...

``host plugin build`` turns the project into a WebAssembly component; the SDK supplies the
WIT exports and the Arrow IPC codec, so a plugin has neither.

Raise :class:`InvalidConfig` or :class:`InvalidInput` for errors the user should fix; any
other exception reaches the host as an ``internal`` error with its type, message and line.
"""

from typing import List, Optional, Type

from .table import (
    BOOLEAN,
    DATE32,
    FLOAT32,
    FLOAT64,
    INT8,
    INT16,
    INT32,
    INT64,
    UINT8,
    UINT16,
    UINT32,
    UINT64,
    UTF8,
    DataType,
    Field,
    Schema,
    Table,
    timestamp,
)

__version__ = "0.1.0"

__all__ = [
    "Transform",
    "Validator",
    "Check",
    "export",
    "PluginError",
    "InvalidConfig",
    "InvalidInput",
    "DataType",
    "Field",
    "Schema",
    "Table",
    "timestamp",
    "INT8",
    "INT16",
    "INT32",
    "INT64",
    "UINT8",
    "UINT16",
    "UINT32",
    "UINT64",
    "FLOAT32",
    "FLOAT64",
    "UTF8",
    "BOOLEAN",
    "DATE32",
]


class PluginError(Exception):
    """An error the plugin reports on purpose; ``kind`` is the WIT ``error-kind``."""

    kind = "internal"


class InvalidConfig(PluginError):
    """The step's settings (the ``config`` given to ``init``) are unusable."""

    kind = "invalid-config"


class InvalidInput(PluginError):
    """The batch does not have the columns or types the plugin needs."""

    kind = "invalid-input"


class Transform:
    """A transform: one table in, one table out. Subclass it and mark it ``@export``."""

    def init(self, config: dict) -> None:
        """Called once per step, with the step's settings (``{}`` when there are none)."""

    def transform(self, table: Table) -> Table:
        raise NotImplementedError("a Transform must define transform(self, table)")

    def output_schema(self, schema: Schema) -> Schema:
        """The schema produced for input of ``schema``. The default runs ``transform`` on
        an empty table; override it if that does not give the right answer."""
        return self.transform(Table.empty(schema)).schema


class Check:
    """The outcome of one named check over one batch."""

    __slots__ = ("name", "passed", "message", "failing_rows")

    def __init__(self, name: str, passed: bool, message: str, failing_rows: List[int]):
        self.name = name
        self.passed = passed
        self.message = message
        self.failing_rows = failing_rows

    @staticmethod
    def rows(name: str, failing_rows: List[int], what: str) -> "Check":
        """A check over rows: it passes when ``failing_rows`` is empty."""
        n = len(failing_rows)
        message = f"{n} rows {what}" if n else "ok"  # as the Rust SDK words it
        return Check(name, not failing_rows, message, list(failing_rows))


class Validator:
    """A validator: one table in, named checks out. Subclass it and mark it ``@export``."""

    def init(self, config: dict) -> None:
        """As :meth:`Transform.init`."""

    def validate(self, table: Table) -> List[Check]:
        raise NotImplementedError("a Validator must define validate(self, table)")


_exported: Optional[type] = None


def export(cls: Type) -> Type:
    """Mark ``cls`` (a :class:`Transform` or :class:`Validator` subclass) as the plugin."""
    global _exported
    if not (isinstance(cls, type) and issubclass(cls, (Transform, Validator))):
        raise TypeError("@export takes a subclass of weir_sdk.Transform or weir_sdk.Validator")
    if _exported is not None and _exported is not cls:
        raise TypeError(
            f"a plugin exports one class: {_exported.__name__} is already exported, "
            f"so {cls.__name__} cannot be"
        )
    _exported = cls
    return cls


def exported() -> Optional[type]:
    return _exported
