"""The routers of the documentation's example, with read/write splitting for the blog.

PinningReplicaRouter behaves like django-multidb-router's router of that name (not installed
here), for the blog only: settings_production.py puts it in front for a host with two replicas.
"""

import random
import threading

ROUTE_APP_LABELS = {
    "users": "users_db",
    "blog": "default",
    "analytics": "analytics_db",
    "legacy": "legacy_db",
    "cache": "cache_db",
}


class ReadReplicaRouter:
    """Blog reads go to the replica, its writes to the primary; nothing migrates on a replica."""

    def db_for_read(self, model, **hints):
        return "read_replica" if model._meta.app_label == "blog" else None

    def db_for_write(self, model, **hints):
        return "default" if model._meta.app_label == "blog" else None

    def allow_migrate(self, db, app_label, model_name=None, **hints):
        return False if db == "read_replica" else None


class DatabaseRouter:
    """Each app on its own database."""

    def db_for_read(self, model, **hints):
        return ROUTE_APP_LABELS.get(model._meta.app_label)

    def db_for_write(self, model, **hints):
        return ROUTE_APP_LABELS.get(model._meta.app_label)

    def allow_relation(self, obj1, obj2, **hints):
        if {obj1._state.db, obj2._state.db} <= {"default", "users_db"}:
            return True
        return obj1._state.db == obj2._state.db

    def allow_migrate(self, db, app_label, model_name=None, **hints):
        if app_label in ROUTE_APP_LABELS:
            return db == ROUTE_APP_LABELS[app_label]
        if app_label in ("contenttypes", "auth", "sessions", "admin"):
            return db == "default"
        return None


class AnalyticsRouter:
    """Analytics data only on the analytics database, and nothing else there."""

    def db_for_read(self, model, **hints):
        return "analytics_db" if model._meta.app_label == "analytics" else None

    def db_for_write(self, model, **hints):
        return "analytics_db" if model._meta.app_label == "analytics" else None

    def allow_migrate(self, db, app_label, model_name=None, **hints):
        if app_label == "analytics":
            return db == "analytics_db"
        if db == "analytics_db":
            return False
        return None


BLOG_REPLICAS = ("read_replica", "read_replica_2")
_pins = threading.local()


def pin_this_thread() -> None:
    """Reads of this thread go to the primary until unpinned (after a write, as multidb does)."""
    _pins.pinned = True


def unpin_this_thread() -> None:
    _pins.pinned = False


def this_thread_is_pinned() -> bool:
    return getattr(_pins, "pinned", False)


class PinningReplicaRouter:
    """Blog reads go to a random replica on every call, or to the primary while the thread is
    pinned; writes to the primary; nothing migrates on a replica."""

    def db_for_read(self, model, **hints):
        if model._meta.app_label != "blog":
            return None
        return "default" if this_thread_is_pinned() else random.choice(BLOG_REPLICAS)

    def db_for_write(self, model, **hints):
        return "default" if model._meta.app_label == "blog" else None

    def allow_migrate(self, db, app_label, model_name=None, **hints):
        return False if db in BLOG_REPLICAS else None
