"""What to watch: DBHEALTH_* settings, the TOML file, Django DATABASES turned into targets."""
