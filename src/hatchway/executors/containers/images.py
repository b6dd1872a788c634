"""The action base image, built with or without a registry.

``hatchway/action-base:<python>`` is Python, the hatchway runtime (``hatchway.runtime``, standard
library only, copied whole with the package's import-free ``__init__.py``) and ``awslambdaric``, so an
action image built ``FROM`` it runs the same way under ``docker run``, as a container Lambda and
under the Runtime Interface Emulator. The recipe is ``infra/images/Dockerfile``; its root is
an official ``python:<v>-slim`` image when the engine has or can pull one, else a Debian root file
system made with ``debootstrap`` and ``docker import``-ed (Debian's own Python: 3.11 on bookworm,
3.13 on trixie). Everything the build needs is staged on the host (wheels downloaded with the
host's pip for the image's Python and platform, the runtime's source, the host's CA bundle), so the
build itself needs no network.

Idempotent and cached: the root file system is built once per Debian suite, and the base image is
rebuilt only when its inputs change (their hash is a label of the image).

    python -m hatchway.executors.containers.images base [--python 3.11] [--force] [--lambda-python]

``--lambda-python`` also builds ``hatchway/lambda-python:<python>``, an emulation image of the
AWS python runtime for ``sam local invoke --invoke-image`` where the public Lambda images
cannot be pulled.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hatchway.errors import Unavailable

BASE_REPOSITORY = "hatchway/action-base"
LAMBDA_PYTHON_REPOSITORY = "hatchway/lambda-python"
ROOTFS_REPOSITORY = "hatchway/rootfs"
DEFAULT_PYTHON = "3.11"
#: Debian suites whose own python3 is the given version (for building without a registry)
DEBIAN_SUITES = {"3.11": "bookworm", "3.13": "trixie"}
DEBIAN_MIRROR = "http://deb.debian.org/debian"
#: src/hatchway and the source checkout around it
PACKAGE = Path(__file__).resolve().parents[2]
CHECKOUT = PACKAGE.parents[1]
CA_BUNDLES = ("/etc/ssl/certs/ca-certificates.crt", "/etc/pki/tls/certs/ca-bundle.crt")

Log = Callable[[str], None]


def base_tag(python: str = DEFAULT_PYTHON) -> str:
    return f"{BASE_REPOSITORY}:{python}"


def recipe_dir() -> Path:
    """``infra/images`` of this source checkout."""
    here = CHECKOUT / "infra" / "images"
    if not (here / "Dockerfile").is_file():
        raise Unavailable("infra/images/Dockerfile is not here: build the base image from a hatchway checkout")
    return here


def _platform_tag() -> str:
    machine = platform.machine()
    return {"x86_64": "manylinux2014_x86_64", "aarch64": "manylinux2014_aarch64"}.get(machine, machine)


def _wheels(python: str, log: Log, requirements: tuple[str, ...] = ("awslambdaric",), name: str = "") -> Path:
    """``requirements`` and their dependencies as wheels for ``python`` on this platform (cached)."""
    key = hashlib.sha256("\n".join(requirements).encode()).hexdigest()[:8]
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "hatchway" / f"wheels-{python}-{key}"
    marker = cache / ".complete"
    if marker.exists():
        return cache
    cache.mkdir(parents=True, exist_ok=True)
    log(f"downloading {name or ', '.join(requirements)} wheels for Python {python}")
    argv = [sys.executable, "-m", "pip", "download", "--quiet", "--only-binary=:all:", "--dest", str(cache),
            "--platform", _platform_tag(), "--python-version", python, "--implementation", "cp",
            *requirements]  # fmt: skip
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise Unavailable(f"could not download wheels for Python {python}: {done.stderr.strip()[-500:]}")
    marker.touch()
    return cache


def copy_runtime(target: Path) -> list[Path]:
    """Copy what action images carry of the package into ``target/hatchway``: its ``__init__.py``
    (import-free) and ``runtime/`` whole (standard library only); the files copied, sorted."""
    root = target / "hatchway"
    root.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(PACKAGE / "__init__.py", root / "__init__.py")
    shutil.copytree(PACKAGE / "runtime", root / "runtime", ignore=shutil.ignore_patterns("__pycache__", "*.py[co]"))
    return sorted(path for path in root.rglob("*") if path.is_file())


def _stage(context: Path, python: str, log: Log) -> str:
    """Fill the build context; answer the hash of everything that goes into the image."""
    recipe = recipe_dir()
    digest = hashlib.sha256()
    shutil.copy(recipe / "Dockerfile", context / "Dockerfile")
    digest.update((recipe / "Dockerfile").read_bytes())
    for path in copy_runtime(context):
        digest.update(path.relative_to(context).as_posix().encode() + b"\0" + path.read_bytes())
    wheels = context / "wheels"
    shutil.copytree(_wheels(python, log), wheels, ignore=shutil.ignore_patterns(".complete"))
    for wheel in sorted(wheels.iterdir()):
        digest.update(wheel.name.encode())
    certs = context / "certs"
    certs.mkdir()
    for bundle in CA_BUNDLES:
        if Path(bundle).is_file():
            shutil.copy(bundle, certs / "ca-certificates.crt")
            break
    return digest.hexdigest()[:16]


def _image(client: Any, ref: str) -> Any:
    import docker.errors

    try:
        return client.images.get(ref)
    except docker.errors.ImageNotFound:
        return None


def _root(client: Any, python: str, log: Log) -> str:
    """The image the base is built on: an official python image if there is one, else Debian's."""
    import docker.errors

    official = f"python:{python}-slim"
    if _image(client, official) is not None:
        return official
    try:
        log(f"pulling {official}")
        client.images.pull(official)
        return official
    except docker.errors.APIError as exc:
        log(f"no registry ({_short(exc)}); building the root file system from Debian packages")
    return _debian_root(client, python, log)


