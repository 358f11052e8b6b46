#!/usr/bin/env python3
"""Writes the fuzz targets' seed corpus (fuzz/corpus/<target>/) from the golden fixtures
and shipped configs, plus hand-built inputs for the binary formats.

Run it after adding fixtures; it needs the OpenTelemetry proto classes:
    python3 -m venv /tmp/venv && /tmp/venv/bin/pip install opentelemetry-proto
    /tmp/venv/bin/python fuzz/make_corpus.py
Crash inputs found by fuzzing are committed next to these as regression-*, and are not
touched here.
"""
import gzip
import hashlib
import json
import pathlib
import struct

from google.protobuf import json_format
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.logs.v1 import logs_pb2
from opentelemetry.proto.metrics.v1 import metrics_pb2

ROOT = pathlib.Path(__file__).resolve().parent.parent
CORPUS = ROOT / "fuzz" / "corpus"


def put(target, name, data):
    d = CORPUS / target
    d.mkdir(parents=True, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    (d / f"seed-{name}").write_bytes(data)


def clear_seeds():
    for f in CORPUS.glob("*/seed-*"):
        f.unlink()


def proc_text():
    fixtures = ROOT / "receivers" / "procfs" / "tests" / "fixtures"
    for d in sorted(fixtures.iterdir()):
        for f in sorted(d.iterdir()):
            put("proc_text", f"{d.name}-{f.stem}", f"{d.name}\n" + f.read_text())
    put("proc_text", "kallsyms", "kallsyms\nffffffff81000000 T _stext\nffffffff81000100 T tcp_v4_rcv\n"
        "ffffffff81000200 t nf_hook_slow\nffffffff82000000 D some_data\nffffffffc0000000 t veth_xmit\t[veth]\n")
    put("proc_text", "cgroup-systemd", "cgroup\n0::/kubepods.slice/kubepods-besteffort.slice/"
        "kubepods-besteffort-pod0d4c2a3e_1f2b_4c5d_8e9f_0a1b2c3d4e5f.slice/cri-containerd-abc.scope\n")
    put("proc_text", "cgroup-cgroupfs", "cgroup\n12:memory:/kubepods/burstable/pod0d4c2a3e-1f2b-4c5d-8e9f-0a1b2c3d4e5f/abc\n")


def netlink():
    for f in sorted((ROOT / "receivers" / "netlink" / "tests" / "fixtures").glob("*.bin")):
        put("netlink", f.stem, f.read_bytes())


def btf():
    strings = b"\0int\0s\0a\0colour\0RED\0BLUE\0skb_drop_reason\0SKB_DROP_REASON_NOT_SPECIFIED\0SKB_DROP_REASON_NO_SOCKET\0"
    off = lambda name: strings.index(b"\0" + name + b"\0") + 1
    words = []
    words += [off(b"int"), 1 << 24, 4, 32]
    words += [off(b"s"), (4 << 24) | 1, 4, off(b"a"), 1, 0]
    words += [off(b"colour"), (6 << 24) | 2, 4, off(b"RED"), 0, off(b"BLUE"), 7]
    # enum64 skb_drop_reason { NOT_SPECIFIED = 2, NO_SOCKET = 3 }
    words += [off(b"skb_drop_reason"), (19 << 24) | 2, 8,
              off(b"SKB_DROP_REASON_NOT_SPECIFIED"), 2, 0, off(b"SKB_DROP_REASON_NO_SOCKET"), 3, 0]
    types = b"".join(struct.pack("<I", w) for w in words)
    header = struct.pack("<HBBIIIII", 0xEB9F, 1, 0, 24, 0, len(types), len(types), len(strings))
    put("btf", "enums", header + types + strings)


def ebpf_record():
    def event(kind, family, stack):
        saddr = bytes([10, 0, 0, 1]) + bytes(12) if family == 2 else bytes(range(16))
        daddr = bytes([10, 0, 0, 2]) + bytes(12) if family == 2 else bytes(range(16, 32))
        head = struct.pack("<QQIIIHHHHBBH16s16sQIIII16s", 123456789, 0xFFFFFFFF81000100, kind, 4026531840, 3,
                           family, 6, 40000, 80, 6, 1, len(stack), saddr, daddr, 1500000, 42, 1, 0, 0, b"nginx")
        assert len(head) == 112, len(head)
        return head + b"".join(struct.pack("<Q", a) for a in stack)
    for kind in range(1, 13):
        put("ebpf_record", f"kind{kind}", event(kind, 2, []))
    put("ebpf_record", "stack-v6", event(1, 10, [0xFFFFFFFF81000100, 0xFFFFFFFF81000200]))


def attrs(**kv):
    return [KeyValue(key=k.replace("_", "."), value=AnyValue(string_value=v)) for k, v in kv.items()]


def metrics_request():
    req = ExportMetricsServiceRequest()
    rm = req.resource_metrics.add()
    rm.resource.attributes.extend(attrs(service_name="checkout", k8s_pod_name="web-1", k8s_namespace_name="shop"))
    sm = rm.scope_metrics.add()
    sm.scope.name = "podnet"
    t0, t1 = 1_700_000_000_000_000_000, 1_700_000_010_000_000_000
    m = sm.metrics.add(name="podnet.tcp.resets", unit="{reset}", description="resets")
    m.sum.is_monotonic = True
    m.sum.aggregation_temporality = metrics_pb2.AGGREGATION_TEMPORALITY_CUMULATIVE
    p = m.sum.data_points.add(start_time_unix_nano=t0, time_unix_nano=t1, as_int=7)
    p.attributes.extend(attrs(reason="nosock"))
    m = sm.metrics.add(name="queue.length", unit="By")
    m.gauge.data_points.add(time_unix_nano=t1, as_double=1.5)
    m = sm.metrics.add(name="podnet.socket.read.latency", unit="ms")
    m.histogram.aggregation_temporality = metrics_pb2.AGGREGATION_TEMPORALITY_CUMULATIVE
    m.histogram.data_points.add(start_time_unix_nano=t0, time_unix_nano=t1, count=6, sum=12.5,
                                bucket_counts=[1, 2, 3], explicit_bounds=[1.0, 5.0])
    m = sm.metrics.add(name="podnet.softirq.delay", unit="ns")
    m.exponential_histogram.aggregation_temporality = metrics_pb2.AGGREGATION_TEMPORALITY_CUMULATIVE
    e = m.exponential_histogram.data_points.add(start_time_unix_nano=t0, time_unix_nano=t1, count=7, sum=99.0,
                                                scale=0, zero_count=1)
    e.positive.offset = 3
    e.positive.bucket_counts.extend([1, 2, 3])
    m = sm.metrics.add(name="rpc.duration", unit="s")
    s = m.summary.data_points.add(start_time_unix_nano=t0, time_unix_nano=t1, count=4, sum=2.0)
    s.quantile_values.add(quantile=0.5, value=0.4)
    m = sm.metrics.add(name="delta.requests")
    m.sum.aggregation_temporality = metrics_pb2.AGGREGATION_TEMPORALITY_DELTA
    m.sum.data_points.add(time_unix_nano=t1, as_int=1)
    return req


def logs_request():
    req = ExportLogsServiceRequest()
    rl = req.resource_logs.add()
    rl.resource.attributes.extend(attrs(k8s_pod_name="web-1", k8s_namespace_name="shop", k8s_node_name="node-1"))
    sl = rl.scope_logs.add()
    r = sl.log_records.add(time_unix_nano=1_700_000_000_000_000_000, severity_number=13, severity_text="WARN")
    r.body.string_value = "TCPRESET_NOSOCK 10.0.0.1:40000 -> 10.0.0.2:80"
    r.event_name = "TCPRESET_NOSOCK"
    r.attributes.extend(attrs(podnet_event_type="TCPRESET_NOSOCK", network_peer_address="10.0.0.2"))
    return req


def otlp():
    metrics, logs = metrics_request(), logs_request()
    for mode in range(8):
        msg = logs if mode & 4 else metrics
        body = json_format.MessageToJson(msg).encode() if mode & 2 else msg.SerializeToString()
        if mode & 1:
            body = gzip.compress(body, mtime=0)
        put("otlp_http", f"mode{mode}", bytes([mode]) + body)
    put("prometheus", "all-kinds", metrics.SerializeToString())
    put("loki", "event", logs.SerializeToString())


def kube():
    pod = {"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": "web-1", "namespace": "shop", "uid": "0d4c2a3e-1f2b-4c5d-8e9f-0a1b2c3d4e5f",
                        "labels": {"app": "web"},
                        "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-7d9f",
                                             "uid": "u", "controller": True}]},
           "spec": {"nodeName": "node-1", "hostNetwork": False, "containers": [{"name": "web"}]},
           "status": {"phase": "Running", "podIP": "10.244.0.7", "podIPs": [{"ip": "10.244.0.7"}, {"ip": "fd00::7"}]}}
    put("kube", "pod", json.dumps(pod))
    put("kube", "watch-added", json.dumps({"type": "ADDED", "object": pod}))
    put("kube", "additional-label", "app=prefix_${labels:app}")


