"""`python -m dbhealth ...`: the `dbhealth` command without its console script (the image's CMD)."""

from dbhealth.cli import main

main()
