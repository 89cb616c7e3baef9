"""The application shell: the ``carbonedge`` command, the demo, local services and verification.

It composes the process packages (``carbonedge.edge``, ``carbonedge.collector``, ``carbonedge.analytics``,
``carbonedge.simulators``); nothing in those packages or in the kernel imports it.
"""
