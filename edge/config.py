"""Gateway configuration: one TOML file, validated by pydantic, with errors that name the file and key."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator, model_validator

from carbonedge import profiles
from carbonedge.errors import ConfigError
from carbonedge.wire import Identifier, TagKey, TagValue


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class GatewaySection(_Model):
    site: Identifier
    id: Identifier
    poll_interval_s: float = Field(default=1.0, gt=0, le=86400)
    data_dir: Path = Path("/var/lib/carbonedge/edge")


class MqttSection(_Model):
    host: str = "127.0.0.1"
    port: int = Field(default=1883, ge=1, le=65535)
    username: str | None = None
    password: SecretStr | None = None
    keepalive_s: int = Field(default=30, ge=5, le=3600)
    #: How many batches may await the broker's PUBACK at once.
    max_inflight: int = Field(default=20, ge=1, le=1000)
    #: Resend everything above the watermark when the collector has not advanced it for this long.
    resend_after_s: float = Field(default=30.0, gt=0)


class DeviceConfig(_Model):
    id: Identifier
    profile: str
    driver: Literal["modbus-tcp"] = "modbus-tcp"
    host: str = "127.0.0.1"
    port: int = Field(default=502, ge=1, le=65535)
    unit_id: int = Field(default=1, ge=0, le=255)
    timeout_s: float = Field(default=1.0, gt=0, le=60)
    tags: dict[TagKey, TagValue] = Field(default_factory=dict)

    @field_validator("profile")
    @classmethod
    def _known_profile(cls, v: str) -> str:
        if v not in profiles.PROFILES:
            raise ValueError(f"unknown meter profile {v!r}; known: {', '.join(sorted(profiles.PROFILES))}")
        return v


class GatewayConfig(_Model):
    gateway: GatewaySection
    mqtt: MqttSection = MqttSection()
    devices: list[DeviceConfig] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique_devices(self) -> GatewayConfig:
        seen: set[str] = set()
        for d in self.devices:
            if d.id in seen:
                raise ValueError(f"device id {d.id!r} is used twice")
            seen.add(d.id)
        return self


def load_config(path: str | Path) -> GatewayConfig:
    """Read and validate a gateway TOML file; raise :class:`ConfigError` naming the file and keys."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    try:
        return GatewayConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(path, exc, data)) from None


def format_validation_error(path: Path, exc: ValidationError, data: dict) -> str:  # type: ignore[type-arg]
    lines = [f"{path}: {exc.error_count()} problem(s):"]
    for err in exc.errors():
        loc = list(err["loc"])
        # Name devices by their id rather than by list index where we can.
        if len(loc) >= 2 and loc[0] == "devices" and isinstance(loc[1], int):
            try:
                loc[1] = f"[id={data['devices'][loc[1]]['id']}]"
            except (KeyError, IndexError, TypeError):
                loc[1] = f"[{loc[1]}]"
        key = ".".join(str(x) for x in loc).replace(".[", "[") or "(top level)"
        lines.append(f"  {key}: {err['msg']}")
    return "\n".join(lines)
