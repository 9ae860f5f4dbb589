"""Data models shared by nodes, controllers and scripts (seed import paths)."""
