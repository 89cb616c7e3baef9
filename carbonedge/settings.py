"""One way to configure every process: a TOML file, environment overrides, pydantic validation.

Every settings file (gateway, collector, simulator scenario, carbon) is a :class:`SettingsModel`
(``extra="forbid"``: a misspelt key is an error, never ignored) read by :func:`load`:

1. the TOML file, if one is given;
2. environment overrides, one rule for all: ``CARBONEDGE_<KIND>__<SECTION>__<KEY>=value``, keys joined
   by a double underscore, case-insensitive: ``CARBONEDGE_COLLECTOR__INFLUX__URL=http://db:8086``,
   ``CARBONEDGE_GATEWAY__MQTT__PORT=8883``. A value that starts with ``[`` or ``{`` is read as JSON,
   anything else is text that pydantic converts (``"8883"`` to a port number, ``"true"`` to a flag);
3. overrides from the command line (the process's flags, for tests and quick runs).

Secrets (passwords, private keys) are never read from the environment: settings name a file
(``password_file``, mode 0600) and the process reads it. An environment variable that would set a
secret is refused.

Problems are reported all at once, one line each, as ``source: key: reason``, where the source is
the file, the environment variable or the command-line flag the bad value came from::

    /etc/carbonedge/collector.toml: influx.url: Input should be a valid URL, relative URL without a base
    CARBONEDGE_COLLECTOR__MQTT__PORT (environment): mqtt.port: Input should be less than or equal to 65535

This module is part of the kernel: it depends on pydantic and the standard library only.
"""

from __future__ import annotations

import json
import os
import tomllib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from pydantic import AnyHttpUrl, BaseModel, ConfigDict, Field, ValidationError, model_validator

from carbonedge.errors import ConfigError

__all__ = ["SettingsError", "SettingsModel", "check", "env_overrides", "env_prefix", "format_errors", "load", "read_toml", "validate"]

M = TypeVar("M", bound=BaseModel)

#: Words in a key that mark it as a secret (never taken from the environment).
_SECRET_WORDS = ("password", "secret", "token")


class SettingsModel(BaseModel):
    """Base of every settings model (and of each of its sections): unknown keys are errors."""

    model_config = ConfigDict(extra="forbid")


class TlsFiles(SettingsModel):
    """``[mqtt.tls]`` of every process: the plant CA and, for brokers that require one, this process's client
    certificate and key (deploy/pki/carbonedge-pki.sh issues one per identity)."""

    #: The plant CA that signed the broker's certificate.
    ca_file: Path | None = None
    #: This process's client certificate and key; the certificate's CN is its MQTT identity.
    cert_file: Path | None = None
    key_file: Path | None = None

    @model_validator(mode="after")
    def _pair(self) -> TlsFiles:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("cert_file and key_file go together: set both for a client certificate, or neither")
        return self


class InfluxConnection(SettingsModel):
    """``[influx]`` of every process: where InfluxDB is and who this process is there."""

    url: AnyHttpUrl = AnyHttpUrl("http://127.0.0.1:8086")
    database: str = Field(default="carbonedge", pattern=r"^[A-Za-z0-9_]+$")
    #: This process's InfluxDB user when authentication is on (deploy/influxdb/setup-auth.sh makes one per role).
    username: str | None = None
    #: Its password, read from this file (mode 0600); only with ``username``.
    password_file: Path | None = None

    @model_validator(mode="after")
    def _password(self) -> InfluxConnection:
        if self.password_file is not None and not self.username:
            raise ValueError("password_file needs a username")
        return self


class SettingsError(ConfigError):
    """Settings that do not validate. ``problems`` holds every one, each a line ``source: key: reason``."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


def env_prefix(kind: str) -> str:
    """``CARBONEDGE_COLLECTOR__`` for kind ``collector``: the prefix of that kind's environment overrides."""
    return f"CARBONEDGE_{kind.upper()}__"


