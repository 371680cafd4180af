"""README.md stands on its own: every knob in it, nothing it points at outside the repository,
and its Python example runs again and again."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from stockade.entrypoints.settings import DATABASE_PASSWORD, SETTINGS

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()


def test_it_points_at_nothing_outside_the_repository():
    assert "../" not in README
    assert "CONTRACT" not in README and "shared/" not in README
    for target in re.findall(r"\]\(([^)#]+)\)", README):
        if not re.match(r"[a-z]+://", target):
            assert (ROOT / target).exists(), target


@pytest.mark.parametrize("variable", [s.variable for s in SETTINGS] + [DATABASE_PASSWORD])
def test_every_setting_is_in_its_configuration_table(variable):
    assert f"| `{variable}` |" in README


def test_every_default_in_the_table_is_the_one_the_code_has():
    for setting in SETTINGS:
        row = re.search(rf"^\| `{setting.variable}` \| ([^|]+) \|", README, re.M)
        assert row, setting.variable
        shown = row.group(1).strip().strip("`")
        assert shown == setting.default or (shown.startswith("unset") and setting.default.startswith("unset")), (
            setting.variable,
            shown,
            setting.default,
        )


@pytest.mark.parametrize(
    ("source", "variable_pattern"),
    [
        ("scripts/run-distributed.sh", r"\b(STOCKADE_[A-Z_]+)\b"),
        (".env.example", r"^([A-Z_]+)="),
    ],
)
def test_every_variable_of_run_distributed_and_of_the_compose_env_is_documented(source, variable_pattern):
    variables = set(re.findall(variable_pattern, (ROOT / source).read_text(), re.M))
    assert variables
    for variable in variables:
        assert f"`{variable}`" in README, f"{source}: {variable}"


def test_every_variable_the_makefile_lets_a_user_set_is_documented():
    for variable in re.findall(r"^(\w+)\s*\?=", (ROOT / "Makefile").read_text(), re.M):
        assert f"`{variable}`" in README, variable


def test_it_says_that_compose_v2_is_required():
    assert "Docker Compose v2" in README


def python_example() -> str:
    blocks = re.findall(r"```python\n(.*?)```", README, re.S)
    assert len(blocks) == 1
    return blocks[0]


def test_the_python_facade_example_runs_twice_on_the_same_database(tmp_path):
    for run in (1, 2):
        result = subprocess.run(
            [sys.executable, "-c", python_example()], cwd=tmp_path, capture_output=True, text=True, timeout=120
        )
        assert result.returncode == 0, f"run {run}:\n{result.stderr}"
        assert "sold out" in result.stdout
    assert (tmp_path / "demo.db").exists()
