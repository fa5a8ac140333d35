"""OpenTelemetry export: a span per request through the gateway and a log record per container line,
sent over OTLP when `OTEL_EXPORTER_OTLP_ENDPOINT` is set (`pip install "sampan[otel]"`: the
OpenTelemetry SDK and its OTLP/HTTP exporter, which read their own OTEL_* variables).

Spans carry Modal's names where Modal has them (`input_queue_time_us`, `coldstart_time_us`) beside
OpenTelemetry's HTTP conventions. The exporters batch in a thread of their own, so the gateway's hot
path only hands a finished record over.
"""

from __future__ import annotations

from typing import Any

from .requests import Request


class Telemetry:
    """Spans and log records, to whatever exporters it is given (OTLP in production, in-memory in tests)."""

    def __init__(self, span_exporter: Any, log_exporter: Any | None = None, service: str = "sampan",
                 batch: bool = True) -> None:
        from opentelemetry.sdk._logs import LoggerProvider
        from opentelemetry.sdk._logs.export import BatchLogRecordProcessor, SimpleLogRecordProcessor
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
        from opentelemetry.trace import SpanKind, Status, StatusCode

        resource = Resource.create({"service.name": service})
        self.tracer_provider = TracerProvider(resource=resource)
        self.tracer_provider.add_span_processor((BatchSpanProcessor if batch else SimpleSpanProcessor)(span_exporter))
        self.tracer = self.tracer_provider.get_tracer("sampan.gateway")
        self.logger_provider = None
        self.logger = None
        if log_exporter is not None:
            self.logger_provider = LoggerProvider(resource=resource)
            processor = BatchLogRecordProcessor if batch else SimpleLogRecordProcessor
            self.logger_provider.add_log_record_processor(processor(log_exporter))
            self.logger = self.logger_provider.get_logger("sampan.containers")
        self._server_kind, self._status, self._error = SpanKind.SERVER, Status, StatusCode.ERROR

    @classmethod
    def otlp(cls, service: str = "sampan") -> Telemetry:
        """Export over OTLP/HTTP to OTEL_EXPORTER_OTLP_ENDPOINT. Raises ImportError without the extra."""
        from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        return cls(OTLPSpanExporter(), OTLPLogExporter(), service)

    def request(self, r: Request) -> None:
        """A finished request (a RequestLog sink) as a server span with its real start and end."""
        start = int(r.time * 1e9)
        attributes: dict[str, Any] = {
            "http.request.method": r.method, "url.path": r.path, "http.response.status_code": r.status,
            "client.address": r.client, "sampan.workspace": r.workspace, "sampan.app": r.app,
            "sampan.function": r.function, "sampan.container": r.container,
            "input_queue_time_us": int(r.queue_ms * 1000),
        }
        if r.cold:
            attributes["coldstart_time_us"] = int(r.queue_ms * 1000)
        span = self.tracer.start_span(f"{r.method} {r.function}", kind=self._server_kind, start_time=start,
                                      attributes=attributes)
        if r.status >= 500:
            span.set_status(self._status(self._error))
        span.end(end_time=start + int(r.duration_ms * 1e6))

    def log(self, container_id: str, stream: str, line: str, workspace: str | None, app_key: str | None,
            function: str) -> None:
        """One line a container printed."""
        if self.logger is None:
            return
        from opentelemetry._logs import SeverityNumber

        self.logger.emit(body=line, severity_number=SeverityNumber.ERROR if stream == "stderr" else SeverityNumber.INFO,
                         severity_text="stderr" if stream == "stderr" else "stdout",
                         attributes={"sampan.container": container_id, "sampan.workspace": workspace or "",
                                     "sampan.app": app_key or "", "sampan.function": function,
                                     "log.iostream": stream})

    def close(self) -> None:
        self.tracer_provider.shutdown()
        if self.logger_provider is not None:
            self.logger_provider.shutdown()
