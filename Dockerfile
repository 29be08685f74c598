# syntax=docker/dockerfile:1
# The ostinato image: `ostinato` on python:3.11-slim, running as a non-root user.
#
#   docker build -t ostinato .          (or: buildah build -t ostinato .)
#   docker run --rm -v "$PWD/workflow.yaml:/workflow.yaml:ro" ostinato
#   docker run --rm ostinato --help
#
# Stage 1 builds the project's wheel and the wheels of its dependencies; stage 2 installs them
# offline (no compiler, no build tools, no pip cache) and drops root. See docs/running.md.

ARG PYTHON_IMAGE=python:3.11-slim

FROM ${PYTHON_IMAGE} AS builder
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
# Only what the wheel is built from (.dockerignore keeps the rest out of the context).
COPY pyproject.toml README.md ./
COPY runtime ./runtime
COPY operator ./operator
RUN pip wheel --wheel-dir /wheels .

FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="ostinato" \
      org.opencontainers.image.description="A workflow orchestrator for continuous loops of Python nodes" \
      org.opencontainers.image.licenses="Apache-2.0"
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
# The wheels are bind-mounted from the builder for this one step, so they add no layer.
RUN --mount=type=bind,from=builder,source=/wheels,target=/wheels \
    pip install --no-index --find-links=/wheels ostinato \
 && groupadd --gid 10001 ostinato \
 && useradd --uid 10001 --gid 10001 --home-dir /home/ostinato --create-home \
        --shell /usr/sbin/nologin ostinato
WORKDIR /home/ostinato
USER 10001:10001
ENTRYPOINT ["ostinato"]
CMD ["run", "/workflow.yaml"]
