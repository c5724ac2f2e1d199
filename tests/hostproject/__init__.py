"""A host project shaped like the Django documentation's multiple-database example.

It embeds the exporter (`exporter` in INSTALLED_APPS, `dbhealth.urls` included) with no dbhealth
settings at all, and reads where its databases are from HOSTPROJECT_* environment variables so
that tests can point it at throwaway servers.
"""
