// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* netiftxlat: per device and namespace, the time a packet waits in the qdisc
 * (net_dev_queue -> net_dev_start_xmit) and the time the driver takes to accept it
 * (net_dev_start_xmit -> net_dev_xmit). Start times are keyed by the skb; each completion
 * deletes its entry, and an skb the qdisc drops leaves one behind that the LRU reclaims
 * (counted: started - completed - present). After the driver took it the skb may be freed
 * or moved to another device (veth hands it to its peer), so the driver stage reads
 * nothing from it: its device is remembered at start_xmit, and its events carry no tuple. */
#include "latency.h"

enum { STAGE_QDISC = 0, STAGE_XMIT = 1 };

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64);
	__type(value, __u64);
} queued SEC(".maps");

/* The driver stage runs start_xmit -> xmit on one CPU without sleeping, nested only when
 * one device's driver transmits on another (tunnels, bonds): a small per-CPU stack, no
 * hash. */
#define DRIVER_DEPTH 4 /* a power of two: indexes are masked with DRIVER_DEPTH - 1 */

struct in_driver {
	__u64 skb;
	__u64 ts;
	const struct net_device *dev;
};

struct driver_stack {
	__u32 depth;
	__u32 pad;
	struct in_driver slot[DRIVER_DEPTH];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct driver_stack);
} in_driver SEC(".maps");

static __always_inline void record(int btf, const struct net_device *dev, __u32 stage, __u32 kind, __u64 ns, const struct sk_buff *skb)
{
	__u32 netns = dev_netns(btf, dev);
	__u32 ifindex = KREAD(btf, dev, ifindex);
	lat_record(netns, stage, ifindex, ns, dev);
	struct event *e = lat_event(kind, netns, ns);
	if (!e)
		return;
	e->detail = ifindex;
	BPF_CORE_READ_STR_INTO(&e->name, dev, name);
	if (skb)
		e->protocol = tuple_from_skb(skb, e);
	submit_event(e);
}

/* Devices without a queue (noqueue: veth, bridges, loopback) hand packets straight to the
 * driver: there is no qdisc time to measure. A root qdisc queues when it enqueues, or when
 * it is classful (mq: its per-queue children enqueue); noqueue does neither. */
static __always_inline int dev_has_queue(int btf, const struct net_device *dev)
{
	if (!dev)
		return 0;
	struct Qdisc *q = KREAD(btf, dev, qdisc);
	if (!q)
		return 0;
	if (KREAD(btf, q, enqueue))
		return 1;
	const struct Qdisc_ops *ops = KREAD(btf, q, ops);
	return ops && KREAD(btf, ops, cl_ops);
}

static __always_inline int has_queue(int btf, const struct sk_buff *skb)
{
	return dev_has_queue(btf, KREAD(btf, skb, dev));
}

static __always_inline int on_queue(int btf, const struct sk_buff *skb)
{
	if (!has_queue(btf, skb))
		return 0;
	__u64 key = (__u64)skb, now = bpf_ktime_get_ns();
	if (!bpf_map_update_elem(&queued, &key, &now, BPF_ANY))
		stat_inc(ST_STARTED);
	return 0;
}

static __always_inline int on_start_xmit(int btf, const struct sk_buff *skb, const struct net_device *dev)
{
	__u64 key = (__u64)skb, now = bpf_ktime_get_ns();
	if (!dev)
		return 0;
	__u64 *ts = dev_has_queue(btf, dev) ? bpf_map_lookup_elem(&queued, &key) : 0;
	if (ts) {
		__u64 ns = now - *ts;
		bpf_map_delete_elem(&queued, &key);
		stat_inc(ST_COMPLETED);
		record(btf, dev, STAGE_QDISC, EV_NETIF_QDISC, ns, skb);
	}
	__u32 zero = 0;
	struct driver_stack *st = bpf_map_lookup_elem(&in_driver, &zero);
	if (!st)
		return 0;
	__u32 d = st->depth;
	if (d >= DRIVER_DEPTH)
		return 0;
	/* The mask changes nothing after the check; it is the bound older verifiers (6.1) need. */
	d &= DRIVER_DEPTH - 1;
	st->slot[d].skb = key;
	st->slot[d].ts = bpf_ktime_get_ns();
	st->slot[d].dev = dev;
	st->depth = d + 1;
	return 0;
}

/* `dev`: the tracepoint's own device argument (tp_btf), or 0 to use the one remembered. */
static __always_inline int on_xmit(int btf, const struct sk_buff *skb, const struct net_device *dev)
{
	__u32 zero = 0;
	struct driver_stack *st = bpf_map_lookup_elem(&in_driver, &zero);
	if (!st)
		return 0;
	__u32 d = st->depth;
	if (d == 0 || d > DRIVER_DEPTH)
		return 0;
	d = (d - 1) & (DRIVER_DEPTH - 1);
	st->depth = d;
	if (st->slot[d].skb != (__u64)skb)
		return 0;
	__u64 ns = bpf_ktime_get_ns() - st->slot[d].ts;
	if (btf && dev)
		record(1, dev, STAGE_XMIT, EV_NETIF_XMIT, ns, 0);
	else /* a pointer that came back from a map: only probe reads may follow it */
		record(0, st->slot[d].dev, STAGE_XMIT, EV_NETIF_XMIT, ns, 0);
	return 0;
}

SEC("tp_btf/net_dev_queue")
int BPF_PROG(netiftxlat_queue_btf, struct sk_buff *skb)
{
	return on_queue(1, skb);
}

SEC("tp_btf/net_dev_start_xmit")
int BPF_PROG(netiftxlat_start_btf, const struct sk_buff *skb, const struct net_device *dev)
{
	return on_start_xmit(1, skb, dev);
}

SEC("tp_btf/net_dev_xmit")
int BPF_PROG(netiftxlat_xmit_btf, const struct sk_buff *skb, int rc, struct net_device *dev)
{
	return on_xmit(1, skb, dev);
}

SEC("tracepoint/net/net_dev_queue")
int netiftxlat_queue_tp(struct trace_event_raw_net_dev_template *args)
{
	return on_queue(0, BPF_CORE_READ(args, skbaddr));
}

SEC("tracepoint/net/net_dev_start_xmit")
int netiftxlat_start_tp(struct trace_event_raw_net_dev_start_xmit *args)
{
	const struct sk_buff *skb = BPF_CORE_READ(args, skbaddr);
	return on_start_xmit(0, skb, BPF_CORE_READ(skb, dev));
}

SEC("tracepoint/net/net_dev_xmit")
int netiftxlat_xmit_tp(struct trace_event_raw_net_dev_xmit *args)
{
	return on_xmit(0, BPF_CORE_READ(args, skbaddr), 0);
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
