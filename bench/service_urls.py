"""Where the benchmarks find the real services, and a quick check that they answer.

The same rules as the test suite (``tests/backends/mongo.py``): ``SKALDS_TEST_MONGO_URL``
when set; otherwise the seeds' URL (``mongodb://root:root@...``), which logs in when the
test FerretDB runs with ``SKALDS_FERRETDB_AUTH=root:root`` (what ``scripts/test``
starts), and the URL without credentials when it runs without authentication (a bare
``scripts/services up``), which refuses that login.

A benchmark whose service is down stops at once with the reason, instead of a node
retrying its connection for ever.
"""

from __future__ import annotations

import functools
import os
import socket
import subprocess
import sys

__all__ = ["CACHE_URL", "EVENT_BUS_URL", "mongo_url", "require_services"]

EVENT_BUS_URL = "kafka://127.0.0.1:9092"
CACHE_URL = "redis://127.0.0.1:6379/0"
SEED_MONGO_URL = "mongodb://root:root@127.0.0.1:27017/"
PLAIN_MONGO_URL = "mongodb://127.0.0.1:27017/"

_ADDRESSES = {
    "Kafka": ("127.0.0.1", 9092),
    "Redis": ("127.0.0.1", 6379),
    "FerretDB": ("127.0.0.1", 27017),
}


@functools.cache
def mongo_url() -> str:
    """Return the first Mongo URL that may write on the server.

    The probe runs in a child process: pymongo imported here would be in the fork
    server of a node started afterwards, and make every task process dearer.

    Raises:
        SystemExit: no candidate works (the message names each and its error).
    """
    explicit = os.environ.get("SKALDS_TEST_MONGO_URL")
    candidates = [explicit] if explicit else [SEED_MONGO_URL, PLAIN_MONGO_URL]
    probe = subprocess.run(
        [sys.executable, "-c", _PROBE, *candidates], capture_output=True, text=True, check=False
    )
    if probe.returncode == 0:
        return probe.stdout.strip()
    raise SystemExit(f"no Mongo URL works for the benchmark:\n{probe.stdout}{probe.stderr}")


_PROBE = """
import sys
import pymongo

for url in sys.argv[1:]:
    client = pymongo.MongoClient(url, serverSelectionTimeoutMS=2000)
    try:
        client["skalds_probe"].list_collection_names()
    except pymongo.errors.PyMongoError as exc:
        shown = url.replace("root:root@", "root:***@")
        print(f"  {shown}: {str(exc).splitlines()[0]}", file=sys.stderr)
        continue
    finally:
        client.close()
    print(url)
    sys.exit(0)
sys.exit(1)
"""


def require_services() -> None:
    """Exit with one line per service that does not accept a connection.

    Raises:
        SystemExit: a service is down (start them with ``scripts/services up``).
    """
    down = []
    for name, address in _ADDRESSES.items():
        with socket.socket() as sock:
            sock.settimeout(1.0)
            if sock.connect_ex(address) != 0:
                down.append(f"{name} at {address[0]}:{address[1]}")
    if down:
        raise SystemExit(f"not reachable: {', '.join(down)}; start them with: scripts/services up")
    mongo_url()