def varint(n):
    out = bytearray()
    while True:
        b, n = n & 0x7F, n >> 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def field(num, payload):
    return varint(num << 3 | 2) + varint(len(payload)) + payload


def cri():
    info = json.dumps({"pid": 4242, "runtimeSpec": {"linux": {"namespaces": [{"type": "network", "path": "/proc/4242/ns/net"}]}}})
    # PodSandboxStatusResponse { status: 1 { id: 1, metadata: 2 { name: 1, uid: 2, namespace: 3 } }, info: 2 map }
    metadata = field(1, b"web-1") + field(2, b"0d4c2a3e") + field(3, b"shop")
    status = field(1, b"sandbox-id") + field(2, metadata)
    put("cri", "status", field(1, status) + field(2, field(1, b"info") + field(2, info.encode())))
    put("cri", "info-json", info)


def config():
    for f in sorted((ROOT / "configs").glob("*.yaml")):
        put("config", f"configs-{f.stem}", f.read_text())
    for f in sorted((ROOT / "integration" / "tests" / "kubeskoop").glob("*.yaml")):
        put("config", f"kubeskoop-{f.stem}", f.read_text())


def main():
    clear_seeds()
    for build in (proc_text, netlink, btf, ebpf_record, otlp, kube, cri, config):
        build()
    total = sum(1 for _ in CORPUS.glob("*/seed-*"))
    digest = hashlib.sha256(b"".join(f.read_bytes() for f in sorted(CORPUS.glob("*/seed-*")))).hexdigest()[:12]
    print(f"{total} seeds written to {CORPUS} ({digest})")


if __name__ == "__main__":
    main()
