"""Telemetry: Prometheus metrics, timing of Redis/SQL calls, tracing and logging set-up (imports no layer)."""
