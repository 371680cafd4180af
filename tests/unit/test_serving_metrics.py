"""The Prometheus multiprocess folder of `stockade serve`: nothing of a run is left behind."""

from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace

from stockade.entrypoints.gunicorn_app import _worker_exited, multiprocess_metrics


def test_a_folder_made_for_several_workers_is_removed_when_the_server_stops(monkeypatch):
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)

    with multiprocess_metrics(workers=2):
        folder = Path(os.environ["PROMETHEUS_MULTIPROC_DIR"])
        (folder / "counter_123.db").write_bytes(b"x")

    assert not folder.exists()
    assert "PROMETHEUS_MULTIPROC_DIR" not in os.environ


def test_a_given_folder_is_emptied_of_an_earlier_runs_files(monkeypatch, tmp_path):
    (tmp_path / "counter_1.db").write_bytes(b"old")
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))

    with multiprocess_metrics(workers=4):
        assert list(tmp_path.iterdir()) == []
    assert tmp_path.exists()


def test_a_dead_workers_live_gauges_are_dropped(monkeypatch, tmp_path):
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    (tmp_path / "gauge_livesum_4242.db").write_bytes(b"x")
    (tmp_path / "counter_4242.db").write_bytes(b"x")

    _worker_exited(None, SimpleNamespace(pid=4242))

    assert sorted(p.name for p in tmp_path.iterdir()) == ["counter_4242.db"]  # counters keep counting
