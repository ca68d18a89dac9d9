"""Package layout that pyproject.toml cannot say alone (everything else lives there).

The dashboard's code sits in the repository's top-level ``tui/`` folder but installs as
``memwatch_tui``: a top-level ``tui`` in site-packages would collide with other projects'
``tui`` packages. ``find_packages`` keeps new ``memwatch`` subpackages included without
editing this file.
"""

from setuptools import find_packages, setup

DASHBOARD = "memwatch_tui"
dashboard = [DASHBOARD + name[len("tui") :] for name in find_packages(include=["tui", "tui.*"])]

setup(
    packages=find_packages(include=["memwatch", "memwatch.*"]) + dashboard,
    package_dir={DASHBOARD: "tui"},
    package_data={DASHBOARD: ["*.tcss"]},
)
