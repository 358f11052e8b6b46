#!/usr/bin/env python3
"""Sends OTLP metrics (and optionally logs) with the OpenTelemetry Python SDK, as a third
party's agent would, to podnet's `otlp` receiver. Values are fixed so the tests can assert
them exactly:
  counter    shop.orders          {route=/buy}   += --orders
  updown     shop.queue.depth     {queue=main}   +5 then -2
  histogram  shop.request.latency (ms)           0.5, 3, 7, 7, 250  (explicit buckets)
  histogram  shop.payload.size    (By)           same values, exponential buckets (--exponential)
  gauge      shop.temperature                    21.5
Exit status: 0 when the export succeeded, 3 when the receiver refused it.
"""
import argparse
import logging
import sys

import grpc
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader, MetricExportResult
from opentelemetry.sdk.metrics.view import ExponentialBucketHistogramAggregation, View
from opentelemetry.sdk.resources import Resource
from opentelemetry.metrics import Observation


def parse():
    p = argparse.ArgumentParser()
    p.add_argument("--protocol", choices=["grpc", "http"], required=True)
    p.add_argument("--endpoint", required=True, help="host:port")
    p.add_argument("--service", default="checkout")
    p.add_argument("--instance", default=None)
    p.add_argument("--orders", type=int, default=5)
    p.add_argument("--exponential", action="store_true")
    p.add_argument("--logs", action="store_true")
    p.add_argument("--ca", help="CA to trust (TLS)")
    p.add_argument("--cert", help="client certificate (mTLS)")
    p.add_argument("--key", help="client key (mTLS)")
    p.add_argument("--header", action="append", default=[], help="name=value, e.g. authorization=Bearer x")
    return p.parse_args()


def exporters(a):
    headers = dict(h.split("=", 1) for h in a.header)
    tls = a.ca is not None
    if a.protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
        kw = dict(endpoint=a.endpoint, headers=headers, timeout=10)
        if tls:
            read = lambda p: open(p, "rb").read() if p else None
            kw["credentials"] = grpc.ssl_channel_credentials(read(a.ca), read(a.key), read(a.cert))
        else:
            kw["insecure"] = True
        return OTLPMetricExporter(**kw), OTLPLogExporter(**kw)
    from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
    base = f"{'https' if tls else 'http'}://{a.endpoint}"
    kw = dict(headers=headers, timeout=10)
    if tls:
        kw["certificate_file"] = a.ca
        if a.cert:
            kw["client_certificate_file"] = a.cert
            kw["client_key_file"] = a.key
    return OTLPMetricExporter(endpoint=f"{base}/v1/metrics", **kw), OTLPLogExporter(endpoint=f"{base}/v1/logs", **kw)


def main():
    a = parse()
    attrs = {"service.name": a.service}
    if a.instance:
        attrs["service.instance.id"] = a.instance
    resource = Resource.create(attrs)
    views = [View(instrument_name="shop.payload.size", aggregation=ExponentialBucketHistogramAggregation())] if a.exponential else []
    reader = InMemoryMetricReader()
    provider = MeterProvider(resource=resource, metric_readers=[reader], views=views)
    meter = provider.get_meter("interop-test", "1.0")
    meter.create_counter("shop.orders", unit="{order}", description="Orders placed").add(a.orders, {"route": "/buy"})
    depth = meter.create_up_down_counter("shop.queue.depth", unit="{item}")
    depth.add(5, {"queue": "main"})
    depth.add(-2, {"queue": "main"})
    latency = meter.create_histogram("shop.request.latency", unit="ms")
    size = meter.create_histogram("shop.payload.size", unit="By") if a.exponential else None
    for v in (0.5, 3, 7, 7, 250):
        latency.record(v)
        if size:
            size.record(v)
    meter.create_observable_gauge("shop.temperature", callbacks=[lambda _: [Observation(21.5)]], unit="Cel")
    metric_exporter, log_exporter = exporters(a)
    result = metric_exporter.export(reader.get_metrics_data())
    metric_exporter.shutdown()
    if result != MetricExportResult.SUCCESS:
        print(f"metrics export: {result}", file=sys.stderr)
        sys.exit(3)
    if a.logs:
        from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
        from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
        logs = LoggerProvider(resource=resource)
        logs.add_log_record_processor(SimpleLogRecordProcessor(log_exporter))
        logger = logging.getLogger("interop")
        logger.propagate = False
        logger.addHandler(LoggingHandler(logger_provider=logs))
        logger.warning("payment declined for order %s", 42)
        logs.shutdown()
    print("sent")


if __name__ == "__main__":
    main()
