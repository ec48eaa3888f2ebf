"""Shared pytest configuration: the hypothesis profiles.

``HYPOTHESIS_PROFILE`` picks one (the default is ``ci``):

- ``ci``: few examples per property and no per-example deadline, so the whole suite fits the
  CI budget on a small machine. Tests never time anything.
- ``nightly``: many more examples, for the scheduled long run.
- ``dev``: a handful of examples, for a quick local loop.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

_QUIET = [HealthCheck.too_slow]

settings.register_profile("ci", max_examples=40, deadline=None, suppress_health_check=_QUIET,
                          print_blob=True)
settings.register_profile("nightly", max_examples=1000, deadline=None,
                          suppress_health_check=_QUIET, print_blob=True)
settings.register_profile("dev", max_examples=10, deadline=None, suppress_health_check=_QUIET)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
