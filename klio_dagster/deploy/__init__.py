"""Deployment: what production needs built from what was measured here (Kubernetes pods, the Helm chart's values)."""
