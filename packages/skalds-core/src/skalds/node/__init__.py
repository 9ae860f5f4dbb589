"""The Skald node: supervises task processes in edge, node or single_process mode."""
