"""setuptools hook (everything else is in pyproject.toml): a built package records the git
revision it was built from, so that an installed wheel's dbhealth_build_info{revision} is known.

build_py writes dbhealth/REVISION into the build: DBHEALTH_REVISION when set, else the commit
of the checkout being built (read from .git without running git, by the same code the service
uses: exporter/dbhealth/exposition/build_info.py). Nothing is written where it is unknown (an
sdist built outside a checkout), and nothing is ever written into the source tree.
"""

import importlib.util
import os
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = Path(__file__).resolve().parent


def checkout_revision() -> str:
    spec = importlib.util.spec_from_file_location(
        "dbhealth_build_info", HERE / "exporter" / "dbhealth" / "exposition" / "build_info.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.checkout_revision(HERE)


class BuildPyWithRevision(build_py):
    def run(self) -> None:
        super().run()
        revision = os.environ.get("DBHEALTH_REVISION") or checkout_revision()
        if revision != "unknown":
            target = Path(self.build_lib) / "dbhealth" / "REVISION"
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(revision + "\n", encoding="ascii")


setup(cmdclass={"build_py": BuildPyWithRevision})
