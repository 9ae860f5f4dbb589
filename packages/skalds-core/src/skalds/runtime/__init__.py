"""Local worker processes: a fork server (zygote), the worker side, the supervisor."""