def read_toml(path: str | Path) -> dict[str, Any]:
    """A TOML file as a dict; a missing, unreadable or malformed file is one line naming it."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SettingsError([f"{path}: file not found"]) from None
    except IsADirectoryError:
        raise SettingsError([f"{path}: is a directory, not a settings file"]) from None
    except PermissionError:
        raise SettingsError([f"{path}: not readable by this user"]) from None
    except UnicodeDecodeError:
        raise SettingsError([f"{path}: not a text file (not UTF-8)"]) from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError([f"{path}: not valid TOML: {exc}"]) from None


def _is_secret(keys: Iterable[str]) -> bool:
    last = list(keys)[-1]
    return any(w in last for w in _SECRET_WORDS) and not last.endswith("_file")


def env_overrides(kind: str, environ: Mapping[str, str] | None = None) -> tuple[list[tuple[tuple[str, ...], Any, str]], list[str]]:
    """The environment's overrides for ``kind``: ``([(keys, value, variable), ...], problems)``."""
    environ = os.environ if environ is None else environ
    prefix = env_prefix(kind)
    out: list[tuple[tuple[str, ...], Any, str]] = []
    problems: list[str] = []
    for var in sorted(environ):
        if not var.upper().startswith(prefix):
            continue
        keys = tuple(k.lower() for k in var[len(prefix):].split("__"))
        label = f"{var} (environment)"
        if not all(keys):
            problems.append(f"{label}: write sections and keys joined by a double underscore, e.g. {prefix}MQTT__HOST")
            continue
        if _is_secret(keys):
            problems.append(f"{label}: {'.'.join(keys)}: secrets are not read from the environment; put it in a file "
                            f"(mode 0600) and set {'.'.join(keys[:-1] + (keys[-1] + '_file',))}")
            continue
        raw = environ[var]
        value: Any = raw
        if raw.lstrip().startswith(("[", "{")):
            try:
                value = json.loads(raw)
            except json.JSONDecodeError as exc:
                problems.append(f"{label}: {'.'.join(keys)}: not valid JSON: {exc}")
                continue
        out.append((keys, value, label))
    return out, problems


def _set(data: dict[str, Any], keys: tuple[str, ...], value: Any) -> bool:
    node = data
    for k in keys[:-1]:
        nxt = node.setdefault(k, {})
        if not isinstance(nxt, dict):
            return False
        node = nxt
    node[keys[-1]] = value
    return True


def _key(loc: tuple[Any, ...], data: Any, names: Mapping[str, str]) -> str:
    """``devices[id=m2].timeout_s`` for loc ``('devices', 1, 'timeout_s')`` when ``names`` says devices are named by id."""
    parts: list[str] = []
    node = data
    for i, item in enumerate(loc):
        if isinstance(item, int) and i > 0 and isinstance(loc[i - 1], str) and loc[i - 1] in names:
            name_key = names[loc[i - 1]]
            try:
                parts[-1] += f"[{name_key}={node[item][name_key]}]"
            except (KeyError, IndexError, TypeError):
                parts[-1] += f"[{item}]"
        else:
            parts.append(str(item))
        try:
            node = node[item]
        except (KeyError, IndexError, TypeError):
            node = None
    return ".".join(parts) or "(top level)"


def _known_keys(model: Any, loc: tuple[Any, ...]) -> list[str] | None:
    """The keys the (sub)model holding ``loc``'s last key accepts, or None when it cannot be told."""
    import typing

    def model_in(tp: Any) -> Any:
        if isinstance(tp, type) and issubclass(tp, BaseModel):
            return tp
        for arg in typing.get_args(tp):
            found = model_in(arg)
            if found is not None:
                return found
        return None

    node = model
    for item in loc[:-1]:
        if isinstance(item, int):
            continue
        field = node.model_fields.get(item) if node is not None else None
        node = model_in(field.annotation) if field is not None else None
        if node is None:
            return None
    return sorted(node.model_fields) if node is not None else None


