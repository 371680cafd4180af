"""Installs are reproducible: the lock files match pyproject.toml, and make, the Dockerfile and
CI install from them."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
MAKEFILE = (ROOT / "Makefile").read_text()


def normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_name(requirement: str) -> str:
    return normalized(re.match(r"[A-Za-z0-9._-]+", requirement).group(0))


def pins(lock: str) -> dict[str, str]:
    text = (ROOT / "requirements" / lock).read_text()
    return {normalized(name): version for name, version in re.findall(r"^([A-Za-z0-9._-]+)==(\S+)", text, re.M)}


@pytest.mark.parametrize(
    ("lock", "extras"), [("serve.txt", []), ("test.txt", ["test", "lint"]), ("bench.txt", ["test", "lint", "bench"])]
)
def test_each_lock_pins_everything_its_install_needs(lock, extras):
    needed = list(PROJECT["dependencies"]) + [r for extra in extras for r in PROJECT["optional-dependencies"][extra]]
    locked = pins(lock)
    for requirement in needed:
        assert requirement_name(requirement) in locked, f"{lock} lacks {requirement}: run make lock"


def test_every_pin_is_hashed():
    for lock in ("serve.txt", "test.txt", "bench.txt"):
        blocks = re.split(r"\n(?=[A-Za-z])", (ROOT / "requirements" / lock).read_text())
        for block in blocks:
            if "==" in block.split("\n")[0]:
                assert "--hash=sha256:" in block, f"{lock}: {block.splitlines()[0]}"


def test_the_locks_agree_and_serving_gets_no_test_tool():
    serve, test = pins("serve.txt"), pins("test.txt")
    assert {name: test[name] for name in serve} == serve
    assert not {"pytest", "testcontainers", "hypothesis", "ruff", "mypy"} & set(serve)


def test_dependencies_are_spelled_with_their_extras_and_nothing_unused():
    dependencies = " ".join(PROJECT["dependencies"])
    assert "celery[redis]" in dependencies and "PyMySQL[rsa]" in dependencies
    assert "kombu" not in dependencies


def test_make_run_installs_the_serving_lock_with_progress_and_make_test_the_test_lock():
    assert re.search(r"^run: \$\(SERVE_STAMP\)", MAKEFILE, re.M)
    assert re.search(r"^test: \$\(STAMP\)", MAKEFILE, re.M)
    assert re.search(r"^\$\(SERVE_STAMP\): \$\(SERVE_LOCK\)", MAKEFILE, re.M)
    assert re.search(r"^\$\(STAMP\): \$\(TEST_LOCK\)", MAKEFILE, re.M)
    lock_install = next(line for line in MAKEFILE.splitlines() if "--require-hashes -r $(1)" in line)
    assert "--quiet" not in lock_install and "--progress-bar on" in lock_install
    assert re.search(r"^lock:", MAKEFILE, re.M)


def test_the_image_and_ci_install_from_the_locks():
    dockerfile = (ROOT / "docker" / "Dockerfile").read_text()
    assert "pip install --require-hashes -r serve.txt" in dockerfile
    assert "pip install --no-deps ." in dockerfile
    ci = (ROOT / ".ci" / "run").read_text()
    assert "make lint" in ci and "make test" in ci and "make format-check" in ci
