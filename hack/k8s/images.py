"""Images without a registry: pause from source, a debootstrap Python base, the project's image."""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

from pydantic import BaseModel, Field

from hack.k8s import binaries, debian

PAUSE_REF = "localhost/pause:3.4"
BASE_REF = "localhost/ostinato-base:bookworm"
IMAGE_REF = "localhost/ostinato:dev"
# The containerd label that records which inputs an imported image was built from.
INPUTS_LABEL = "ostinato.dev/inputs"
# Bump when the way the base or pause image is made changes, so caches are rebuilt.
RECIPE_VERSION = "1"
REPO_ROOT = Path(__file__).resolve().parents[2]
# What the project's image is built from (the Dockerfile's COPY lines plus the two build files).
IMAGE_INPUTS = (
    "Dockerfile",
    ".dockerignore",
    "pyproject.toml",
    "README.md",
    "runtime",
    "operator",
    "examples",
)


class ImageSettings(BaseModel):
    """How the local images are made."""

    suite: str = Field(
        "bookworm", description="Debian suite of the base; bookworm's python3 is 3.11, as required"
    )
    mirror: str = Field(
        "http://deb.debian.org/debian", description="Debian mirror debootstrap fetches from"
    )
    packages: tuple[str, ...] = Field(
        ("python3", "python3-venv"),
        description="packages on top of minbase: the Dockerfile needs python3 and its venv module",
    )
    build_timeout: float = Field(
        1800.0,
        gt=0,
        description="seconds one debootstrap or buildah build may take; about 90 s each here, "
        "the rest is room for a slow mirror",
    )


def images_dir() -> Path:
    return binaries.cache_root() / "images"


def _log(message: str) -> None:
    print(f"[hack.k8s.images] {message}", file=sys.stderr, flush=True)


def _run(
    argv: Sequence[str], *, timeout: float = 600.0, cwd: Path | None = None, log: Path | None = None
) -> str:
    """Run a command; its stdout, or RuntimeError with the end of its output."""
    if log is not None:
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "a") as out:
            out.write(f"$ {' '.join(argv)}\n")
            out.flush()
            result = subprocess.run(
                list(argv), cwd=cwd, stdout=out, stderr=subprocess.STDOUT, timeout=timeout
            )
        if result.returncode != 0:
            lines = log.read_text(errors="replace").splitlines()[-20:]
            raise RuntimeError(
                f"`{' '.join(argv)}` exited {result.returncode}; end of {log}:\n" + "\n".join(lines)
            )
        return ""
    done = subprocess.run(
        list(argv), cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"`{' '.join(argv)}` exited {done.returncode}: {done.stderr.strip()}")
    return done.stdout


def buildah(*args: str, timeout: float = 600.0, log: Path | None = None) -> str:
    """buildah with its storage in the cache, so the project's images stay out of the system's."""
    storage = images_dir() / "buildah"
    argv = [
        "buildah",
        "--root",
        str(storage / "storage"),
        "--runroot",
        "/run/ostinato-buildah",
        "--storage-driver",
        "overlay",
        *args,
    ]
    return _run(argv, timeout=timeout, log=log)


def _has_image(ref: str) -> bool:
    try:
        buildah("inspect", "--type", "image", "--format", "{{.FromImageID}}", ref)
    except RuntimeError:
        return False
    return True


def _digest(parts: Iterable[bytes]) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(len(part).to_bytes(8, "big"))
        h.update(part)
    return h.hexdigest()[:32]


def _stamp(name: str) -> Path:
    return images_dir() / f"{name}.inputs"


def _fresh(name: str, inputs: str, archive: Path | None = None) -> bool:
    try:
        recorded = _stamp(name).read_text().strip()
    except OSError:
        return False
    return recorded == inputs and (archive is None or archive.is_file())


def _record(name: str, inputs: str) -> None:
    path = _stamp(name)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(inputs + "\n")
    os.replace(tmp, path)


def _export(ref: str, archive: Path) -> None:
    """A docker-archive of `ref` (its RepoTags name the image for `ctr images import`)."""
    tmp = archive.with_name(archive.name + ".tmp")
    tmp.unlink(missing_ok=True)
    buildah("push", "--quiet", ref, f"docker-archive:{tmp}:{ref}")
    os.replace(tmp, archive)


# -- pause -------------------------------------------------------------------------------


