"""PACT v3.0 product footprint exchange: a host that serves metered footprints, and an importer for suppliers' ones.

Public API::

    from carbonedge.analytics.pact import build_footprint, Store, create_app, PactClient, fetch
"""


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


def __getattr__(name: str) -> object:
    """Import a public name on first use, so that importing one submodule (e.g. its ``commands`` for the command line)
    does not load the whole package and its heavy dependencies."""
    import importlib

    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value
