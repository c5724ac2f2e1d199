"""What an operator edits or copies, and what the wheel ships as `dbhealth.config_files`.

pyproject.toml maps this folder to that package, so `dbhealth rules --out DIR` copies these very
files out of an installed dbhealth; the repository keeps one copy of each.
"""
