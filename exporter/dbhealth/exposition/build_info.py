"""What is running: dbhealth's version and revision, Python's and Django's versions, and whether
it watches only its demo database.

Read once per process (the demo flag on every scrape: it follows the settings). The revision
is DBHEALTH_REVISION when set (an image sets it), else the REVISION file the wheel's build wrote
(setup.py, from the checkout it was built from), else the commit of the git checkout the code
runs from, else "unknown". This module imports nothing beyond the standard library at its top,
so that setup.py can load it from the source tree without Django.
"""

import os
import platform
from functools import cache
from importlib import metadata
from pathlib import Path

CHECKOUT = Path(__file__).resolve().parents[3]  # exporter/dbhealth/exposition/ -> the repository
# Written into the built package by setup.py (build_py): the revision of the checkout it came from.
RECORDED = Path(__file__).resolve().parents[1] / "REVISION"


def package_version() -> str:
    try:
        return metadata.version("dbhealth")
    except metadata.PackageNotFoundError:
        return "unknown"


def build_labels() -> dict[str, str]:
    from dbhealth.configuration.demo import demo_database

    return {**static_labels(), "demo": "true" if demo_database() is not None else "false"}


@cache
def static_labels() -> dict[str, str]:
    import django

    return {
        "version": package_version(),
        "revision": os.environ.get("DBHEALTH_REVISION")
        or recorded_revision(RECORDED)
        or checkout_revision(CHECKOUT),
        "python": platform.python_version(),
        "django": django.get_version(),
    }


def recorded_revision(path: Path) -> str:
    """The revision a build wrote (setup.py), "" when there is none."""
    try:
        return path.read_text(encoding="ascii").strip()[:40]
    except (OSError, UnicodeDecodeError):
        return ""


def checkout_revision(top: Path) -> str:
    """The commit HEAD names, read from the .git directory without running git; a worktree's
    .git is a file naming its git directory, whose branches live in the common directory."""
    git = top / ".git"
    try:
        if git.is_file():
            git = (top / git.read_text().strip().removeprefix("gitdir: ")).resolve()
        head = (git / "HEAD").read_text().strip()
        if not head.startswith("ref: "):
            return head[:40]
        ref = head[5:]
        common = git
        if (git / "commondir").is_file():
            common = (git / (git / "commondir").read_text().strip()).resolve()
        for directory in dict.fromkeys((git, common)):
            loose = directory / ref
            if loose.is_file():
                return loose.read_text().strip()[:40]
        for directory in dict.fromkeys((git, common)):
            packed = directory / "packed-refs"
            if packed.is_file():
                for line in packed.read_text().splitlines():
                    if line.endswith(" " + ref):
                        return line.split(" ", 1)[0][:40]
    except OSError:
        pass
    return "unknown"
