"""dbhealth: a Django app that probes every database alias and exports Prometheus metrics."""
