"""Argument types for the command line: a user mistake becomes one line naming the argument, exit code 2.

Each type checks its value when the command line is parsed, before anything starts (a missing plant
file is reported before InfluxDB is asked, a zero speed before servers start). Each also knows what a
wrong value for it looks like (:meth:`bad_values`): ``tests/test_cli_errors.py`` walks every
subcommand and feeds each argument those values.
"""

from __future__ import annotations

import argparse
import json
import math
import tomllib
from pathlib import Path
from typing import NoReturn


class OneLineParser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose errors are one line (``carbonedge demo: argument --speed: ...``), exit code 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message} (see {self.prog} --help)\n")


def _fail(msg: str) -> NoReturn:
    raise argparse.ArgumentTypeError(msg)


class InputFile:
    """An existing, readable file; ``kind`` "text", "json" or "toml" also checks it is UTF-8 text and parses
    ("config": JSON when the name ends in .json, else TOML)."""

    def __init__(self, kind: str = "text") -> None:
        self.kind = kind
        self.__name__ = f"{kind} file"

    def __call__(self, value: str) -> str:
        p = Path(value)
        if not p.exists():
            _fail(f"no such file: {value!r}")
        if p.is_dir():
            _fail(f"{value!r} is a directory, not a file")
        try:
            raw = p.read_bytes()
        except OSError as exc:
            _fail(f"cannot read {value!r}: {exc.strerror or exc}")
        if self.kind == "any":
            return value
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            _fail(f"{value!r} is not a UTF-8 text file (byte {exc.start}); save it as UTF-8")
        kind = ("json" if value.endswith(".json") else "toml") if self.kind == "config" else self.kind
        if kind == "json":
            try:
                json.loads(text)
            except ValueError as exc:
                _fail(f"{value!r} is not valid JSON: {exc}")
        elif kind == "toml":
            try:
                tomllib.loads(text)
            except tomllib.TOMLDecodeError as exc:
                _fail(f"{value!r} is not valid TOML: {exc}")
        return value

    def good_value(self, tmp: Path) -> str:
        f = tmp / f"good.{'toml' if self.kind == 'config' else self.kind}"
        f.write_text({"json": "{}", "toml": "", "config": "", "text": "x\n", "any": "x"}[self.kind])
        return str(f)

    def bad_values(self, tmp: Path) -> list[str]:
        (tmp / "a-directory").mkdir(exist_ok=True)
        (tmp / "latin1.txt").write_bytes("Schmelzofen \xe4\xf6\xfc = 1\n".encode("latin-1"))
        (tmp / "broken.json").write_text('{"site": ')
        (tmp / "broken.toml").write_text("[gateway\nsite = \n")
        out = [str(tmp / "no-such-file"), str(tmp / "a-directory")]
        if self.kind != "any":
            out.append(str(tmp / "latin1.txt"))
        if self.kind in ("json", "config"):
            out.append(str(tmp / "broken.json"))
        if self.kind in ("toml", "config"):
            out.append(str(tmp / "broken.toml"))
        return out


class InputDir:
    """An existing directory."""

    __name__ = "directory"

    def __call__(self, value: str) -> str:
        p = Path(value)
        if not p.exists():
            _fail(f"no such directory: {value!r}")
        if not p.is_dir():
            _fail(f"{value!r} is a file, not a directory")
        return value

    def good_value(self, tmp: Path) -> str:
        (tmp / "in-dir").mkdir(exist_ok=True)
        return str(tmp / "in-dir")

    def bad_values(self, tmp: Path) -> list[str]:
        (tmp / "plain-file").write_text("x")
        return [str(tmp / "no-such-dir"), str(tmp / "plain-file")]


class InputPath:
    """An existing directory, or an existing UTF-8 text file."""

    __name__ = "file or directory"

    def __call__(self, value: str) -> str:
        if Path(value).is_dir():
            return value
        return InputFile("text")(value)

    def good_value(self, tmp: Path) -> str:
        return InputDir().good_value(tmp)

    def bad_values(self, tmp: Path) -> list[str]:
        return [v for v in InputFile("text").bad_values(tmp) if not Path(v).is_dir()]


class OutputDir:
    """A directory to write into: created when missing, but not where a file stands, nor below one."""

    __name__ = "output directory"

    def __call__(self, value: str) -> str:
        p = Path(value)
        if p.exists() and not p.is_dir():
            _fail(f"{value!r} is a file, not a directory")
        for parent in p.absolute().parents:
            if parent.exists():
                if not parent.is_dir():
                    _fail(f"cannot create {value!r}: {str(parent)!r} is a file")
                break
        return value

    def good_value(self, tmp: Path) -> str:
        return str(tmp / "out-dir")

    def bad_values(self, tmp: Path) -> list[str]:
        (tmp / "plain-file").write_text("x")
        return [str(tmp / "plain-file"), str(tmp / "plain-file" / "sub")]


