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

struct in_driver {
	__u64 ts;
	const struct net_device *dev;
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64);
	__type(value, struct in_driver);
} xmitting SEC(".maps");

static __always_inline void record(const struct net_device *dev, __u32 stage, __u32 kind, __u64 ns, const struct sk_buff *skb)
{
	__u32 netns = BPF_CORE_READ(dev, nd_net.net, ns.inum);
	__u32 ifindex = BPF_CORE_READ(dev, ifindex);
	char name[16] = {};
	BPF_CORE_READ_STR_INTO(&name, dev, name);
	lat_record(netns, stage, ifindex, ns, name);
	struct event *e = lat_event(kind, netns, ns);
	if (!e)
		return;
	e->detail = ifindex;
	__builtin_memcpy(e->name, name, sizeof(name));
	if (skb)
		e->protocol = tuple_from_skb(skb, e);
	submit_event(e);
}

static __always_inline int on_queue(const struct sk_buff *skb)
{
	__u64 key = (__u64)skb, now = bpf_ktime_get_ns();
	if (!bpf_map_update_elem(&queued, &key, &now, BPF_ANY))
		stat_inc(ST_STARTED);
	return 0;
}

static __always_inline int on_start_xmit(const struct sk_buff *skb, const struct net_device *dev)
{
	__u64 key = (__u64)skb, now = bpf_ktime_get_ns();
	if (!dev)
		return 0;
	__u64 *ts = bpf_map_lookup_elem(&queued, &key);
	if (ts) {
		__u64 ns = now - *ts;
		bpf_map_delete_elem(&queued, &key);
		stat_inc(ST_COMPLETED);
		record(dev, STAGE_QDISC, EV_NETIF_QDISC, ns, skb);
	}
	struct in_driver d = { .ts = now, .dev = dev };
	if (!bpf_map_update_elem(&xmitting, &key, &d, BPF_ANY))
		stat_inc(ST_STARTED);
	return 0;
}

static __always_inline int on_xmit(const struct sk_buff *skb)
{
	__u64 key = (__u64)skb;
	struct in_driver *d = bpf_map_lookup_elem(&xmitting, &key);
	if (!d)
		return 0;
	__u64 ns = bpf_ktime_get_ns() - d->ts;
	const struct net_device *dev = d->dev;
	bpf_map_delete_elem(&xmitting, &key);
	stat_inc(ST_COMPLETED);
	record(dev, STAGE_XMIT, EV_NETIF_XMIT, ns, 0);
	return 0;
}

SEC("tp_btf/net_dev_queue")
int BPF_PROG(netiftxlat_queue_btf, struct sk_buff *skb)
{
	return on_queue(skb);
}

SEC("tp_btf/net_dev_start_xmit")
int BPF_PROG(netiftxlat_start_btf, const struct sk_buff *skb, const struct net_device *dev)
{
	return on_start_xmit(skb, dev);
}

SEC("tp_btf/net_dev_xmit")
int BPF_PROG(netiftxlat_xmit_btf, const struct sk_buff *skb)
{
	return on_xmit(skb);
}

SEC("tracepoint/net/net_dev_queue")
int netiftxlat_queue_tp(struct trace_event_raw_net_dev_template *args)
{
	return on_queue(BPF_CORE_READ(args, skbaddr));
}

SEC("tracepoint/net/net_dev_start_xmit")
int netiftxlat_start_tp(struct trace_event_raw_net_dev_start_xmit *args)
{
	const struct sk_buff *skb = BPF_CORE_READ(args, skbaddr);
	return on_start_xmit(skb, BPF_CORE_READ(skb, dev));
}

SEC("tracepoint/net/net_dev_xmit")
int netiftxlat_xmit_tp(struct trace_event_raw_net_dev_xmit *args)
{
	return on_xmit(BPF_CORE_READ(args, skbaddr));
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
