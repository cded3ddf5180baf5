"""Lets `pip install -e .` at the repository root install the package in modules/.

Name, version, dependencies and the console script are read from
modules/pyproject.toml, so they are declared once.
"""

from pathlib import Path

from setuptools import find_packages, setup

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

here = Path(__file__).resolve().parent
project = tomllib.loads((here / "modules" / "pyproject.toml").read_text())["project"]

setup(
    name=project["name"],
    version=project["version"],
    description=project["description"],
    python_requires=project["requires-python"],
    install_requires=project["dependencies"],
    extras_require=project["optional-dependencies"],
    entry_points={"console_scripts": [f"{k} = {v}" for k, v in project["scripts"].items()]},
    package_dir={"": "modules"},
    packages=find_packages("modules", include=["weightspace*"]),
)
