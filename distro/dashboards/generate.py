#!/usr/bin/env python3
"""Writes the Grafana dashboards of distro/dashboards/ from the panel lists below, so every
panel has the same datasource, template variables and layout. Run it after editing a list:
    python3 distro/dashboards/generate.py            (--check: fail if the JSON is stale)
integration/tests/dashboards.rs runs every panel's queries against a real Prometheus that
scrapes podnet with containerd pods carrying traffic, and fails on a panel with no data."""
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
DS = {"type": "prometheus", "uid": "${datasource}"}
RATE = "[$__rate_interval]"
NODE = 'k8s_node=~"$node"'
POD = 'k8s_node=~"$node",k8s_namespace=~"$namespace",k8s_pod=~"$pod"'
HOST = 'k8s_node=~"$node",k8s_pod=""'


def variables(with_pods):
    def query(name, q):
        return {"name": name, "label": name, "type": "query", "datasource": DS, "query": {"query": q, "refId": name},
                "definition": q, "refresh": 2, "multi": True, "includeAll": True, "allValue": ".*", "sort": 1,
                "current": {"text": "All", "value": "$__all"}}
    out = [{"name": "datasource", "label": "datasource", "type": "datasource", "query": "prometheus", "current": {}},
           query("node", "label_values(kubeskoop_netdev_rxbytes, k8s_node)")]
    if with_pods:
        out.append(query("namespace", 'label_values(kubeskoop_netdev_rxbytes{k8s_node=~"$node",k8s_pod!=""}, k8s_namespace)'))
        out.append(query("pod", 'label_values(kubeskoop_netdev_rxbytes{k8s_node=~"$node",k8s_namespace=~"$namespace",k8s_pod!=""}, k8s_pod)'))
    return out


