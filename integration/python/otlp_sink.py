#!/usr/bin/env python3
"""An OTLP receiver built on the official OpenTelemetry proto classes (not podnet's), for
checking what podnet's otlp_grpc and otlp_http exporters send. Every request is decoded
with the opentelemetry-proto messages (protobuf or JSON, gzip or not) and appended to --out
as one JSON line {"transport", "signal", "content_type", "request": <MessageToDict>}, with
field names as in the proto (snake_case) and 64-bit integers as strings.
Usage: otlp_sink.py --grpc-port G --http-port H --out FILE
"""
import argparse
import gzip
import json
import threading
from concurrent import futures
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import grpc
from google.protobuf import json_format
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2, logs_service_pb2_grpc
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2, metrics_service_pb2_grpc

LOCK = threading.Lock()


def record(out, transport, signal, content_type, message):
    line = {"transport": transport, "signal": signal, "content_type": content_type,
            "request": json_format.MessageToDict(message, preserving_proto_field_name=True)}
    with LOCK, open(out, "a") as f:
        f.write(json.dumps(line) + "\n")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--grpc-port", type=int, required=True)
    p.add_argument("--http-port", type=int, required=True)
    p.add_argument("--out", required=True)
    a = p.parse_args()

    class Metrics(metrics_service_pb2_grpc.MetricsServiceServicer):
        def Export(self, request, context):
            record(a.out, "grpc", "metrics", "application/grpc", request)
            return metrics_service_pb2.ExportMetricsServiceResponse()

    class Logs(logs_service_pb2_grpc.LogsServiceServicer):
        def Export(self, request, context):
            record(a.out, "grpc", "logs", "application/grpc", request)
            return logs_service_pb2.ExportLogsServiceResponse()

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    metrics_service_pb2_grpc.add_MetricsServiceServicer_to_server(Metrics(), server)
    logs_service_pb2_grpc.add_LogsServiceServicer_to_server(Logs(), server)
    server.add_insecure_port(f"127.0.0.1:{a.grpc_port}")
    server.start()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            if self.headers.get("Content-Encoding", "") == "gzip":
                body = gzip.decompress(body)
            kinds = {"/v1/metrics": ("metrics", metrics_service_pb2.ExportMetricsServiceRequest, metrics_service_pb2.ExportMetricsServiceResponse),
                     "/v1/logs": ("logs", logs_service_pb2.ExportLogsServiceRequest, logs_service_pb2.ExportLogsServiceResponse)}
            if self.path not in kinds:
                self.send_response(404)
                self.end_headers()
                return
            signal, request_type, response_type = kinds[self.path]
            content_type = self.headers.get("Content-Type", "")
            try:
                if content_type.startswith("application/json"):
                    message = json_format.Parse(body, request_type())
                else:
                    message = request_type.FromString(body)
            except Exception as e:  # a malformed request is the exporter's bug: say so
                self.send_response(400)
                self.end_headers()
                self.wfile.write(str(e).encode())
                return
            record(a.out, "http", signal, content_type, message)
            reply = response_type().SerializeToString()
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)

        def log_message(self, *args):
            pass

    ThreadingHTTPServer(("127.0.0.1", a.http_port), Handler).serve_forever()


if __name__ == "__main__":
    main()
