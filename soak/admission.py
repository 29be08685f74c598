"""A mutating admission webhook, served by the soak itself, that mounts two host directories into
the soak's loop pods: the records directory (read back afterwards) and the workload's node
modules (on PYTHONPATH).

Why: the Workflow gives its pods no volumes of the user's (nodes may write only to /tmp, which a
deleted pod takes with it), and the readers' records must outlive the pods the chaos deletes.
On the single-node cluster a hostPath is this machine's directory. The webhook is registered
for one labelled namespace and for loop pods only, and removed when the soak ends.
"""

from __future__ import annotations

import base64
import datetime
import ipaddress
import json
import ssl
import tempfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

__all__ = ["CODE_MOUNT", "NAMESPACE_LABEL", "RECORDS_MOUNT", "RecordsWebhook"]

#: The label the webhook selects its namespace by (Kubernetes 1.20 sets no name label itself).
NAMESPACE_LABEL = "ostinato.dev/soak"
RECORDS_MOUNT = "/soak/records"
CODE_MOUNT = "/opt/soak"
#: The image's own PYTHONPATH (Dockerfile), with the node modules in front.
PYTHONPATH = f"{CODE_MOUNT}:/opt/ostinato/examples"


def _certificate() -> tuple[bytes, bytes]:
    """A self-signed certificate for 127.0.0.1 (PEM) and its key (PEM)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ostinato-soak-webhook")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


def patch(pod: dict[str, Any], records: Path, code: Path) -> list[dict[str, Any]]:
    """The JSON patch that mounts ``records`` (read-write) and ``code`` (read-only) in every
    container of ``pod`` and puts the code on PYTHONPATH."""
    ops: list[dict[str, Any]] = []
    spec = pod.get("spec") or {}
    if "volumes" not in spec:
        ops.append({"op": "add", "path": "/spec/volumes", "value": []})
    for name, path in (("soak-records", records), ("soak-code", code)):
        volume = {"name": name, "hostPath": {"path": str(path), "type": "Directory"}}
        ops.append({"op": "add", "path": "/spec/volumes/-", "value": volume})
    for i, container in enumerate(spec.get("containers") or []):
        base = f"/spec/containers/{i}"
        if "volumeMounts" not in container:
            ops.append({"op": "add", "path": f"{base}/volumeMounts", "value": []})
        ops.append(
            {
                "op": "add",
                "path": f"{base}/volumeMounts/-",
                "value": {"name": "soak-records", "mountPath": RECORDS_MOUNT},
            }
        )
        ops.append(
            {
                "op": "add",
                "path": f"{base}/volumeMounts/-",
                "value": {"name": "soak-code", "mountPath": CODE_MOUNT, "readOnly": True},
            }
        )
        if "env" not in container:
            ops.append({"op": "add", "path": f"{base}/env", "value": []})
        ops.append(
            {
                "op": "add",
                "path": f"{base}/env/-",
                "value": {"name": "PYTHONPATH", "value": PYTHONPATH},
            }
        )
    return ops


def review(request: dict[str, Any], records: Path, code: Path) -> dict[str, Any]:
    """The AdmissionReview answer to one AdmissionReview request: always allowed, patched."""
    body = request.get("request") or {}
    ops = patch(body.get("object") or {}, records, code)
    return {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "response": {
            "uid": body.get("uid", ""),
            "allowed": True,
            "patchType": "JSONPatch",
            "patch": base64.b64encode(json.dumps(ops).encode()).decode(),
        },
    }


class RecordsWebhook:
    """The webhook's HTTPS server on 127.0.0.1 (the API server runs on this machine) and its
    MutatingWebhookConfiguration, as a context manager's worth of life."""

    def __init__(self, name: str, namespace_label: str, records: Path, code: Path) -> None:
        self.name = name
        self.namespace_label = namespace_label
        self.records = records
        self.code = code
        cert, key = _certificate()
        self.ca_bundle = base64.b64encode(cert).decode()
        self._dir = tempfile.TemporaryDirectory(prefix="ostinato-soak-webhook-")
        cert_path, key_path = Path(self._dir.name) / "tls.crt", Path(self._dir.name) / "tls.key"
        cert_path.write_bytes(cert)
        key_path.write_bytes(key)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert_path, key_path)
        webhook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                request = json.loads(self.rfile.read(length))
                body = json.dumps(review(request, webhook.records, webhook.code)).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        self._thread = threading.Thread(
            target=self.server.serve_forever, name="soak-webhook", daemon=True
        )

    def configuration(self) -> dict[str, Any]:
        return {
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "MutatingWebhookConfiguration",
            "metadata": {"name": self.name},
            "webhooks": [
                {
                    "name": self.name,
                    "clientConfig": {
                        "url": f"https://127.0.0.1:{self.port}/mutate",
                        "caBundle": self.ca_bundle,
                    },
                    "rules": [
                        {
                            "apiGroups": [""],
                            "apiVersions": ["v1"],
                            "operations": ["CREATE"],
                            "resources": ["pods"],
                        }
                    ],
                    "namespaceSelector": {"matchLabels": {self.namespace_label: "true"}},
                    "objectSelector": {"matchLabels": {"app.kubernetes.io/component": "loop"}},
                    # A loop pod without its records would count its messages as lost: better
                    # not to create it (the operator tries again).
                    "failurePolicy": "Fail",
                    "sideEffects": "None",
                    "admissionReviewVersions": ["v1"],
                    "timeoutSeconds": 10,
                }
            ],
        }

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._dir.cleanup()
