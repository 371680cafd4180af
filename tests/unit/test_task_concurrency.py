"""How many tasks one process runs at once: STOCKADE_TASK_CONCURRENCY and `worker --concurrency`."""

from __future__ import annotations

import pytest

from stockade.entrypoints.cli import parser
from stockade.entrypoints.settings import Settings, SettingsError


def test_task_concurrency_is_200_unless_set():
    assert Settings.from_env({}).task_concurrency == 200
    assert Settings.from_env({"STOCKADE_TASK_CONCURRENCY": "8"}).task_concurrency == 8


def test_a_task_concurrency_out_of_range_names_the_variable():
    with pytest.raises(SettingsError, match="STOCKADE_TASK_CONCURRENCY=0 is out of range"):
        Settings.from_env({"STOCKADE_TASK_CONCURRENCY": "0"})


def test_worker_concurrency_is_left_to_the_setting_unless_given():
    assert parser().parse_args(["worker"]).concurrency is None
    assert parser().parse_args(["worker", "--concurrency", "50"]).concurrency == 50


def test_a_worker_concurrency_below_one_is_refused_with_what_fits(capsys):
    with pytest.raises(SystemExit) as exited:
        parser().parse_args(["worker", "--concurrency", "0"])
    assert exited.value.code == 2
    assert "0 is too small; use 1 or more" in capsys.readouterr().err