def _kubernetes_tarball() -> Path:
    """Debian's kubernetes source tarball, which the binaries' build keeps in the cache."""
    pattern = "build/k8s-*/download/kubernetes_*.orig.tar.gz"
    found = sorted(binaries.cache_root().glob(pattern))
    if not found:
        download = images_dir() / "kubernetes-source"
        download.mkdir(parents=True, exist_ok=True)
        found = sorted(download.glob("kubernetes_*.orig.tar.gz"))
        if not found:
            try:
                # `make image-local` may come first on a new machine: no deb-src entry yet.
                binaries.add_deb_src()
                _run(["apt-get", "source", "--download-only", "kubernetes"], cwd=download)
            except RuntimeError as exc:
                raise binaries.Unavailable(
                    "pause image: no Kubernetes source tarball; run `make k8s-binaries` "
                    f"(it adds deb-src and downloads it) ({exc})"
                ) from exc
            found = sorted(download.glob("kubernetes_*.orig.tar.gz"))
    if not found:
        raise binaries.Unavailable("pause image: apt-get source kubernetes gave no tarball")
    return found[-1]


def ensure_pause() -> Path:
    """The pause image (`gcc -Os -static` of Kubernetes' pause.c) as a docker-archive."""
    archive = images_dir() / "pause.tar"
    inputs = _digest([RECIPE_VERSION.encode(), PAUSE_REF.encode()])
    if _fresh("pause", inputs, archive):
        return archive
    debian.ensure_packages(debian.IMAGE_PACKAGES)
    started = time.monotonic()
    tarball = _kubernetes_tarball()
    with tempfile.TemporaryDirectory(prefix="ostinato-pause-") as tmp:
        work = Path(tmp)
        with tarfile.open(tarball) as source:
            member = next(
                (m for m in source if m.name.endswith("/build/pause/linux/pause.c")), None
            )
            if member is None:
                raise RuntimeError(f"{tarball} has no build/pause/linux/pause.c")
            handle = source.extractfile(member)
            if handle is None:
                raise RuntimeError(f"{tarball}: {member.name} is not a file")
            (work / "pause.c").write_bytes(handle.read())
        # The flags of build/pause/Makefile (TAG 3.4), VERSION naming where it came from.
        _run(
            [
                *("gcc", "-Os", "-Wall", "-Werror", "-static", "-DVERSION=v3.4-ostinato"),
                *("-o", "pause", "pause.c"),
            ],
            cwd=work,
        )
        _run(["strip", "pause"], cwd=work)
        container = buildah("from", "scratch").strip()
        try:
            buildah("copy", "--chmod", "0755", container, str(work / "pause"), "/pause")
            buildah(
                "config",
                "--entrypoint",
                '["/pause"]',
                "--user",
                "65535:65535",
                "--label",
                f"{INPUTS_LABEL}={inputs}",
                container,
            )
            buildah("commit", "--quiet", "--rm", container, PAUSE_REF)
        except BaseException:
            with contextlib.suppress(RuntimeError):
                buildah("rm", container)
            raise
    _export(PAUSE_REF, archive)
    _record("pause", inputs)
    _log(f"pause image built in {time.monotonic() - started:.1f} s")
    return archive


# -- the Debian + Python base ------------------------------------------------------------

# Left out of the base: apt's caches and lists, documentation (copyright files stay), locales.
_TRIM = ("var/cache/apt", "var/lib/apt/lists", "usr/share/man", "usr/share/info")


def _trim(rootfs: Path) -> None:
    for rel in _TRIM:
        target = rootfs / rel
        if target.is_dir():
            for child in target.iterdir():
                if child.is_dir() and not child.is_symlink():
                    shutil.rmtree(child)
                else:
                    child.unlink()
    locale = rootfs / "usr/share/locale"
    if locale.is_dir():
        for child in locale.iterdir():
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child)
    for path in (rootfs / "usr/share/doc").rglob("*"):
        if (path.is_file() or path.is_symlink()) and path.name != "copyright":
            path.unlink()
    for log in (rootfs / "var/log").rglob("*"):
        if log.is_file() and not log.is_symlink():
            log.write_bytes(b"")


def ensure_base(settings: ImageSettings | None = None) -> str:
    """Debian minbase + python3 (+ venv) from debootstrap, as a local buildah image; its ref."""
    settings = settings or ImageSettings()
    inputs = _digest(
        [
            RECIPE_VERSION.encode(),
            settings.suite.encode(),
            settings.mirror.encode(),
            ",".join(settings.packages).encode(),
        ]
    )
    if _fresh("base", inputs) and _has_image(BASE_REF):
        return BASE_REF
    debian.ensure_packages(debian.IMAGE_PACKAGES)
    started = time.monotonic()
    work = images_dir() / "base-build"
    shutil.rmtree(work, ignore_errors=True)
    rootfs = work / "rootfs"
    rootfs.mkdir(parents=True)
    log = work / "debootstrap.log"
    try:
        _run(
            [
                "debootstrap",
                "--variant=minbase",
                f"--include={','.join(settings.packages)}",
                settings.suite,
                str(rootfs),
                settings.mirror,
            ],
            timeout=settings.build_timeout,
            log=log,
        )
        _trim(rootfs)
        layer = work / "rootfs.tar"
        _run(["tar", "-C", str(rootfs), "--numeric-owner", "-cf", str(layer), "."])
        container = buildah("from", "scratch").strip()
        try:
            buildah("add", container, str(layer), "/", timeout=settings.build_timeout)
            buildah(
                "config",
                "--env",
                "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                "--env",
                "LANG=C.UTF-8",
                "--cmd",
                "/usr/bin/python3",
                "--label",
                f"{INPUTS_LABEL}={inputs}",
                container,
            )
            buildah("commit", "--quiet", "--rm", container, BASE_REF)
        except BaseException:
            with contextlib.suppress(RuntimeError):
                buildah("rm", container)
            raise
    finally:
        shutil.rmtree(rootfs, ignore_errors=True)
        (work / "rootfs.tar").unlink(missing_ok=True)
    _record("base", inputs)
    _log(f"base image {BASE_REF} built in {time.monotonic() - started:.1f} s")
    return BASE_REF


