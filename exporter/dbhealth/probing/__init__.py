"""Probing the targets: the one probe service, a prober per alias, and the state they record."""
