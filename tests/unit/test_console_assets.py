"""The built console shipped in the package: current with its sources, self-contained, complete."""

from __future__ import annotations

import hashlib
import json
import re

from tests.helpers import REPO

SOURCES = REPO / "src" / "ui"
BUILT = REPO / "src" / "hatchway" / "ui"


def sources_sha256() -> str:
    """The hash build.mjs records (keep in step with its sourceFiles/sourcesSha256)."""
    fixed = ["build.mjs", "index.html", "icon.svg", "package.json", "package-lock.json", "tsconfig.json"]
    names = fixed + [p.relative_to(SOURCES).as_posix() for p in (SOURCES / "src").rglob("*") if p.is_file()]
    digest = hashlib.sha256()
    for name in sorted(names):
        data = (SOURCES / name).read_bytes()
        digest.update(f"{name}\n{len(data)}\n".encode())
        digest.update(data)
    return digest.hexdigest()


def test_the_committed_build_was_made_from_the_current_sources() -> None:
    info = json.loads((BUILT / "build-info.json").read_text())
    assert info["sources_sha256"] == sources_sha256(), "the console's sources changed: run scripts/build-ui"
    for name in info["files"]:
        assert (BUILT / name).is_file(), name
    assert sorted(p.name for p in BUILT.iterdir()) == sorted([*info["files"], "build-info.json"])


def test_index_loads_only_files_of_its_own_origin() -> None:
    html = (BUILT / "index.html").read_text()
    referenced = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert referenced, html
    for ref in referenced:
        if ref == "../docs":
            continue
        assert "://" not in ref and not ref.startswith("/"), ref
        assert (BUILT / ref).is_file(), ref
    assert "<script>" not in html and "style=" not in html  # nothing inline: the CSP forbids it


def test_no_cdn_or_remote_code_in_the_bundle() -> None:
    for path in BUILT.glob("*.js"):
        text = path.read_text()
        for host in ("unpkg.com", "jsdelivr", "cdnjs", "googleapis", "cloudflare"):
            assert host not in text, (path.name, host)
        assert "eval(" not in text
