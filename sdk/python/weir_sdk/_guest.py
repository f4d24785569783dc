"""The WIT exports (world ``transformer`` or ``validator`` of ``weir:plugin``), over the
plugin's exported class. Imported only inside a component: ``wit_world`` and
``componentize_py_types`` are the bindings componentize-py generates at build time.
Everything is imported at the top: componentize-py snapshots the interpreter after the
build-time imports, and a component has no files to import more from later.

``host plugin build`` writes the module componentize-py starts from; it imports the
plugin's module (which runs its ``@export``) and then calls :func:`bind`.
"""

import io
import json
import sys

from componentize_py_types import Err
from wit_world.imports.types import CheckResult, ErrorKind, Validation
from wit_world.imports.types import PluginError as WitError

from . import PluginError, Transform, Validator, exported, ipc

# The one plugin object of this instance, made by `init`.
_plugin = None


class _Tail(io.TextIOBase):
    """Where ``print`` goes: the component has no stdout (writing to it would trap), so
    the last lines are kept and added to the error if the call fails."""

    def __init__(self):
        self.text = ""

    def writable(self) -> bool:
        return True

    def write(self, s: str) -> int:
        self.text = (self.text + s)[-1000:]
        return len(s)


_output = _Tail()
sys.stdout = sys.stderr = _output


def _error(kind: str, message: str):
    kinds = {
        "invalid-config": ErrorKind.INVALID_CONFIG,
        "invalid-input": ErrorKind.INVALID_INPUT,
    }
    return Err(WitError(kinds.get(kind, ErrorKind.INTERNAL), message))


def _describe(e: BaseException) -> str:
    """``ValueError: … (app.py:12, in transform)``: the type, message and the plugin's
    innermost line, which is what a plugin author needs to find it. The traceback is walked
    by hand: `traceback` reads source files, and a component has no file system (reading
    one traps)."""
    where = ""
    tb = e.__traceback__
    while tb is not None:
        code = tb.tb_frame.f_code
        if "weir_sdk" not in code.co_filename:
            name = code.co_filename.replace("\\", "/").rsplit("/", 1)[-1]
            where = f" ({name}:{tb.tb_lineno}, in {code.co_name})"
        tb = tb.tb_next
    return f"{type(e).__name__}: {e}{where}"


def _call(default_kind: str, run):
    """Run ``run()``; any exception becomes the WIT error the host reports."""
    _output.text = ""
    try:
        return run()
    except Err:
        raise
    except PluginError as e:
        raise _error(e.kind, str(e)) from None
    except ipc.IpcError as e:
        raise _error(default_kind, f"Arrow IPC: {e}") from None
    except Exception as e:  # noqa: BLE001 — every failure must reach the host as a result
        printed = _output.text.strip()
        suffix = f"; it printed: {printed}" if printed else ""
        raise _error("internal", _describe(e) + suffix) from None


def _init(config: str):
    global _plugin
    cls = exported()

    def run():
        global _plugin
        try:
            settings = json.loads(config) if config.strip() else {}
        except ValueError as e:
            raise _error("invalid-config", f"the settings are not JSON: {e}") from None
        plugin = cls()
        plugin.init(settings)
        _plugin = plugin

    _plugin = None
    _call("invalid-config", run)


def _get():
    if _plugin is None:
        raise _error("internal", "the host called the plugin before init")
    return _plugin


class _Transform:
    def init(self, config: str) -> None:
        _init(config)

    def output_schema(self, input_schema: bytes) -> bytes:
        plugin = _get()
        return _call(
            "invalid-input",
            lambda: ipc.write_schema(plugin.output_schema(ipc.read_schema(input_schema))),
        )

    def transform(self, batch: bytes) -> bytes:
        plugin = _get()

        def run():
            table = ipc.read_table(batch)
            out = plugin.transform(table)
            if out is None or not hasattr(out, "schema"):
                raise TypeError(f"transform returned {type(out).__name__}, not a Table")
            return ipc.write_table(out)

        return _call("invalid-input", run)


class _Validate:
    def init(self, config: str) -> None:
        _init(config)

    def validate(self, batch: bytes):
        plugin = _get()

        def run():
            checks = plugin.validate(ipc.read_table(batch))
            return Validation(
                [
                    CheckResult(c.name, bool(c.passed), c.message, [int(r) for r in c.failing_rows])
                    for c in checks
                ]
            )

        return _call("invalid-input", run)


def bind(module, world: str) -> type:
    """The export class for ``world``, after checking that ``module`` exported a plugin
    of the matching kind. Runs at build time, so a mistake fails the build."""
    cls = exported()
    want = Transform if world == "transformer" else Validator
    if cls is None:
        candidates = [
            v
            for v in vars(module).values()
            if isinstance(v, type) and issubclass(v, want) and v not in (Transform, Validator)
        ]
        if len(candidates) != 1:
            raise TypeError(
                f"{module.__name__}.py exports no plugin: mark your {want.__name__} subclass "
                f"with @weir_sdk.export"
            )
        cls = candidates[0]
        from . import export

        export(cls)
    if not issubclass(cls, want):
        raise TypeError(
            f"{cls.__name__} is not a weir_sdk.{want.__name__}, but the plugin's world is "
            f"`{world}` (weir-plugin.toml)"
        )
    return _Transform if world == "transformer" else _Validate
