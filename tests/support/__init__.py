"""Test helpers shared by the integration tests (real Prometheus and Alertmanager)."""