def dashboard(uid, title, description, panels, with_pods):
    out = []
    for i, (ptitle, unit, targets) in enumerate(panels):
        out.append({
            "id": i + 1, "type": "timeseries", "title": ptitle, "datasource": DS,
            "gridPos": {"h": 8, "w": 12, "x": 12 * (i % 2), "y": 8 * (i // 2)},
            "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
            "options": {"legend": {"displayMode": "list", "placement": "bottom"}, "tooltip": {"mode": "multi"}},
            "targets": [{"refId": chr(65 + j), "datasource": DS, "expr": expr, "legendFormat": legend}
                        for j, (expr, legend) in enumerate(targets)],
        })
    return {"uid": uid, "title": title, "description": description, "tags": ["podnet", "kubeskoop"],
            "schemaVersion": 39, "editable": True, "time": {"from": "now-1h", "to": "now"}, "refresh": "30s",
            "templating": {"list": variables(with_pods)}, "panels": out}


def r(metric, sel, by=None):
    inner = f"rate({metric}{{{sel}}}{RATE})"
    return f"sum by ({by}) ({inner})" if by else inner


NODES = [
    ("Throughput", "Bps", [(r("kubeskoop_netdev_rxbytes", HOST, "k8s_node"), "{{k8s_node}} receive"),
                           (r("kubeskoop_netdev_txbytes", HOST, "k8s_node"), "{{k8s_node}} transmit")]),
    ("Packets", "pps", [(r("kubeskoop_netdev_rxpackets", HOST, "k8s_node"), "{{k8s_node}} receive"),
                        (r("kubeskoop_netdev_txpackets", HOST, "k8s_node"), "{{k8s_node}} transmit")]),
    ("Device errors and drops", "pps", [(r(f"kubeskoop_netdev_{m}", HOST, "k8s_node"), "{{k8s_node}} " + m)
                                        for m in ("rxerrors", "txerrors", "rxdropped", "txdropped")]),
    ("TCP connections opened", "ops", [(r("kubeskoop_tcp_activeopens", HOST, "k8s_node"), "{{k8s_node}} active"),
                                       (r("kubeskoop_tcp_passiveopens", HOST, "k8s_node"), "{{k8s_node}} passive")]),
    ("TCP retransmitted segments and resets sent", "pps",
     [(r("kubeskoop_tcp_retranssegs", HOST, "k8s_node"), "{{k8s_node}} retransmitted"),
      (r("kubeskoop_tcp_outrsts", HOST, "k8s_node"), "{{k8s_node}} resets sent")]),
    ("Listen queue overflows and drops", "ops", [(r("kubeskoop_tcpext_listenoverflows", HOST, "k8s_node"), "{{k8s_node}} overflows"),
                                                 (r("kubeskoop_tcpext_listendrops", HOST, "k8s_node"), "{{k8s_node}} drops")]),
    ("Sockets", "short", [(f"sum by (k8s_node) (kubeskoop_sock_{m}{{{HOST}}})", "{{k8s_node}} " + m)
                          for m in ("inuse", "tw", "orphan", "alloc")]),
    ("TCP memory (pages)", "short", [(f"sum by (k8s_node) (kubeskoop_sock_mem{{{HOST}}})", "{{k8s_node}}")]),
    ("Conntrack entries", "short", [(f"sum by (k8s_node) (kubeskoop_conntrack_entries{{{NODE}}})", "{{k8s_node}} entries"),
                                    (f"sum by (k8s_node) (kubeskoop_conntrack_maxentries{{{NODE}}})", "{{k8s_node}} limit")]),
    ("Conntrack failures", "ops", [(r("kubeskoop_conntrack_insertfailed", NODE, "k8s_node"), "{{k8s_node}} insert failed"),
                                   (r("kubeskoop_conntrack_drop", NODE, "k8s_node"), "{{k8s_node}} dropped")]),
    ("Softnet", "pps", [(r("kubeskoop_softnet_processed", NODE, "k8s_node"), "{{k8s_node}} processed"),
                        (r("kubeskoop_softnet_dropped", NODE, "k8s_node"), "{{k8s_node}} dropped")]),
    ("UDP errors", "pps", [(r("kubeskoop_udp_noports", HOST, "k8s_node"), "{{k8s_node}} no port"),
                           (r("kubeskoop_udp_rcvbuferrors", HOST, "k8s_node"), "{{k8s_node}} receive buffer full")]),
]

BY_POD = "k8s_namespace, k8s_pod"
PODS = [
    ("Throughput per pod", "Bps", [(r("kubeskoop_netdev_rxbytes", POD, BY_POD), "{{k8s_namespace}}/{{k8s_pod}} receive"),
                                   (r("kubeskoop_netdev_txbytes", POD, BY_POD), "{{k8s_namespace}}/{{k8s_pod}} transmit")]),
    ("Packets per pod", "pps", [(r("kubeskoop_netdev_rxpackets", POD, BY_POD), "{{k8s_namespace}}/{{k8s_pod}} receive"),
                                (r("kubeskoop_netdev_txpackets", POD, BY_POD), "{{k8s_namespace}}/{{k8s_pod}} transmit")]),
    ("TCP connections by state", "short",
     [(f"sum by ({BY_POD}) (kubeskoop_tcpsummary_tcp{s}conn{{{POD}}})", "{{k8s_namespace}}/{{k8s_pod}} " + s)
      for s in ("established", "timewait", "closewait")]),
    ("TCP queues", "bytes", [(f"sum by ({BY_POD}) (kubeskoop_tcpsummary_tcprxqueue{{{POD}}})", "{{k8s_namespace}}/{{k8s_pod}} unread"),
                             (f"sum by ({BY_POD}) (kubeskoop_tcpsummary_tcptxqueue{{{POD}}})", "{{k8s_namespace}}/{{k8s_pod}} unacknowledged")]),
    ("TCP connections opened", "ops", [(r("kubeskoop_tcp_activeopens", POD, BY_POD), "{{k8s_namespace}}/{{k8s_pod}} active"),
                                       (r("kubeskoop_tcp_passiveopens", POD, BY_POD), "{{k8s_namespace}}/{{k8s_pod}} passive")]),
    ("TCP retransmitted segments and resets sent", "pps",
     [(r("kubeskoop_tcp_retranssegs", POD, BY_POD), "{{k8s_namespace}}/{{k8s_pod}} retransmitted"),
      (r("kubeskoop_tcp_outrsts", POD, BY_POD), "{{k8s_namespace}}/{{k8s_pod}} resets sent")]),
    ("Listen queue overflows", "ops", [(r("kubeskoop_tcpext_listenoverflows", POD, BY_POD), "{{k8s_namespace}}/{{k8s_pod}}")]),
    ("Sockets in use and orphaned", "short",
     [(f"sum by ({BY_POD}) (kubeskoop_sock_inuse{{{POD}}})", "{{k8s_namespace}}/{{k8s_pod}} in use"),
      (f"sum by ({BY_POD}) (kubeskoop_sock_orphan{{{POD}}})", "{{k8s_namespace}}/{{k8s_pod}} orphaned")]),
    ("UDP datagrams to closed ports", "pps", [(r("kubeskoop_udp_noports", POD, BY_POD), "{{k8s_namespace}}/{{k8s_pod}}")]),
    ("Open files and sockets", "short", [(f"sum by ({BY_POD}) (kubeskoop_fd_openfd{{{POD}}})", "{{k8s_namespace}}/{{k8s_pod}} files"),
                                         (f"sum by ({BY_POD}) (kubeskoop_fd_opensocket{{{POD}}})", "{{k8s_namespace}}/{{k8s_pod}} sockets")]),
    ("Packets dropped, by flow", "pps",
     [(r("kubeskoop_packetloss_total", POD, "k8s_pod, protocol, src, dst"), "{{k8s_pod}} {{protocol}} {{src}} → {{dst}}")]),
    ("Segments retransmitted, by flow", "pps",
     [(r("kubeskoop_tcpretrans_total", POD, "k8s_pod, src, dst"), "{{k8s_pod}} {{src}} → {{dst}}")]),
]

PODNET = [
    ("Drops by kernel reason", "pps",
     [(r("podnet_packet_drops_total", POD, "k8s_pod, podnet_drop_reason"), "{{k8s_pod}} {{podnet_drop_reason}}")]),
    ("TCP resets by kind", "ops",
     [(r("podnet_tcp_resets_total", POD, "k8s_pod, podnet_tcp_reset_kind"), "{{k8s_pod}} {{podnet_tcp_reset_kind}}")]),
    ("TCP retransmits by socket state", "pps",
     [(r("podnet_tcp_retransmits_total", NODE, "k8s_pod, network_connection_state"), "{{k8s_pod}} {{network_connection_state}}")]),
    ("Socket read delay, p50 and p99 (socketlatency)", "s",
     [(f"histogram_quantile({q}, sum by (le, k8s_pod) (rate(podnet_socket_read_delay_seconds_bucket{{{POD}}}{RATE})))",
       "{{k8s_pod}} p" + str(int(q * 100))) for q in (0.5, 0.99)]),
    ("Softirq scheduling delay, p99 (softirq)", "s",
     [(f"histogram_quantile(0.99, sum by (le, k8s_node, podnet_softirq_type) (rate(podnet_softirq_schedule_delay_seconds_bucket{{{NODE}}}{RATE})))",
       "{{k8s_node}} {{podnet_softirq_type}}")]),
    ("Probes up", "short", [("podnet_probe_up", "{{instance}} {{component_id}} {{probe}} ({{hook}})")]),
    ("eBPF events by outcome", "ops", [("sum by (instance, probe, outcome) (rate(podnet_ebpf_events_total" + RATE + "))",
                                        "{{instance}} {{probe}} {{outcome}}")]),
    ("Collection time, p99", "s",
     [(f"histogram_quantile(0.99, sum by (le, instance, component_id) (rate(podnet_receiver_collection_duration_seconds_bucket{RATE})))",
       "{{instance}} {{component_id}}")]),
    ("Pipeline throughput", "ops", [("sum by (instance, component_id) (rate(podnet_component_sent_total" + RATE + "))",
                                     "{{instance}} {{component_id}} sent")]),
]

DASHBOARDS = {
    "kubeskoop-nodes.json": dashboard("podnet-kubeskoop-nodes", "Nodes (KubeSkoop metrics)",
                                      "Node-level network counters in KubeSkoop's metric names (k8s_pod=\"\").", NODES, False),
    "kubeskoop-pods.json": dashboard("podnet-kubeskoop-pods", "Pods (KubeSkoop metrics)",
                                     "Per-pod network counters, drops and retransmits in KubeSkoop's metric names.", PODS, True),
    "podnet.json": dashboard("podnet-kernel", "podnet: drops, resets, latency and the agent's health",
                             "What KubeSkoop cannot show: drops by kernel reason, resets by kind, retransmits by state, "
                             "latency distributions, and podnet's own health.", PODNET, True),
}

# `--check`: exit 1 when a committed dashboard differs from what the lists above make.
check = "--check" in sys.argv
stale = []
for name, d in DASHBOARDS.items():
    text = json.dumps(d, indent=1, sort_keys=True) + "\n"
    path = os.path.join(HERE, name)
    if check:
        if not os.path.exists(path) or open(path).read() != text:
            stale.append(name)
    else:
        with open(path, "w") as f:
            f.write(text)
if stale:
    sys.exit(f"stale: {', '.join(stale)} (run python3 distro/dashboards/generate.py)")
