"""Root test configuration: kept tiny on purpose; it never imports the application."""

import os

try:
    from hypothesis import HealthCheck, settings
except ImportError:  # hypothesis is a [test] extra; without it nothing here matters
    settings = None

if settings is not None:
    # CI machines are slow and shared: per-example deadlines there only produce flaky failures.
    # derandomize: the same examples on every CI run, so a red build reproduces and a green
    # one is not luck (exploring new examples is left to local runs).
    settings.register_profile(
        "ci", deadline=None, print_blob=True, derandomize=True, suppress_health_check=[HealthCheck.too_slow]
    )
    if os.environ.get("CI", "").strip().lower() in ("true", "1", "yes"):
        settings.load_profile("ci")
