"""Seed import paths for the service clients; each needs its extra installed."""
