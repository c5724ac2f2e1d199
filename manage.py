#!/usr/bin/env python
"""Django's command-line entry point for the standalone dbhealth service."""

import os
import sys


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dbhealth.settings")
    from django.core.exceptions import ImproperlyConfigured
    from django.core.management import execute_from_command_line

    try:
        execute_from_command_line(sys.argv)
    except ImproperlyConfigured as exc:
        # An unusable configuration is a one-line message naming the file, alias and key.
        sys.exit(f"dbhealth: {exc}")


if __name__ == "__main__":
    main()
