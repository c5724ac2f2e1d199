"""Files generated from the code: Grafana dashboards."""