def _debian_root(client: Any, python: str, log: Log) -> str:
    suite = DEBIAN_SUITES.get(python)
    if suite is None:
        raise Unavailable(
            f"Python {python} needs a registry (python:{python}-slim); without one, Debian provides "
            f"{', '.join(DEBIAN_SUITES)}"
        )
    ref = f"{ROOTFS_REPOSITORY}:{suite}"
    if _image(client, ref) is not None:
        return ref
    if shutil.which("debootstrap") is None:
        raise Unavailable("no registry and no debootstrap: apt-get install debootstrap (or give the engine a registry)")
    with tempfile.TemporaryDirectory(prefix="hatchway-rootfs-") as tmp:
        root = Path(tmp) / "root"
        log(f"debootstrap {suite} (about a minute, once)")
        argv = ["debootstrap", "--variant=minbase", "--include=python3,python3-pip,ca-certificates",
                suite, str(root), DEBIAN_MIRROR]  # fmt: skip
        done = subprocess.run(argv, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise Unavailable(f"debootstrap failed: {(done.stdout + done.stderr).strip()[-800:]}")
        # a smaller image: no apt lists, caches or docs
        for junk in ("var/lib/apt/lists", "var/cache/apt", "usr/share/doc", "usr/share/man", "usr/share/locale"):
            shutil.rmtree(root / junk, ignore_errors=True)
        tarball = Path(tmp) / "root.tar"
        subprocess.run(["tar", "-C", str(root), "-cf", str(tarball), "."], check=True)
        log(f"importing {ref}")
        client.api.import_image_from_file(str(tarball), repository=ROOTFS_REPOSITORY, tag=suite)
    return ref


def _short(exc: BaseException) -> str:
    return str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__


def build_base(client: Any, python: str = DEFAULT_PYTHON, force: bool = False, log: Log | None = None) -> str:
    """Build ``hatchway/action-base:<python>`` unless an image of the same recipe exists; its tag."""
    say: Log = log or (lambda line: None)
    tag = base_tag(python)
    with tempfile.TemporaryDirectory(prefix="hatchway-base-") as tmp:
        context = Path(tmp)
        recipe_hash = _stage(context, python, say)
        existing = _image(client, tag)
        if existing is not None and not force and existing.labels.get("io.hatchway.base-hash") == recipe_hash:
            say(f"{tag} is up to date")
            return tag
        root = _root(client, python, say)
        say(f"building {tag} on {root}")
        _docker_build(client, context, tag, {"ROOT": root, "PYTHON": python, "BASE_HASH": recipe_hash})
    say(f"built {tag}")
    return tag


def _project_requirements() -> tuple[str, ...]:
    """hatchway's dependencies with the ``aws`` extra (the deployed functions use the aws backend)."""
    import tomllib

    pyproject = CHECKOUT / "pyproject.toml"
    with pyproject.open("rb") as handle:
        project = tomllib.load(handle)["project"]
    return (*project["dependencies"], *project.get("optional-dependencies", {}).get("aws", []))


def build_lambda_python(client: Any, python: str = DEFAULT_PYTHON, log: Log | None = None) -> str:
    """Build ``hatchway/lambda-python:<python>`` (base image + hatchway's dependencies + a runtime
    bootstrap) for ``sam local invoke --invoke-image``; its tag."""
    say: Log = log or (lambda line: None)
    base = ensure_base(client, python, log)
    tag = f"{LAMBDA_PYTHON_REPOSITORY}:{python}"
    with tempfile.TemporaryDirectory(prefix="hatchway-lambda-python-") as tmp:
        context = Path(tmp)
        recipe = recipe_dir() / "lambda-python.Dockerfile"
        shutil.copy(recipe, context / "Dockerfile")
        requirements = _project_requirements()
        wheels = _wheels(python, say, requirements, "hatchway's dependencies")
        shutil.copytree(wheels, context / "wheels", ignore=shutil.ignore_patterns(".complete"))
        digest = hashlib.sha256(recipe.read_bytes() + client.images.get(base).id.encode())
        digest.update("\n".join(sorted(p.name for p in (context / "wheels").iterdir())).encode())
        recipe_hash = digest.hexdigest()[:16]
        existing = _image(client, tag)
        if existing is not None and existing.labels.get("io.hatchway.base-hash") == recipe_hash:
            say(f"{tag} is up to date")
            return tag
        say(f"building {tag}")
        _docker_build(client, context, tag, {"BASE": base, "BASE_HASH": recipe_hash})
    say(f"built {tag}")
    return tag


def _docker_build(client: Any, context: Path, tag: str, args: dict[str, str]) -> None:
    lines: list[str] = []
    for chunk in client.api.build(path=str(context), tag=tag, buildargs=args, rm=True, forcerm=True, decode=True):
        if "stream" in chunk:
            lines.extend(chunk["stream"].splitlines())
        if "error" in chunk:
            tail = "\n".join([*lines[-20:], chunk["error"]])
            raise Unavailable(f"building {tag} failed:\n{tail}")


def ensure_base(client: Any, python: str = DEFAULT_PYTHON, log: Log | None = None) -> str:
    """The base image's tag, building it only if it is missing."""
    tag = base_tag(python)
    if _image(client, tag) is not None:
        return tag
    return build_base(client, python, log=log)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m hatchway.executors.containers.images", description=__doc__.split("\n\n")[0]
    )
    sub = parser.add_subparsers(dest="command", required=True)
    base = sub.add_parser("base", help="build hatchway/action-base:<python>")
    base.add_argument("--python", default=DEFAULT_PYTHON)
    base.add_argument("--force", action="store_true", help="rebuild even if up to date")
    base.add_argument(
        "--lambda-python", action="store_true", help="also build hatchway/lambda-python (for sam local invoke)"
    )
    args = parser.parse_args(argv)
    from hatchway.config import Settings
    from hatchway.executors.containers.client import docker_client

    try:
        client = docker_client(Settings.from_env().executors.docker_host)
        say: Log = lambda line: print(line, file=sys.stderr, flush=True)  # noqa: E731
        tag = build_base(client, args.python, args.force, log=say)
        if args.lambda_python:
            print(tag)
            tag = build_lambda_python(client, args.python, log=say)
    except Unavailable as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 1
    print(tag)
    return 0


if __name__ == "__main__":
    sys.exit(main())
