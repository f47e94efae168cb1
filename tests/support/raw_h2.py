"""One gRPC call written by hand in HTTP/2 (the `h2` package), for headers no gRPC client library will send: a
tab in a value, an unknown `grpc-encoding`, a `grpc-timeout` that is not a timeout, an upper-case header name."""

from __future__ import annotations

import socket
import struct
from dataclasses import dataclass, field

import h2.config
import h2.connection
import h2.events


@dataclass
class RawAnswer:
    """What came back: the gRPC status and message (None when the stream was reset instead), the headers."""

    status: int | None = None
    message: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    reset: int | None = None  # the RST_STREAM error code, when the stream was reset


def grpc_frame(message: bytes, *, compressed: bool = False) -> bytes:
    """A length-prefixed gRPC message."""
    return struct.pack(">BI", 1 if compressed else 0, len(message)) + message


def raw_call(
    target: str,
    path: str,
    metadata: list[tuple[str, str]],
    body: bytes = b"",
    *,
    frame: bytes | None = None,
    timeout: float = 10.0,
) -> RawAnswer:
    """Sends one unary call with exactly these headers (nothing checked or normalised) and reads its answer."""
    host, port = target.rsplit(":", 1)
    config = h2.config.H2Configuration(
        client_side=True,
        validate_outbound_headers=False,
        normalize_outbound_headers=False,
        validate_inbound_headers=False,
    )
    conn = h2.connection.H2Connection(config)
    conn.initiate_connection()
    stream = conn.get_next_available_stream_id()
    pseudo = [(":method", "POST"), (":scheme", "http"), (":path", path), (":authority", target)]
    conn.send_headers(stream, [*pseudo, ("content-type", "application/grpc"), ("te", "trailers"), *metadata])
    conn.send_data(stream, grpc_frame(body) if frame is None else frame, end_stream=True)
    answer = RawAnswer()
    with socket.create_connection((host, int(port)), timeout=timeout) as sock:
        sock.sendall(conn.data_to_send())
        while not _read(sock, conn, answer):
            pass
    return answer


def _read(sock: socket.socket, conn: h2.connection.H2Connection, answer: RawAnswer) -> bool:
    """Reads what the server sent so far into `answer`; True once the call has ended."""
    data = sock.recv(65535)
    if not data:
        return True
    ended = False
    for event in conn.receive_data(data):
        if isinstance(event, h2.events.ResponseReceived | h2.events.TrailersReceived):
            for key, value in event.headers:
                answer.headers[_text(key)] = _text(value)
        elif isinstance(event, h2.events.StreamReset):
            answer.reset = event.error_code
            ended = True
        ended = ended or isinstance(event, h2.events.StreamEnded | h2.events.ConnectionTerminated)
    sock.sendall(conn.data_to_send())
    if "grpc-status" in answer.headers:
        answer.status = int(answer.headers["grpc-status"])
        answer.message = answer.headers.get("grpc-message", "")
    return ended


def _text(value: str | bytes) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value
