"""What the suite measures (sizes, metrics) and what it collected (samples per metric and
server)."""

from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass, field
from typing import Any

from bench.procstat import Usage

KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB
SERVERS = ("nginx", "artifactd", "moto")


def size_text(size: int) -> str:
    if size >= GiB and size % GiB == 0:
        return f"{size // GiB} GiB"
    if size >= MiB and size % MiB == 0:
        return f"{size // MiB} MiB"
    return f"{size // KiB} KiB"


def count_text(n: int) -> str:
    if n >= 1_000_000 and n % 1_000_000 == 0:
        return f"{n // 1_000_000}M"
    if n >= 1000 and n % 1000 == 0:
        return f"{n // 1000}k"
    return str(n)


@dataclass(frozen=True)
class Config:
    rounds: int = 3
    large: int = GiB  # PUT/GET, the multipart upload and each of the concurrent uploads
    medium: int = 64 * MiB  # PUT/GET, and the object the ranged GETs read
    small: int = 4 * KiB
    small_seconds: float = 5.0
    small_connections: tuple[int, ...] = (16, 64)
    put_keys: int = 50_000  # presigned PUT targets the small PUTs cycle through
    get_keys: int = 1000  # small objects the small GETs cycle through
    range_size: int = MiB
    range_connections: int = 4
    list_keys: int = 10_000
    list_big_keys: int = 1_000_000  # artifactd only
    list_page: int = 1000
    list_seconds: float = 3.0
    mpu_parts: int = 100
    concurrent_uploads: int = 16

    @classmethod
    def quick(cls) -> Config:
        return cls(
            rounds=1,
            large=128 * MiB,
            medium=16 * MiB,
            small_seconds=2.0,
            put_keys=10_000,
            get_keys=500,
            list_keys=2000,
            list_big_keys=100_000,
            list_seconds=2.0,
            mpu_parts=20,
        )


@dataclass(frozen=True)
class Metric:
    id: str
    group: str  # the workload that measures it (what --only names)
    label: str
    unit: str
    higher_is_better: bool
    servers: tuple[str, ...] = SERVERS
    large_body: bool = False  # CPU seconds per GiB is shown


GROUPS = ("large", "medium", "put-small", "get-small", "range", "list", "multipart", "concurrent")


def metrics(config: Config) -> list[Metric]:
    big, mid, small = size_text(config.large), size_text(config.medium), size_text(config.small)
    c_lo, c_hi = config.small_connections
    keys, big_keys = count_text(config.list_keys), count_text(config.list_big_keys)
    page = config.list_page
    parts = config.mpu_parts
    s3_servers = ("artifactd", "moto")
    return [
        Metric("put_large", "large", f"PUT {big}", "MiB/s", True, large_body=True),
        Metric(
            "put_large_raw",
            "large",
            f"PUT {big}, sendfile sender (cross-check)",
            "MiB/s",
            True,
            large_body=True,
        ),
        Metric("get_large", "large", f"GET {big}", "MiB/s", True, large_body=True),
        Metric(
            "get_large_raw",
            "large",
            f"GET {big}, 4 MiB-recv reader (cross-check)",
            "MiB/s",
            True,
            large_body=True,
        ),
        Metric("put_medium", "medium", f"PUT {mid}", "MiB/s", True, large_body=True),
        Metric("get_medium", "medium", f"GET {mid}", "MiB/s", True, large_body=True),
        Metric("put_small_lo", "put-small", f"PUT {small} @{c_lo}", "ops/s", True),
        Metric("put_small_hi", "put-small", f"PUT {small} @{c_hi}", "ops/s", True),
        Metric("get_small_lo", "get-small", f"GET {small} @{c_lo}", "ops/s", True),
        Metric("get_small_hi", "get-small", f"GET {small} @{c_hi}", "ops/s", True),
        Metric(
            "range",
            "range",
            f"GET {size_text(config.range_size)} ranges of {mid} @{config.range_connections}",
            "ops/s",
            True,
        ),
        Metric("list_first", "list", f"LIST {page} of {keys}, page 1", "ms/page", False),
        Metric("list_deep", "list", f"LIST {page} of {keys}, mid page", "ms/page", False),
        Metric(
            "list_big_first",
            "list",
            f"LIST {page} of {big_keys}, page 1 (artifactd only)",
            "ms/page",
            False,
            ("artifactd",),
        ),
        Metric(
            "list_big_deep",
            "list",
            f"LIST {page} of {big_keys}, mid page (artifactd only)",
            "ms/page",
            False,
            ("artifactd",),
        ),
        Metric(
            "mpu_complete",
            "multipart",
            f"Complete {big} in {parts} parts",
            "s",
            False,
            s3_servers,
        ),
        Metric(
            "mpu_probe",
            "multipart",
            "  probe GET max during Complete",
            "ms",
            False,
            s3_servers,
        ),
        Metric(
            "concurrent",
            "concurrent",
            f"{config.concurrent_uploads} concurrent PUT {big} (artifactd only)",
            "MiB/s",
            True,
            ("artifactd",),
            large_body=True,
        ),
    ]


@dataclass
class Sample:
    """One round of one metric on one server."""

    value: float | None
    generator: str = ""  # curl, wrk, python
    generator_cpu_pct: float | None = None  # of one core (2 wrk threads can reach 200)
    generator_cores: float = 1.0  # what the generator could use at most (threads, processes)
    usage: Usage | None = None  # the server's
    bytes_moved: int = 0
    errors: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def cpu_s_per_gib(self) -> float | None:
        if self.usage is None or self.bytes_moved < MiB:
            return None
        return self.usage.cpu_s / (self.bytes_moved / GiB)

    def as_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["cpu_s_per_gib"] = self.cpu_s_per_gib
        return data


def median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


class Results:
    def __init__(self) -> None:
        self.samples: dict[tuple[str, str], list[Sample]] = {}
        self.info: dict[str, Any] = {}  # per-server facts: populate times, start-up times, ...

    def add(self, metric: str, server: str, sample: Sample) -> None:
        self.samples.setdefault((metric, server), []).append(sample)

    def of(self, metric: str, server: str) -> list[Sample]:
        return self.samples.get((metric, server), [])

    def median(self, metric: str, server: str) -> float | None:
        return median([s.value for s in self.of(metric, server) if s.value is not None])

    def errors(self, metric: str, server: str) -> list[str]:
        return [e for s in self.of(metric, server) for e in s.errors]

    def peak_rss(self, metric: str, server: str) -> float | None:
        values = [s.usage.hwm_mib for s in self.of(metric, server) if s.usage is not None]
        return max(values) if values else None

    def cpu_per_gib(self, metric: str, server: str) -> float | None:
        return median([c for s in self.of(metric, server) if (c := s.cpu_s_per_gib) is not None])

    def generator_saturated(self, metric: str, server: str) -> bool:
        """Whether the load generator used 90% or more of the CPU it could use in some round:
        then the figure may be the client's limit rather than the server's."""
        return any(
            s.generator_cpu_pct is not None and s.generator_cpu_pct >= 90 * s.generator_cores
            for s in self.of(metric, server)
        )

    def generator_cpu(self, metric: str, server: str) -> float | None:
        return median(
            [
                s.generator_cpu_pct
                for s in self.of(metric, server)
                if s.generator_cpu_pct is not None
            ]
        )

    def ratio(self, metric: str, other: str) -> float | None:
        a, b = self.median(metric, "artifactd"), self.median(metric, other)
        if a is None or b is None or b == 0:
            return None
        return a / b
