"""`modal.io_streams`: `StreamReader` and `StreamWriter` of Sandbox processes (sdk/sandbox_io.py)."""

from .sdk.sandbox_io import StreamReader, StreamWriter

__all__ = ["StreamReader", "StreamWriter"]
