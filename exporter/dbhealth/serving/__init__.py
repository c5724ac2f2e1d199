"""Serving over HTTP: the server, web config and auth, views, reload."""
