"""PACT v3.0 product footprint exchange: a host that serves metered footprints, and an importer for suppliers' ones.

Public API::

    from carbonedge.analytics.pact import build_footprint, Store, create_app, PactClient, fetch
"""


from carbonedge import lazy

_EXPORTS = {
    "PactSettings": "carbonedge.analytics.pact.model",
    "build_footprint": "carbonedge.analytics.pact.model",
    "coverage": "carbonedge.analytics.pact.model",
    "load_pact_settings": "carbonedge.analytics.pact.model",
    "summarize": "carbonedge.analytics.pact.model",
    "PactError": "carbonedge.analytics.pact.schema",
    "check": "carbonedge.analytics.pact.schema",
    "errors": "carbonedge.analytics.pact.schema",
}

__all__ = ["PactError", "PactSettings", "build_footprint", "check", "coverage", "errors", "load_pact_settings", "summarize"]


__getattr__ = lazy.exports(__name__, _EXPORTS, globals())
