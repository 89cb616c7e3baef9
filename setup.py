"""Package layout (the rest of the metadata is in pyproject.toml).

The repository keeps one top-level folder per part so the architecture shows, but everything installs under the
single ``carbonedge`` namespace: ``edge/`` as ``carbonedge.edge``, ``collector/`` as ``carbonedge.collector`` and so
on, so no generic top-level name (``analytics``, ``edge``) collides with another distribution's.
"""

from setuptools import find_namespace_packages, setup

PARTS = ("edge", "collector", "analytics", "simulators", "app")

package_dir = {"carbonedge": "carbonedge"} | {f"carbonedge.{part}": part for part in PARTS}
packages = ["carbonedge"]
for part in PARTS:
    packages += [f"carbonedge.{part}"] + [f"carbonedge.{part}.{sub}" for sub in find_namespace_packages(part, exclude=["*__pycache__*"])]

setup(package_dir=package_dir, packages=packages)
