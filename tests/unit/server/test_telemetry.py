"""OpenTelemetry export (server/telemetry.py): spans and log records with Modal's names, and an export
over OTLP/HTTP received by a collector the test runs on loopback, decoded with OpenTelemetry's protos."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from sampan.server.assemble import assemble
from sampan.server.requests import Request
from sampan.server.telemetry import Telemetry
from tests import fakes
from tests.unit.server.gateway.test_proxy import request


def test_a_request_is_a_server_span_with_modals_names() -> None:
    spans, logs = InMemorySpanExporter(), InMemoryLogRecordExporter()
    telemetry = Telemetry(spans, logs, batch=False)
    telemetry.request(Request(1000.0, "ws", "ws/app", "square", "GET", "/x", 503, 25.0, 7.5, True, "ta-1", 0, 9,
                              "127.0.0.1"))
    telemetry.log("ta-1", "stderr", "boom <script>", "ws", "ws/app", "square")
    (span,) = spans.get_finished_spans()
    assert span.name == "GET square" and span.start_time == 1000 * 10**9
    assert span.end_time - span.start_time == 25 * 10**6
    assert span.attributes["input_queue_time_us"] == 7500 and span.attributes["coldstart_time_us"] == 7500
    assert span.attributes["http.response.status_code"] == 503 and not span.status.is_ok
    (record,) = logs.get_finished_logs()
    assert record.log_record.body == "boom <script>" and record.log_record.attributes["sampan.container"] == "ta-1"
    telemetry.close()


class Collector(BaseHTTPRequestHandler):
    received: list[tuple[str, bytes]] = []  # noqa: RUF012 - the test's own record

    def log_message(self, *args: object) -> None:
        return None

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        Collector.received.append((self.path, self.rfile.read(int(self.headers["content-length"]))))
        self.send_response(200)
        self.send_header("content-type", "application/x-protobuf")
        self.send_header("content-length", "0")
        self.end_headers()


@pytest.fixture
def collector() -> Iterator[str]:
    Collector.received = []
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Collector)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_the_gateway_exports_over_otlp_when_the_environment_says_so(tmp_path: Path, collector: str,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", collector)

    async def main() -> None:
        home = tmp_path / "home"
        assembly = assemble(fakes.settings(home), backend=fakes.FakeBackend())
        assert assembly.server.telemetry is not None
        await assembly.server.start()
        version = await assembly.server.publish("tester/demo", fakes.manifest(), fakes.bundle(home), ephemeral=False,
                                                workspace="tester")
        assert (await request(version.web_urls["hello"], path="/traced"))[0] == 200
        assembly.server.log("hello", "ta-x", "stdout", "a line", "tester/demo", "tester")
        await assembly.server.stop_app("tester/demo", drain_timeout=1)
        await assembly.close()  # flushes the batches

    asyncio.run(main())
    traces = [body for path, body in Collector.received if path == "/v1/traces"]
    spans = [span for body in traces for rs in ExportTraceServiceRequest.FromString(body).resource_spans
             for ss in rs.scope_spans for span in ss.spans]
    (span,) = [s for s in spans if s.name == "GET hello"]
    attributes = {a.key: a.value for a in span.attributes}
    assert attributes["url.path"].string_value == "/traced" and "input_queue_time_us" in attributes
    logged = [body for path, body in Collector.received if path == "/v1/logs"]
    lines = [r.body.string_value for body in logged for rl in ExportLogsServiceRequest.FromString(body).resource_logs
             for sl in rl.scope_logs for r in sl.log_records]
    assert "a line" in lines
