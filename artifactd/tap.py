"""``twistd artifactd``: options and service construction (wiring only; the service opens the
data directory in ``startService``, after twistd has daemonised and dropped privileges)."""

from __future__ import annotations

import os
import sys
from typing import Any

from twisted.application.service import IService
from twisted.python import usage

from artifactd.config import Config, build_config, read_config_file


class Options(usage.Options):
    synopsis = "[options]"
    longdesc = (
        "Serve an S3-compatible artifact store. With no options it listens on 127.0.0.1:9000"
        " and keeps its data in ./artifactd-data."
    )
    optParameters = [
        ["config", "c", None, "TOML configuration file (see etc/artifactd.toml)."],
        ["data-dir", "d", None, "Data directory (default ./artifactd-data)."],
        ["base-path", None, None, "Serve S3 below this path prefix, e.g. /s3."],
    ]

    def __init__(self) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self["listen"] = []

    def opt_listen(self, description: str) -> None:
        """Listen on this Twisted endpoint (repeatable), e.g. tcp:9000:interface=127.0.0.1,
        ssl:9443:privateKey=key.pem:certKey=cert.pem, systemd:domain=INET:name=artifactd."""
        self["listen"].append(description)

    opt_l = opt_listen

    def postOptions(self) -> None:
        file_values = read_config_file(self["config"]) if self["config"] else {}
        overrides: dict[str, Any] = {
            "data_dir": self["data-dir"],
            "base_path": self["base-path"],
            "listen": tuple(self["listen"]) or None,
        }
        self.config: Config = build_config(file_values, overrides, os.environ)


SWITCH_INTERVAL = 0.001


def makeService(options: Options) -> IService:
    from twisted.internet import reactor

    from artifactd.memory import fix_mmap_threshold
    from artifactd.service import ArtifactdService

    fix_mmap_threshold()
    # Disk-pool threads hash 1 MiB at a time with the GIL released and then wait for it again;
    # with the default 5 ms switch interval they wait behind the reactor thread for longer than
    # the hashing took (a 1 GiB PUT: 255 -> 380 MiB/s with 1 ms).
    sys.setswitchinterval(SWITCH_INTERVAL)
    return ArtifactdService(options.config, reactor)