def _reason(err: Mapping[str, Any], model: Any = None) -> str:
    if err["type"] == "extra_forbidden":
        known = _known_keys(model, tuple(err["loc"])) if model is not None else None
        return "unknown key (check the spelling)" + (f"; known: {', '.join(known)}" if known else "")
    if err["type"] == "missing":
        return "missing (required)"
    return str(err["msg"]).removeprefix("Value error, ").removeprefix("Assertion failed, ")


def format_errors(source: str, exc: ValidationError, data: Any = None, *, names: Mapping[str, str] | None = None,
                  sources: Mapping[tuple[str, ...], str] | None = None, model: Any = None) -> list[str]:
    """One line per problem: ``source: key: reason``. ``sources`` maps override keys to where they came from."""
    lines = []
    for err in exc.errors():
        loc = tuple(err["loc"])
        where = source
        for keys, label in (sources or {}).items():
            if loc[: len(keys)] == keys:
                where = label
                break
        lines.append(f"{where}: {_key(loc, data, names or {})}: {_reason(err, model)}")
    return lines


def validate(model: type[M], data: dict[str, Any], *, source: str, names: Mapping[str, str] | None = None,
             context: dict[str, Any] | None = None, sources: Mapping[tuple[str, ...], str] | None = None) -> M:
    """Validate parsed settings; raise :class:`SettingsError` with every problem, one line each."""
    try:
        return model.model_validate(data, context=context)
    except ValidationError as exc:
        raise SettingsError(format_errors(source, exc, data, names=names, sources=sources, model=model)) from None


def load(model: type[M], path: str | Path | None, *, kind: str, environ: Mapping[str, str] | None = None,
         overrides: Iterable[tuple[tuple[str, ...], Any, str]] = (), names: Mapping[str, str] | None = None,
         context: dict[str, Any] | None = None, data: dict[str, Any] | None = None) -> M:
    """Settings of ``kind`` from the TOML file at ``path`` (or none), the environment and ``overrides``.

    ``overrides`` are ``(keys, value, label)``, e.g. ``(("mqtt", "port"), 8883, "--mqtt-port")`` from a flag; they win
    over the environment, which wins over the file. ``data``: the file's contents when the caller parsed it already."""
    source = str(path) if path is not None else "the command line"
    if data is None:
        data = read_toml(path) if path is not None else {}
    env, problems = env_overrides(kind, environ)
    sources: dict[tuple[str, ...], str] = {}
    for keys, value, label in [*env, *overrides]:
        if not _set(data, keys, value):
            problems.append(f"{label}: {'.'.join(keys)}: {'.'.join(keys[:-1])} is not a table in {source}")
        sources[keys] = label
    try:
        settings = validate(model, data, source=source, names=names, context=context, sources=sources)
    except SettingsError as exc:
        raise SettingsError(problems + exc.problems) from None
    if problems:
        raise SettingsError(problems)
    return settings


def check(model: type[M], path: str | Path, *, kind: str, environ: Mapping[str, str] | None = None,
          names: Mapping[str, str] | None = None, context: dict[str, Any] | None = None,
          data: dict[str, Any] | None = None) -> tuple[M | None, list[str]]:
    """:func:`load` for ``carbonedge config check``: ``(settings or None, every problem)`` instead of raising."""
    try:
        return load(model, path, kind=kind, environ=environ, names=names, context=context, data=data), []
    except SettingsError as exc:
        return None, exc.problems


