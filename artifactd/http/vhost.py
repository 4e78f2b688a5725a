"""Virtual-hosted-style addressing: which bucket a request's Host header names.  Pure."""

from __future__ import annotations

from collections.abc import Sequence


def bucket_from_host(host: str | None, domains: Sequence[str]) -> str | None:
    """The bucket of a virtual-hosted-style request: ``host`` (any port, any case, an optional
    trailing dot) is ``<bucket>.<domain>`` for one of ``domains`` (lower case, no trailing dot;
    the longest that matches wins).  None for a path-style request: no Host, an IP literal, a
    Host equal to a domain or under none of them."""
    if not host or not domains:
        return None
    name = host.strip().lower()
    if name.startswith("["):
        return None  # an IPv6 literal
    name = name.partition(":")[0].rstrip(".")
    for domain in sorted(domains, key=len, reverse=True):
        if name.endswith("." + domain) and len(name) > len(domain) + 1:
            return name[: -len(domain) - 1]
    return None
