"""What is running: dbhealth's version and revision, Python's and Django's versions.

Read once per process. The revision is DBHEALTH_REVISION when the build sets it (an image, a
wheel), else the commit of the git checkout the code runs from, else "unknown".
"""

import os
import platform
from functools import cache
from importlib import metadata
from pathlib import Path

import django

CHECKOUT = Path(__file__).resolve().parents[3]  # exporter/dbhealth/exposition/ -> the repository


def package_version() -> str:
    try:
        return metadata.version("dbhealth")
    except metadata.PackageNotFoundError:
        return "unknown"


@cache
def build_labels() -> dict[str, str]:
    return {
        "version": package_version(),
        "revision": os.environ.get("DBHEALTH_REVISION") or checkout_revision(CHECKOUT),
        "python": platform.python_version(),
        "django": django.get_version(),
    }


def checkout_revision(top: Path) -> str:
    """The commit HEAD names, read from the .git directory without running git."""
    git = top / ".git"
    try:
        head = (git / "HEAD").read_text().strip()
        if not head.startswith("ref: "):
            return head[:40]
        ref = head[5:]
        loose = git / ref
        if loose.is_file():
            return loose.read_text().strip()[:40]
        for line in (git / "packed-refs").read_text().splitlines():
            if line.endswith(" " + ref):
                return line.split(" ", 1)[0][:40]
    except OSError:
        pass
    return "unknown"
