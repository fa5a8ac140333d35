"""`modal.io_streams`: `StreamReader` and `StreamWriter` of Sandbox processes (not built yet)."""

from ._not_built import NotBuilt


class StreamReader(NotBuilt):
    _name = "io_streams.StreamReader"
    _issue = "it comes with modal.Sandbox"


class StreamWriter(NotBuilt):
    _name = "io_streams.StreamWriter"
    _issue = "it comes with modal.Sandbox"


__all__ = ["StreamReader", "StreamWriter"]
