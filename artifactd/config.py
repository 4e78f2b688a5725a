"""Configuration: a frozen :class:`Config` from embedded defaults, an optional TOML file and
command-line overrides (which win).  Every problem is a ``UsageError`` naming the offending key."""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from typing import Any

from attrs import field, frozen
from twisted.python.usage import UsageError

GiB = 1024**3
MIN_REQUEST_HEAD_BYTES = 8 * 1024
MAX_REQUEST_HEAD_BYTES = 1024 * 1024
_DOMAIN = re.compile(r"\A[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*\Z")


def _domains(value: Any) -> tuple[str, ...]:
    """Virtual-host domains compare case-insensitively and without a trailing dot."""
    return tuple(str(d).strip().lower().rstrip(".") for d in value)


@frozen
class Config:
    listen: tuple[str, ...] = ("tcp:9000:interface=127.0.0.1",)
    data_dir: str = "./artifactd-data"
    base_path: str = ""
    region: str = "us-east-1"
    virtual_host_domains: tuple[str, ...] = field(default=(), converter=_domains)
    max_request_head_bytes: int = 64 * 1024
    max_headers: int = 500
    max_object_size: int = 5 * GiB
    disk_threads: int = 32
    spare_seconds: int = 30
    upload_expiry_seconds: int = 7 * 24 * 3600
    expiry_interval_seconds: int = 3600
    root_access_key: str | None = None
    root_secret_key: str | None = field(default=None, repr=False)


# (table, key) -> (Config attribute, type)
_KEYS: dict[tuple[str, str], tuple[str, type]] = {
    ("server", "listen"): ("listen", list),
    ("server", "base_path"): ("base_path", str),
    ("server", "region"): ("region", str),
    ("server", "virtual_host_domains"): ("virtual_host_domains", list),
    ("server", "max_request_head_bytes"): ("max_request_head_bytes", int),
    ("server", "max_headers"): ("max_headers", int),
    ("storage", "data_dir"): ("data_dir", str),
    ("storage", "max_object_size"): ("max_object_size", int),
    ("storage", "disk_threads"): ("disk_threads", int),
    ("storage", "spare_seconds"): ("spare_seconds", int),
    ("multipart", "upload_expiry_seconds"): ("upload_expiry_seconds", int),
    ("multipart", "expiry_interval_seconds"): ("expiry_interval_seconds", int),
    ("auth", "root_access_key"): ("root_access_key", str),
    ("auth", "root_secret_key"): ("root_secret_key", str),
}


def parse_toml(text: str, source: str) -> dict[str, Any]:
    """The Config attributes set by a TOML document; unknown tables or keys are usage errors."""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise UsageError(f"{source}: invalid TOML: {e}") from None
    values: dict[str, Any] = {}
    for table, entries in doc.items():
        if not isinstance(entries, dict):
            raise UsageError(f"{source}: '{table}' must be a table like [{table}]")
        for key, value in entries.items():
            spec = _KEYS.get((table, key))
            if spec is None:
                raise UsageError(f"{source}: unknown configuration key '{table}.{key}'")
            attr, kind = spec
            if kind is int and (isinstance(value, bool) or not isinstance(value, int)):
                raise UsageError(f"{source}: '{table}.{key}' must be an integer")
            if kind is str and not isinstance(value, str):
                raise UsageError(f"{source}: '{table}.{key}' must be a string")
            if kind is list:
                if isinstance(value, str):
                    value = [value]
                if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                    raise UsageError(f"{source}: '{table}.{key}' must be a list of strings")
                value = tuple(value)
            values[attr] = value
    return values


def build_config(
    file_values: Mapping[str, Any],
    overrides: Mapping[str, Any],
    environ: Mapping[str, str],
) -> Config:
    """Defaults, then the file, then the environment (credentials), then the command line."""
    values: dict[str, Any] = dict(file_values)
    if environ.get("ARTIFACTD_ROOT_ACCESS_KEY"):
        values["root_access_key"] = environ["ARTIFACTD_ROOT_ACCESS_KEY"]
    if environ.get("ARTIFACTD_ROOT_SECRET_KEY"):
        values["root_secret_key"] = environ["ARTIFACTD_ROOT_SECRET_KEY"]
    values.update({k: v for k, v in overrides.items() if v is not None})
    config = Config(**values)
    _validate(config)
    return config


def _validate(config: Config) -> None:
    if not config.listen:
        raise UsageError("server.listen: at least one endpoint is required")
    if config.base_path and (not config.base_path.startswith("/") or "?" in config.base_path):
        raise UsageError("server.base_path must start with '/' (e.g. '/s3')")
    for domain in config.virtual_host_domains:
        if not _DOMAIN.match(domain):
            raise UsageError(
                f"server.virtual_host_domains: {domain!r} is not a DNS name"
                " (give the domain alone, e.g. 's3.example.com': no scheme, port or wildcard)"
            )
    if not MIN_REQUEST_HEAD_BYTES <= config.max_request_head_bytes <= MAX_REQUEST_HEAD_BYTES:
        raise UsageError(
            f"server.max_request_head_bytes must be between {MIN_REQUEST_HEAD_BYTES}"
            f" and {MAX_REQUEST_HEAD_BYTES}"
        )
    if not 100 <= config.max_headers <= 10000:
        raise UsageError("server.max_headers must be between 100 and 10000")
    if config.max_object_size <= 0:
        raise UsageError("storage.max_object_size must be positive")
    if not 1 <= config.disk_threads <= 256:
        raise UsageError("storage.disk_threads must be between 1 and 256")
    if not 0 <= config.spare_seconds <= 3600:
        raise UsageError("storage.spare_seconds must be between 0 and 3600")
    if config.upload_expiry_seconds <= 0 or config.expiry_interval_seconds <= 0:
        raise UsageError("multipart: expiry settings must be positive")
    if (config.root_access_key is None) != (config.root_secret_key is None):
        raise UsageError("auth: set both root_access_key and root_secret_key, or neither")
    if config.root_secret_key is not None and len(config.root_secret_key) < 8:
        raise UsageError("auth.root_secret_key must be at least 8 characters")


def read_config_file(path: str) -> dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as e:
        raise UsageError(f"--config {path}: {e.strerror}") from None
    return parse_toml(text, path)


def data_path(config: Config, *parts: str) -> str:
    return os.path.join(config.data_dir, *parts)
