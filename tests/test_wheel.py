"""Build the wheel, install it into a fresh venv that cannot see the repository, and run
``gidx --help`` and ``gidx demo`` from it (no network: dependencies come from the dev
venv's site-packages through a .pth line, placed *after* the new venv's own)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import sysconfig
import venv
import zipfile
from pathlib import Path

import pytest

from conftest import REPO

SOURCES = ("pyproject.toml", "README.md", "LICENSE", "gidx", "cli", "migrations")
JUNK = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", "*.fai", "*.gzi", ".pytest_cache")


def _clean_env(**extra) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "PYTHONHOME", "GIDX_INDEX", "VIRTUAL_ENV", "PYTHONSTARTUP")}
    env.update(extra)
    return env


def _run(cmd, **kw) -> subprocess.CompletedProcess:
    p = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=300, **kw)
    assert p.returncode == 0, f"{cmd}\nstdout:\n{p.stdout[-3000:]}\nstderr:\n{p.stderr[-3000:]}"
    return p


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """Build from a copy of the sources, so no build/ or egg-info lands in the checkout
    (and a stale build/lib cannot leak files into the wheel)."""
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    src.mkdir()
    for name in SOURCES:
        p = REPO / name
        if p.is_dir():
            shutil.copytree(p, src / name, ignore=JUNK)
        elif p.exists():
            shutil.copy2(p, src / name)
    out = tmp / "dist"
    _run([sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", out, src], cwd=tmp, env=_clean_env())
    (whl,) = out.glob("gidx-*.whl")
    return whl


def test_wheel_contents(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    want = {f"gidx/cli/{p.name}" for p in (REPO / "cli").glob("*.py")}
    want |= {"gidx/migrations/env.py", "gidx/migrations/alembic.ini", "gidx/migrations/script.py.mako"}
    want |= {f"gidx/migrations/versions/{p.name}" for p in (REPO / "migrations" / "versions").glob("*.py")}
    want |= {f"gidx/{p.relative_to(REPO / 'gidx').as_posix()}" for p in (REPO / "gidx" / "data").rglob("*")
             if p.is_file() and "__pycache__" not in p.parts}
    want |= {f"gidx/{p.name}" for p in (REPO / "gidx").glob("*.py")}
    assert "gidx/data/sacCer3/S_cerevisiae.fasta.gz" in want
    assert len([n for n in want if n.startswith("gidx/data/sacCer3/bed/")]) >= 10
    assert len([n for n in want if n.startswith("gidx/migrations/versions/0")]) >= 1
    missing = sorted(want - names)
    assert not missing, f"missing from the wheel: {missing}"
    assert not [n for n in names if n.startswith(("tests/", "cli/", "migrations/"))]
    assert not [n for n in names if n.endswith((".pyc", ".fai", ".gzi"))]
    (ep,) = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
    assert re.search(r"^gidx\s*=\s*gidx\.cli\.main:main$", zipfile.ZipFile(wheel).read(ep).decode(), re.M)


def test_installed_wheel_runs_demo(wheel, tmp_path):
    """A fresh venv, the wheel installed into it, dependencies borrowed read-only from the
    dev venv; cwd and TMPDIR are tmp_path, so neither the checkout nor /tmp is touched."""
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=False, symlinks=os.name != "nt").create(env_dir)
    py = env_dir / "bin" / "python"
    site = Path(_run([py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).stdout.strip())
    dev_site = Path(sysconfig.get_paths()["purelib"])
    # dependencies: appended to sys.path after the new venv's own site-packages; .pth files
    # inside dev_site (the editable-install finder of gidx) are NOT processed from here
    (site / "zz_dev_deps.pth").write_text(f"{dev_site}\n")
    # install the wheel with the dev venv's pip, targeting the new interpreter (no network)
    _run([sys.executable, "-m", "pip", "--python", py, "install", "--no-deps", "--no-index", "--no-cache-dir",
          "--disable-pip-version-check", "-q", wheel], env=_clean_env())

    env = _clean_env(TMPDIR=str(tmp_path), HOME=str(tmp_path))
    probe = _run([py, "-c", "import gidx, gidx.cli.main, gidx.migrations, sys; "
                            "print(gidx.__file__); print(gidx.cli.main.__file__); print(gidx.migrations_path()); "
                            "print('\\n'.join(sys.path))"], cwd=tmp_path, env=env).stdout.splitlines()
    for path in probe[:3]:
        assert Path(path).resolve().is_relative_to(site.resolve()), (path, site)
    assert str(REPO) not in probe[3:], "the repository is on sys.path of the fresh venv"

    installed_data = site / "gidx" / "data"
    files_before = sorted(installed_data.rglob("*"))

    gidx_exe = env_dir / "bin" / "gidx"
    p = _run([gidx_exe, "--help"], cwd=tmp_path, env=env)
    for cmd in ("init", "ingest", "query", "sql", "info", "ls", "rm", "demo"):
        assert re.search(rf"\b{cmd}\b", p.stdout), cmd

    p = _run([gidx_exe, "demo"], cwd=tmp_path, env=env)
    lines = p.stdout.strip().splitlines()
    header = lines[0].split()
    assert header[:4] == ["rank", "record_id", "record", "score"]
    first = lines[1].split()
    assert first[0] == "1" and first[2] == "winston_annotations/Scer_transcripts_w_verifiedORFs-nonoverlapping"
    assert float(first[3]) == pytest.approx(1, abs=1e-5)
    assert len(lines) == 11  # header + k=10 rows
    assert "Try next" in p.stderr

    # the demo index went under TMPDIR, was built by the packaged migrations, and works
    m = re.search(r"the index stays in (\S+?)\)", p.stderr)
    assert m, p.stderr
    demo_idx = Path(m.group(1))
    assert demo_idx.resolve().is_relative_to(tmp_path.resolve())
    p = _run([gidx_exe, "info", "-i", demo_idx, "--format", "json"], cwd=tmp_path, env=env)
    import json

    from gidx.catalog import SCHEMA_HEAD

    info = json.loads(p.stdout)
    assert info["schema_revision"] == SCHEMA_HEAD and info["records"] >= 10
    # nothing was written next to the installed data (FASTA indexes live in the index's cache)
    assert sorted(installed_data.rglob("*")) == files_before
