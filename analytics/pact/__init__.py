"""PACT v3.0 product footprint exchange: a host that serves metered footprints, and an importer for suppliers' ones.

Public API::

    from carbonedge.analytics.pact import build_footprint, Store, create_app, PactClient, fetch
"""

from carbonedge.analytics.pact.model import PactSettings, build_footprint, coverage, load_pact_settings, summarize
from carbonedge.analytics.pact.schema import PactError, check, errors

__all__ = ["PactError", "PactSettings", "build_footprint", "check", "coverage", "errors", "load_pact_settings", "summarize"]