# -- the project's image -----------------------------------------------------------------


def project_inputs(repo: Path = REPO_ROOT, base_id: str = "") -> str:
    """A hash of everything the image is built from; a change to any of it means a rebuild."""
    parts: list[bytes] = [RECIPE_VERSION.encode(), base_id.encode()]
    for top in IMAGE_INPUTS:
        path = repo / top
        files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        for file in files:
            rel = file.relative_to(repo)
            if "__pycache__" in rel.parts or ".mypy_cache" in rel.parts or file.suffix == ".pyc":
                continue
            parts.append(str(rel).encode())
            parts.append(file.read_bytes() if file.exists() else b"<missing>")
    return _digest(parts)


def _host_ca_bundle() -> Path | None:
    """The host's CA bundle when pip is told to use one (a TLS-inspecting proxy), else None."""
    for variable in ("PIP_CERT", "REQUESTS_CA_BUNDLE", "SSL_CERT_FILE"):
        value = os.environ.get(variable)
        if value and Path(value).is_file():
            return Path(value)
    return None


def ensure_project_image(
    repo: Path = REPO_ROOT, settings: ImageSettings | None = None
) -> tuple[Path, str]:
    """The project's Dockerfile built with buildah on the local base: (docker-archive, inputs)."""
    settings = settings or ImageSettings()
    base = ensure_base(settings)
    base_id = buildah("inspect", "--type", "image", "--format", "{{.FromImageID}}", base).strip()
    inputs = project_inputs(repo, base_id)
    archive = images_dir() / "ostinato-dev.tar"
    if _fresh("ostinato-dev", inputs, archive):
        return archive, inputs
    started = time.monotonic()
    log = images_dir() / "ostinato-dev.build.log"
    log.unlink(missing_ok=True)
    argv = [
        "build",
        "--network",
        "host",
        "--pull=never",
        "--layers=false",
        "--build-arg",
        f"PYTHON_IMAGE={base}",
        "--label",
        f"{INPUTS_LABEL}={inputs}",
        "--tag",
        IMAGE_REF,
        "--file",
        str(repo / "Dockerfile"),
    ]
    ca = _host_ca_bundle()
    if ca is not None:
        argv += [
            "--volume",
            f"{ca}:/run/host-ca.crt:ro",
            "--build-arg",
            "PIP_CERT=/run/host-ca.crt",
        ]
    buildah(*argv, str(repo), timeout=settings.build_timeout, log=log)
    # The previous build's image is now untagged: drop it (and its ~190 MB layer).
    buildah("rmi", "--prune")
    _export(IMAGE_REF, archive)
    _record("ostinato-dev", inputs)
    _log(f"{IMAGE_REF} built in {time.monotonic() - started:.1f} s (log: {log})")
    return archive, inputs


# -- into containerd ---------------------------------------------------------------------


def ctr(address: Path, *args: str, timeout: float = 300.0) -> str:
    return _run(["ctr", "--address", str(address), "--namespace", "k8s.io", *args], timeout=timeout)


def imported_inputs(address: Path, ref: str) -> str | None:
    """The inputs label of `ref` in containerd's k8s.io namespace, or None when absent."""
    listing = ctr(address, "images", "list", f"name=={ref}")
    for line in listing.splitlines()[1:]:
        fields = line.split()
        if fields and fields[0] == ref:
            for label in fields[-1].split(","):
                key, _, value = label.partition("=")
                if key == INPUTS_LABEL:
                    return value
            return ""
    return None


def import_image(address: Path, archive: Path, ref: str, inputs: str) -> bool:
    """Import `archive` as `ref` unless containerd already has it from these inputs."""
    if imported_inputs(address, ref) == inputs:
        return False
    started = time.monotonic()
    ctr(address, "images", "import", str(archive))
    ctr(address, "images", "label", ref, f"{INPUTS_LABEL}={inputs}")
    _log(f"imported {ref} into containerd in {time.monotonic() - started:.1f} s")
    return True


def pause_inputs() -> str:
    return _stamp("pause").read_text().strip()
