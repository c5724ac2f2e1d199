"""What the Django project expects of its aliases: migrations, routes, unmanaged tables."""
