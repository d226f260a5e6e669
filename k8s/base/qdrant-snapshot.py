"""Snapshot every Qdrant collection on every peer, then keep only the newest few per peer.

Run by the CronJob `qdrant-snapshot` (k8s/base/qdrant-snapshot.yaml) in the flywheel-serve
image; the standard library only. In a distributed cluster a collection snapshot holds the
shards of the peer that takes it, so each peer is asked in turn (the peers come from
GET /cluster) and writes the snapshot to its own `snapshots` volume:

    POST   /collections/{name}/snapshots?wait=true
    GET    /collections/{name}/snapshots
    DELETE /collections/{name}/snapshots/{snapshot}?wait=true

Environment:
    FLYWHEEL_QDRANT__URL       any peer or the `qdrant` service, e.g. http://qdrant:6333
    FLYWHEEL_QDRANT__API_KEY   sent as the `api-key` header
    QDRANT_SNAPSHOT_KEEP       snapshots kept per collection and peer (default 2)
    QDRANT_SNAPSHOT_TIMEOUT_S  seconds per request (default 3600: large collections are slow)

Every collection and peer is attempted; the exit status is 1 if anything failed, so the Job
fails and its failure is visible (kube-state-metrics), 0 otherwise.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

logger = logging.getLogger("qdrant-snapshot")

Transport = Callable[[urllib.request.Request, float], bytes]
"""Sends a request and returns the response body (raises urllib.error.URLError on failure)."""


class SnapshotError(RuntimeError):
    """A Qdrant request failed or answered something unexpected."""


def _urlopen(request: urllib.request.Request, timeout: float) -> bytes:
    # Only http(s) URLs get here (Qdrant.__post_init__), never file: or others.
    with urllib.request.urlopen(request, timeout=timeout) as response:
        body: bytes = response.read()
        return body


@dataclass(frozen=True)
class Qdrant:
    """The few REST calls the job needs, against one base URL."""

    base_url: str
    api_key: str | None = None
    timeout_s: float = 3600.0
    transport: Transport = _urlopen

    def __post_init__(self) -> None:
        if urllib.parse.urlsplit(self.base_url).scheme not in {"http", "https"}:
            raise SnapshotError(f"{self.base_url!r} is not an http(s) URL")

    def at(self, base_url: str) -> Qdrant:
        """The same client against another peer."""
        return Qdrant(base_url, self.api_key, self.timeout_s, self.transport)

    def call(self, method: str, path: str) -> Any:
        """The `result` of one request; SnapshotError on any failure."""
        url = self.base_url.rstrip("/") + path
        headers = {"Accept": "application/json"}
        if self.api_key:
            headers["api-key"] = self.api_key
        request = urllib.request.Request(url, method=method, headers=headers)
        try:
            body = self.transport(request, self.timeout_s)
        except (urllib.error.URLError, OSError) as exc:
            raise SnapshotError(f"{method} {url}: {exc}") from exc
        try:
            return json.loads(body)["result"]
        except (ValueError, KeyError, TypeError) as exc:
            raise SnapshotError(f"{method} {url}: unexpected answer {body[:200]!r}") from exc


def peer_urls(base_url: str, cluster: Mapping[str, Any]) -> list[str]:
    """REST URLs of every peer: each peer's p2p host with the base URL's scheme and port.

    A single node (cluster status other than "enabled") is the base URL itself.
    """
    if cluster.get("status") != "enabled":
        return [base_url]
    base = urllib.parse.urlsplit(base_url)
    port = base.port or (443 if base.scheme == "https" else 80)
    urls = set()
    for peer in cluster.get("peers", {}).values():
        host = urllib.parse.urlsplit(str(peer["uri"])).hostname
        if not host:
            raise SnapshotError(f"peer without a host in /cluster: {peer!r}")
        urls.add(f"{base.scheme}://{host}:{port}")
    if not urls:
        raise SnapshotError("/cluster lists no peers")
    return sorted(urls)


def expired(snapshots: Sequence[Mapping[str, Any]], keep: int) -> list[str]:
    """Names of the snapshots beyond the newest `keep` (by creation time, then name)."""
    newest_first = sorted(
        snapshots,
        key=lambda s: (str(s.get("creation_time") or ""), str(s["name"])),
        reverse=True,
    )
    return [str(s["name"]) for s in newest_first[keep:]]


def run(qdrant: Qdrant, keep: int) -> int:
    """Snapshot and prune every collection on every peer; the number of failures."""
    if keep < 1:
        raise SnapshotError(f"keep={keep}: keep at least one snapshot")
    peers = peer_urls(qdrant.base_url, qdrant.call("GET", "/cluster"))
    names = sorted(c["name"] for c in qdrant.call("GET", "/collections")["collections"])
    logger.info("%d collections on %d peers: %s", len(names), len(peers), ", ".join(names))
    failures = 0
    for url in peers:
        peer = qdrant.at(url)
        for name in names:
            path = f"/collections/{urllib.parse.quote(name, safe='')}/snapshots"
            try:
                taken = peer.call("POST", f"{path}?wait=true")
                logger.info("%s: %s took %s (%s bytes)", url, name, taken["name"], taken["size"])
                for old in expired(peer.call("GET", path), keep):
                    peer.call("DELETE", f"{path}/{urllib.parse.quote(old, safe='')}?wait=true")
                    logger.info("%s: %s deleted %s", url, name, old)
            except (SnapshotError, KeyError, TypeError) as exc:
                # A collection dropped since the listing, or a peer down: the rest still runs.
                failures += 1
                logger.error("%s: %s: %s", url, name, exc)
    return failures


def main(environ: Mapping[str, str] = os.environ, transport: Transport = _urlopen) -> int:
    """Run once with the settings in `environ`; the process exit status."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    try:
        qdrant = Qdrant(
            environ.get("FLYWHEEL_QDRANT__URL", "http://qdrant:6333"),
            environ.get("FLYWHEEL_QDRANT__API_KEY") or None,
            float(environ.get("QDRANT_SNAPSHOT_TIMEOUT_S", "3600")),
            transport,
        )
        failures = run(qdrant, int(environ.get("QDRANT_SNAPSHOT_KEEP", "2")))
    except (SnapshotError, KeyError, TypeError, ValueError) as exc:
        logger.error("no snapshots taken: %s", exc)
        return 1
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
