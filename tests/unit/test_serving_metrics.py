"""The Prometheus multiprocess folder of `stockade serve`: nothing of a run is left behind, and
every worker counts in files of its own; counts wait in a tally and are written together."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from types import SimpleNamespace

import falcon
import falcon.testing
import pytest
from prometheus_client import CollectorRegistry, Counter, Histogram, multiprocess

from stockade.application.tracing import request_id
from stockade.entrypoints.gunicorn_app import _worker_exited, multiprocess_metrics
from stockade.entrypoints.http.metrics import Tally
from stockade.entrypoints.http.observability import RequestMiddleware


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


def test_a_worker_forked_after_counting_counts_in_its_own_files_and_only_its_own_counts(tmp_path):
    """The pid a value writes under is read once per process, and counts wait in the tally
    before they are written: a forked child must get files of its own (or the parent's next
    write would overwrite the child's count), and must not write the parent's waiting counts."""
    script = textwrap.dedent(
        """
        import os
        from stockade.entrypoints.http.metrics import TALLY, Metrics
        requests = Metrics().requests.labels("GET", "/x", "200")
        requests.inc()
        TALLY.count(requests.inc)  # waits in the parent's tally across the fork
        child = os.fork()
        if child == 0:
            TALLY.count(requests.inc)
            TALLY.write()
            os._exit(0)
        os.waitpid(child, 0)
        requests.inc()
        TALLY.write()
        print(child)
        """
    )
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    child = int(done.stdout)

    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=str(tmp_path))
    assert (
        registry.get_sample_value("stockade_http_requests_total", {"method": "GET", "route": "/x", "status": "200"})
        == 4
    )
    assert (tmp_path / f"counter_{child}.db").exists()


def test_a_tallied_histogram_matches_one_observed_directly():
    """The tally files each duration under the first bucket that holds it, bounds included."""
    direct = Histogram("direct_seconds", "d", buckets=(0.1, 1), registry=CollectorRegistry())
    tallied_registry = CollectorRegistry()
    tallied = Histogram("tallied_seconds", "t", buckets=(0.1, 1), registry=tallied_registry)
    requests = Counter("tallied_requests", "r", registry=tallied_registry)
    tally = Tally(seconds=3600)
    for seconds in (0.05, 0.1, 0.5, 1, 2):
        direct.observe(seconds)
        tally.observe(tallied, seconds, requests.inc)
    assert tallied_registry.get_sample_value("tallied_seconds_count") == 0  # nothing written yet

    tally.write()
    assert tallied_registry.get_sample_value("tallied_requests_total") == 5  # one per observation

    def samples(histogram: Histogram, name: str) -> dict:
        return {(s.name.removeprefix(name), tuple(s.labels.items())): s.value for s in histogram.collect()[0].samples}

    assert samples(tallied, "tallied") == samples(direct, "direct")
    assert samples(direct, "direct")[("_seconds_bucket", (("le", "0.1"),))] == 2


def test_tallied_counts_are_written_without_a_scrape_within_the_interval():
    registry = CollectorRegistry()
    counter = Counter("written_total", "w", registry=registry)
    tally = Tally(seconds=0.05)
    for _ in range(3):
        tally.count(counter.inc)
    deadline = time.monotonic() + 10  # generous: a loaded machine may run the writer late
    while registry.get_sample_value("written_total") != 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert registry.get_sample_value("written_total") == 3


def test_a_request_whose_count_fails_still_leaves_no_request_id_behind():
    """The request id is the context of every log line of its request; a count that raises
    (a metrics file that cannot be written) must not leave it set for whatever runs next."""

    class FailingCounts:
        def record(self, *args) -> None:
            raise OSError("metrics file not writable")

    middleware = RequestMiddleware(FailingCounts())  # type: ignore[arg-type]
    req = falcon.testing.create_req(path="/healthz", headers={"X-Request-ID": "abc-123"})
    resp = falcon.Response()
    middleware.process_request(req, resp)
    assert request_id.get() == "abc-123"

    with pytest.raises(OSError):
        middleware.process_response(req, resp, None, True)

    assert request_id.get() is None
    assert resp.get_header("X-Request-ID") == "abc-123"