def with_env(data: dict[str, Any], kind: str, environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """A copy of the parsed file with its environment overrides applied, as the process will see it (for file checks)."""
    import copy

    merged = copy.deepcopy(data)
    for keys, value, _label in env_overrides(kind, os.environ if environ is None else environ)[0]:
        _set(merged, keys, value)
    return merged


def dig(data: Any, *keys: str) -> Any:
    """``data[k1][k2]...`` of parsed TOML, or None where a level is missing or not a table."""
    for k in keys:
        if not isinstance(data, dict):
            return None
        data = data.get(k)
    return data


def read_secret(path: str | Path, key: str) -> str:
    """The secret in a file (its first line, stripped), for settings key ``key``; one-line ``ConfigError`` naming
    the key and file when it cannot be read or is empty. Every process reads passwords and tokens this way."""
    try:
        text = Path(path).read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{key} = {str(path)!r}: {getattr(exc, 'strerror', None) or exc}") from None
    value = text.splitlines()[0].strip() if text.strip() else ""
    if not value:
        raise ConfigError(f"{key} = {str(path)!r}: the file is empty")
    return value


class FileChecks:
    """The files a settings file names, checked the way the process will use them (``carbonedge config check``).

    Each check adds one line per problem, ``key = 'value': reason``, to :attr:`problems` and returns the path when
    the file is usable."""

    def __init__(self) -> None:
        self.problems: list[str] = []

    def readable(self, key: str, value: Any) -> Path | None:
        if not isinstance(value, str | Path) or not str(value):
            return None
        p = Path(value)
        if not p.exists():
            self.problems.append(f"{key} = {str(value)!r}: no such file")
        elif p.is_dir():
            self.problems.append(f"{key} = {str(value)!r}: is a directory, not a file")
        elif not os.access(p, os.R_OK):
            self.problems.append(f"{key} = {str(value)!r}: not readable by this user")
        else:
            return p
        return None

    def secret(self, key: str, value: Any) -> Path | None:
        """A password file: readable and not empty."""
        p = self.readable(key, value)
        if p is not None and not p.read_text(errors="replace").strip():
            self.problems.append(f"{key} = {str(p)!r}: the file is empty")
            return None
        return p

    def ca(self, key: str, value: Any) -> Path | None:
        """A PEM CA bundle that TLS can load."""
        import ssl

        p = self.readable(key, value)
        if p is not None:
            try:
                ssl.create_default_context(cafile=str(p))
            except (ssl.SSLError, OSError, ValueError) as exc:
                self.problems.append(f"{key} = {str(p)!r}: not a PEM CA certificate ({exc})")
                return None
        return p

    def broker_and_influx(self, data: Any) -> None:
        """The files of ``[mqtt]`` (password file, CA, client certificate and key) and ``[influx]`` (password file)."""
        self.secret("mqtt.password_file", dig(data, "mqtt", "password_file"))
        self.ca("mqtt.tls.ca_file", dig(data, "mqtt", "tls", "ca_file"))
        cert, key = dig(data, "mqtt", "tls", "cert_file"), dig(data, "mqtt", "tls", "key_file")
        if cert is not None or key is not None:
            self.cert_and_key("mqtt.tls.cert_file", cert, "mqtt.tls.key_file", key)
        self.secret("influx.password_file", dig(data, "influx", "password_file"))

    def cert_and_key(self, cert_key: str, cert: Any, key_key: str, key: Any) -> None:
        """A client certificate and its private key: both readable and a matching PEM pair."""
        import ssl

        c, k = self.readable(cert_key, cert), self.readable(key_key, key)
        if c is not None and k is not None:
            try:
                ssl.create_default_context().load_cert_chain(str(c), str(k))
            except (ssl.SSLError, OSError, ValueError) as exc:
                self.problems.append(f"{cert_key}/{key_key.rsplit('.', 1)[-1]}: {str(c)!r} and {str(k)!r} are not a matching PEM "
                                     f"certificate and key ({exc})")

    def writable_dir(self, key: str, value: Any, what: str) -> None:
        """A directory the process creates or writes into: its nearest existing ancestor must be a writable directory."""
        if not isinstance(value, str | Path) or not str(value):
            return
        p = Path(value)
        probe = next((q for q in (p, *p.absolute().parents) if q.exists()), None)
        if probe is not None and not probe.is_dir():
            self.problems.append(f"{key} = {str(value)!r}: {str(probe)!r} is a file")
        elif probe is not None and not os.access(probe, os.W_OK):
            self.problems.append(f"{key} = {str(value)!r}: {str(probe)!r} is not writable by this user ({what})")