class OutputFile:
    """A file to write: its directory must exist, and it must not be a directory. ``new`` refuses an existing file."""

    def __init__(self, *, new: bool = False, parents: bool = False) -> None:
        self.new, self.parents = new, parents  # parents: missing directories are created (not below a file)
        self.__name__ = "output file"

    def __call__(self, value: str) -> str:
        p = Path(value)
        if p.is_dir():
            _fail(f"{value!r} is a directory, not a file")
        if self.new and p.exists():
            _fail(f"{value!r} exists already (never overwritten)")
        if self.parents:
            OutputDir()(str(p.absolute().parent))
        elif not p.absolute().parent.is_dir():
            _fail(f"directory {str(p.absolute().parent)!r} does not exist")
        return value

    def good_value(self, tmp: Path) -> str:
        return str(tmp / "out-file")

    def bad_values(self, tmp: Path) -> list[str]:
        (tmp / "a-directory").mkdir(exist_ok=True)
        (tmp / "plain-file").write_text("x")
        return [str(tmp / "a-directory"), str(tmp / "plain-file" / "file") if self.parents else str(tmp / "no-such-dir" / "file")]


class Time:
    """An ISO 8601 time (``Z`` or an offset; a naive time is UTC)."""

    __name__ = "time"

    def __call__(self, value: str) -> str:
        from carbonedge.clock import parse_time

        try:
            parse_time(value)
        except (ValueError, TypeError, OverflowError):
            _fail(f"not a date/time: {value!r} (use ISO 8601, e.g. 2026-01-05T06:00:00Z or 2026-01-05)")
        return value

    def good_value(self, tmp: Path) -> str:
        return "2026-01-05T00:00:00Z"

    def bad_values(self, tmp: Path) -> list[str]:
        return ["notadate", "yesterday", "2026-13-45", ""]


class Number:
    """An int or float within bounds; NaN and infinity are refused."""

    def __init__(self, kind: type = float, *, min: float | None = None, max: float | None = None, above: float | None = None) -> None:
        self.kind, self.min, self.max, self.above = kind, min, max, above
        self.__name__ = kind.__name__

    def __call__(self, value: str) -> int | float:
        try:
            x = self.kind(value)
        except ValueError:
            _fail(f"not {'a whole number' if self.kind is int else 'a number'}: {value!r}")
        if isinstance(x, float) and not math.isfinite(x):
            _fail(f"must be a finite number, not {value!r}")
        if self.above is not None and not x > self.above:
            _fail(f"must be greater than {self.above:g}, not {value}")
        if self.min is not None and x < self.min:
            _fail(f"must be at least {self.min:g}, not {value}")
        if self.max is not None and x > self.max:
            _fail(f"must be at most {self.max:g}, not {value}")
        return x

    def good_value(self, tmp: Path) -> str:
        lo = self.above if self.above is not None else self.min
        return str(self.kind((lo or 0) + 1))

    def bad_values(self, tmp: Path) -> list[str]:
        out = ["abc", "1,5"]
        if self.kind is float:
            out += ["nan", "inf"]
        else:
            out.append("1.5")
        if self.above is not None:
            out.append(str(self.kind(self.above)))
        if self.min is not None:
            out.append(str(self.kind(self.min - 1)))
        if self.above is not None or self.min is not None:
            out.append("-1")
        if self.max is not None:
            out.append(str(self.kind(self.max + 1)))
        return out


def positive(kind: type = float) -> Number:
    return Number(kind, above=0)


class Duration(Number):
    """90s, 15m, 24h, 7d (or plain seconds); more than zero."""

    def __init__(self) -> None:
        super().__init__(float, above=0)
        self.__name__ = "duration"

    def __call__(self, value: str) -> float:
        units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
        t = value.strip().lower()
        scale = 1
        if t and t[-1] in units:
            t, scale = t[:-1], units[t[-1]]
        try:
            x = float(t) * scale
        except ValueError:
            _fail(f"not a duration: {value!r} (use e.g. 90s, 15m, 24h, 7d)")
        if not math.isfinite(x) or x <= 0:
            _fail(f"must be a duration greater than zero, not {value!r}")
        return x

    def good_value(self, tmp: Path) -> str:
        return "2h"

    def bad_values(self, tmp: Path) -> list[str]:
        return ["abc", "0", "-1h", "nanh", "5x"]



def add_influx_auth(p: argparse.ArgumentParser) -> None:
    """``--influx-user``; its password comes from ``$CARBONEDGE_INFLUX_PASSWORD`` (never the command line)."""
    p.add_argument("--influx-user", help="InfluxDB user when authentication is on; its password is read from $CARBONEDGE_INFLUX_PASSWORD")


def influx_password(a: argparse.Namespace) -> str | None:
    """The InfluxDB password for ``--influx-user``, from ``$CARBONEDGE_INFLUX_PASSWORD``."""
    import os

    from carbonedge.errors import CarbonEdgeError

    if not getattr(a, "influx_user", None):
        return None
    pw = os.environ.get("CARBONEDGE_INFLUX_PASSWORD")
    if pw is None:
        raise CarbonEdgeError(f"--influx-user {a.influx_user} needs its password in the environment variable CARBONEDGE_INFLUX_PASSWORD")
    return pw
