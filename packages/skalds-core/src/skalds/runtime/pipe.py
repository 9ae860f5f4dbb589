"""The node's end of a worker pipe: non-blocking, framed, with an outbound queue.

A worker may stop reading: it is paused (SIGSTOP), hung in its own code, or busy in
an update handler. A blocking write of a large message would then hold the node's
thread until the worker reads, and with it everything queued behind it (a resume,
the reconcile). So nothing here ever blocks: a write goes out as far as the socket
buffer takes it and the rest waits in the pipe's queue, which the runtime's selector
loop sends on as the worker reads. Updates not yet started are replaced by a newer
one (the latest attachments win; they are complete, not deltas).

Frames are those of :mod:`multiprocessing.connection`, which the worker side uses
as is: a 4-byte signed big-endian length (``-1`` then an 8-byte one for very large
frames) and the bytes.
"""

from __future__ import annotations

import collections
import socket
import struct
import threading
from dataclasses import dataclass

__all__ = ["PipeClosed", "WorkerPipe", "frame"]

_SHORT = struct.Struct("!i")
_LONG = struct.Struct("!Q")
_READ_CHUNK = 256 * 1024


class PipeClosed(Exception):
    """The worker's end is closed: the process is gone (or closed it)."""


def frame(payload: bytes) -> bytes:
    """``payload`` with its length header, as ``Connection.recv_bytes`` reads it."""
    if len(payload) > 0x7FFFFFFF:
        return _SHORT.pack(-1) + _LONG.pack(len(payload)) + payload
    return _SHORT.pack(len(payload)) + payload


@dataclass
class _Outgoing:
    data: memoryview
    replaceable: bool
    """An update: a newer one takes its place while none of it was sent."""


class WorkerPipe:
    """A socket to one worker, in non-blocking mode; safe to write from any thread.

    :meth:`send` is called by the node's lanes, :meth:`flush` and :meth:`receive` by
    the runtime's loop; :attr:`wants_write` tells the loop to wait for the socket to
    take more.
    """

    def __init__(self, sock: socket.socket) -> None:
        sock.setblocking(False)
        self.sock = sock
        self._out: collections.deque[_Outgoing] = collections.deque()
        self._started = False  # the head of the queue is partly sent
        self._in = bytearray()
        self._lock = threading.Lock()
        self.closed = False

    def fileno(self) -> int:
        return self.sock.fileno()

    @property
    def wants_write(self) -> bool:
        """Whether messages wait for the socket to take them."""
        return bool(self._out)

    @property
    def queued_bytes(self) -> int:
        """Bytes waiting to be sent (reports and tests)."""
        with self._lock:
            return sum(len(item.data) for item in self._out)

    def send(self, payload: bytes, *, replaceable: bool = False) -> bool:
        """Queue one message and send what the socket takes now; never blocks.

        Args:
            payload: the message.
            replaceable: drop queued messages sent with ``replaceable`` that have not
                started going out (an older update superseded by this one).

        Returns:
            True when all of it went out now; False when some waits for :meth:`flush`.

        Raises:
            PipeClosed: the worker's end is closed.
        """
        with self._lock:
            if self.closed:
                raise PipeClosed
            if replaceable:
                keep_head = self._started and self._out
                head = [self._out.popleft()] if keep_head else []
                rest = [item for item in self._out if not item.replaceable]
                self._out = collections.deque([*head, *rest])
            self._out.append(_Outgoing(memoryview(frame(payload)), replaceable))
            self._send_locked()
            return not self._out

    def flush(self) -> bool:
        """Send what the socket takes now; return True when nothing waits any more.

        Raises:
            PipeClosed: the worker's end is closed.
        """
        with self._lock:
            if self.closed:
                raise PipeClosed
            self._send_locked()
            return not self._out

    def _send_locked(self) -> None:
        while self._out:
            head = self._out[0]
            try:
                sent = self.sock.send(head.data)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # EPIPE, ECONNRESET: the worker is gone
                raise PipeClosed from exc
            if sent < len(head.data):
                head.data = head.data[sent:]
                self._started = True
                return
            self._out.popleft()
            self._started = False

    def receive(self) -> list[bytes]:
        """Read what is there; return the complete messages (maybe none).

        Raises:
            PipeClosed: the worker closed its end (after the messages before it were
                returned by earlier calls) or the socket failed.
        """
        eof = False
        while True:
            try:
                chunk = self.sock.recv(_READ_CHUNK)
            except (BlockingIOError, InterruptedError):
                break
            except OSError as exc:
                raise PipeClosed from exc
            if not chunk:
                eof = True
                break
            self._in += chunk
            if len(chunk) < _READ_CHUNK:
                break
        messages = self._take_messages()
        if eof and not messages:
            raise PipeClosed
        # At the end of the stream with messages in hand: they are returned now, and the
        # socket stays readable, so the next call finds the end again and raises.
        return messages

    def _take_messages(self) -> list[bytes]:
        out = []
        buf = self._in
        pos = 0
        while True:
            if len(buf) - pos < _SHORT.size:
                break
            (size,) = _SHORT.unpack_from(buf, pos)
            head = _SHORT.size
            if size == -1:
                if len(buf) - pos < head + _LONG.size:
                    break
                (size,) = _LONG.unpack_from(buf, pos + head)
                head += _LONG.size
            if len(buf) - pos - head < size:
                break
            out.append(bytes(buf[pos + head : pos + head + size]))
            pos += head + size
        if pos:
            del buf[:pos]
        return out

    def close(self) -> None:
        """Close the socket; queued messages are dropped."""
        with self._lock:
            self.closed = True
            self._out.clear()
        self.sock.close()
