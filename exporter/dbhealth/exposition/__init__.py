"""State turned into what people and Prometheus read: metric families, bytes, health rows."""
