# syntax=docker/dockerfile:1
# The ostinato image: the runtime and the operator in one venv, running as a non-root user.
#
#   docker build -t ostinato .          (or: buildah build -t ostinato .)
#   docker run --rm ostinato --help
#   docker run --rm -v "$PWD/workflow.yaml:/workflow.yaml:ro" ostinato
#
# The base is any Debian-like image with python3 >= 3.11 and its venv module: python:3.11-slim
# by default, or (`make image-local`) a local debootstrap of Debian bookworm with python3 and
# python3-venv, passed as --build-arg PYTHON_IMAGE=... . Everything goes into the venv
# /opt/ostinato, so neither base's pip policy (PEP 668 on Debian's python3) is in the way.
#
# Stage 1 installs the project with the operator extra into the venv and drops pip from it;
# stage 2 copies the venv (no compiler, no pip, no caches) and the example node modules, then
# drops root. It needs nothing writable but /tmp (mount an emptyDir there on Kubernetes).

ARG PYTHON_IMAGE=python:3.11-slim

FROM ${PYTHON_IMAGE} AS builder
# Behind a TLS-inspecting proxy, pass the host's CA bundle for this stage only, e.g.
# `buildah build -v /etc/ssl/certs/ca-certificates.crt:/run/host-ca.crt:ro
#  --build-arg PIP_CERT=/run/host-ca.crt` (what `make image-local` does when the host has one).
ARG PIP_CERT
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
# Only what the package is built from (.dockerignore keeps the rest out of the context).
COPY pyproject.toml README.md ./
COPY runtime ./runtime
COPY operator ./operator
# kubernetes/aio (68 MB, the client's asyncio twin) is imported by nothing here: the operator
# uses kopf and the synchronous client.
RUN python3 -m venv /opt/ostinato \
 && /opt/ostinato/bin/pip install ".[operator]" \
 && /opt/ostinato/bin/pip uninstall --yes pip setuptools \
 && rm -rf /opt/ostinato/bin/activate* /opt/ostinato/bin/Activate.ps1 \
        /opt/ostinato/lib/python3*/site-packages/kubernetes/aio
# The examples' node modules (`demo_nodes:Sensor`, ...) are importable in every pod.
COPY examples /opt/ostinato/examples

FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="ostinato" \
      org.opencontainers.image.description="A workflow orchestrator for continuous loops of Python nodes" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=builder /opt/ostinato /opt/ostinato
ENV PATH=/opt/ostinato/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    PYTHONPATH=/opt/ostinato/examples \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
RUN groupadd --gid 10001 ostinato \
 && useradd --uid 10001 --gid 10001 --home-dir /home/ostinato --create-home \
        --shell /usr/sbin/nologin ostinato
WORKDIR /home/ostinato
USER 10001:10001
ENTRYPOINT ["ostinato"]
CMD ["run", "/workflow.yaml"]
