"""One active operator replica: a coordination.k8s.io Lease, held while running, renewed often.

Why a Lease rather than kopf peering: it needs no extra CRDs, it is what every other Kubernetes
controller uses (so `kubectl get lease` explains who is active), and a replica that cannot renew
stops itself instead of acting beside a new holder, where kopf peering only pauses on priority.
"""

from __future__ import annotations

import datetime
import logging
import socket
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import kubernetes
from kubernetes.client.exceptions import ApiException

from ._owners import OwnerReference, owner_dicts, with_owner

__all__ = ["LeaseHolder"]

log = logging.getLogger("ostinato.operator.leader")


def _micro(t: datetime.datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _parse(text: Any) -> datetime.datetime | None:
    if isinstance(text, datetime.datetime):
        return text if text.tzinfo else text.replace(tzinfo=datetime.UTC)
    if not isinstance(text, str):
        return None
    for fmt in ("%Y-%m-%dT%H:%M:%S.%fZ", "%Y-%m-%dT%H:%M:%SZ"):
        try:
            return datetime.datetime.strptime(text, fmt).replace(tzinfo=datetime.UTC)
        except ValueError:
            continue
    return None


class LeaseHolder:
    """Acquire, renew and release one Lease; ``on_lost`` runs if renewal fails for too long."""

    def __init__(
        self,
        api: kubernetes.client.ApiClient,
        name: str,
        namespace: str,
        duration_seconds: int,
        renew_seconds: float,
        identity: str | None = None,
        request_timeout_seconds: float = 3.0,
        owner: OwnerReference | None = None,
    ) -> None:
        self.leases: Any = kubernetes.client.CoordinationV1Api(api)
        self.name = name
        self.namespace = namespace
        self.duration = duration_seconds
        self.renew = renew_seconds
        self.identity = identity or f"{socket.gethostname()}_{uuid.uuid4().hex[:8]}"
        self.timeout = request_timeout_seconds
        #: Set as the Lease's owner (the operator's Deployment), so helm uninstall removes it.
        self.owner = owner
        # What the last read of the Lease showed, for a standby's /healthz.
        self.last_holder: str | None = None
        self.last_error: str | None = None
        self.last_attempt = time.monotonic()
        #: Reads of the Lease done so far (or failed), by acquire(): 0 means nothing known yet.
        self.reads = 0
        self._stop = threading.Event()
        # Held around a renewal and around the release, so no renewal lands after the release.
        self._write = threading.Lock()
        self._thread: threading.Thread | None = None

    def _spec(self, now: datetime.datetime, acquired: str | None = None) -> dict[str, Any]:
        return {
            "holderIdentity": self.identity,
            "leaseDurationSeconds": self.duration,
            "acquireTime": acquired or _micro(now),
            "renewTime": _micro(now),
        }

    def _metadata(self, lease: Any = None) -> dict[str, Any]:
        """The Lease's metadata for a create (``lease`` None) or a replace: a replace keeps the
        owners already there (it would clear them otherwise) and adds ours."""
        meta: dict[str, Any] = {"name": self.name}
        refs: list[dict[str, Any]] = []
        if lease is not None:
            meta["resourceVersion"] = lease.metadata.resource_version
            refs = owner_dicts(lease.metadata.owner_references)
        if self.owner is not None:
            refs = with_owner(refs, self.owner) or refs
        if refs:
            meta["ownerReferences"] = refs
        return meta

    def try_acquire(self, create: bool = True) -> bool:
        """True when this process holds the Lease after the call.

        ``create``: make the Lease when there is none. A renewal passes False: a Lease deleted
        under its holder was deleted on purpose (helm uninstall, through its owner), and the
        holder must stop rather than bring it back.
        """
        now = datetime.datetime.now(datetime.UTC)
        try:
            lease = self.leases.read_namespaced_lease(
                self.name, self.namespace, _request_timeout=self.timeout
            )
        except ApiException as exc:
            if exc.status != 404:
                raise
            if not create:
                log.error("lease %s/%s was deleted", self.namespace, self.name)
                return False
            body = {"metadata": self._metadata(), "spec": self._spec(now)}
            try:
                self.leases.create_namespaced_lease(
                    self.namespace, body, _request_timeout=self.timeout
                )
            except ApiException as exc2:
                if exc2.status == 409:
                    return False
                raise
            return True
        spec = lease.spec
        holder = spec.holder_identity if spec else None
        self.last_holder = holder or None
        renewed = _parse(spec.renew_time) if spec else None
        duration = (spec.lease_duration_seconds if spec else None) or self.duration
        expired = renewed is None or renewed + datetime.timedelta(seconds=duration) < now
        if holder not in (None, "", self.identity) and not expired:
            return False
        acquired = _parse(spec.acquire_time) if spec and holder == self.identity else None
        body = {
            "metadata": self._metadata(lease),
            "spec": self._spec(now, _micro(acquired) if acquired else None),
        }
        try:
            self.leases.replace_namespaced_lease(
                self.name, self.namespace, body, _request_timeout=self.timeout
            )
        except ApiException as exc:
            if exc.status == 409:  # someone else wrote it first
                return False
            raise
        return True

    def acquire(self, wait: Callable[[float], bool], poll_seconds: float) -> bool:
        """Read the Lease every ``poll_seconds`` until it is ours (True) or ``wait`` - which
        sleeps, and says whether to give up - returns True (False)."""
        announced = False
        while True:
            try:
                if self.try_acquire():
                    self.last_error = None
                    log.info("holding lease %s/%s as %s", self.namespace, self.name, self.identity)
                    return True
                self.last_error = None
            except Exception as exc:  # the API server may be away: keep waiting
                self.last_error = f"{type(exc).__name__}: {getattr(exc, 'reason', None) or exc}"
                log.warning("lease %s/%s: %s", self.namespace, self.name, self.last_error)
            finally:
                self.last_attempt = time.monotonic()
                self.reads += 1
            if not announced and self.last_error is None:
                log.info(
                    "%s holds lease %s/%s; waiting as %s",
                    self.last_holder,
                    self.namespace,
                    self.name,
                    self.identity,
                )
                announced = True
            if wait(poll_seconds):
                return False

    def keep(self, on_lost: Callable[[], None]) -> None:
        """Renew in a daemon thread; call ``on_lost`` once when the Lease cannot be kept."""

        def run() -> None:
            last_ok = time.monotonic()
            while not self._stop.wait(self.renew):
                try:
                    with self._write:
                        if self._stop.is_set():
                            return
                        renewed = self.try_acquire(create=False)
                    if renewed:
                        last_ok = time.monotonic()
                        continue
                    log.error("lease %s/%s is no longer ours", self.namespace, self.name)
                except Exception as exc:  # the API server may be briefly away
                    log.warning("cannot renew lease %s/%s: %s", self.namespace, self.name, exc)
                    if time.monotonic() - last_ok < self.duration:
                        continue
                on_lost()
                return

        self._thread = threading.Thread(target=run, name="ostinato-lease", daemon=True)
        self._thread.start()

    def release(self) -> bool:
        """Stop renewing and hand the Lease back so a standby takes over at once.

        Takes at most about three request timeouts (a renewal in flight, a read, a write);
        False when the Lease could not be handed back (it then expires after its duration).
        """
        self._stop.set()
        if not self._write.acquire(timeout=self.timeout + 1):
            log.warning("lease %s/%s: a renewal hangs; not released", self.namespace, self.name)
            return False
        try:
            lease = self.leases.read_namespaced_lease(
                self.name, self.namespace, _request_timeout=self.timeout
            )
            if not (lease.spec and lease.spec.holder_identity == self.identity):
                return False
            body = {
                "metadata": self._metadata(lease),
                "spec": {"holderIdentity": None, "leaseDurationSeconds": self.duration},
            }
            self.leases.replace_namespaced_lease(
                self.name, self.namespace, body, _request_timeout=self.timeout
            )
        except Exception as exc:  # ApiException, or a timeout: the Lease will expire instead
            reason = getattr(exc, "reason", None) or exc
            log.warning("cannot release lease %s/%s: %s", self.namespace, self.name, reason)
            return False
        finally:
            self._write.release()
        log.info("released lease %s/%s", self.namespace, self.name)
        return True
