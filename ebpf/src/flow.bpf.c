// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* flow: bytes and packets per flow and direction, counted in a per-CPU LRU hash that
 * user space reads at collection time (nothing per packet reaches user space).
 *
 *  - pods mode: every packet a pod's own devices send (net_dev_queue) or receive
 *    (netif_receive_skb), attributed to the device's network namespace, so pod-to-pod
 *    traffic on one node is seen whatever the CNI (veth, ipvlan, macvlan, netkit). The
 *    host's namespace is skipped (its devices carry the pods' traffic a second time), and
 *    so is loopback.
 *  - nic mode (KubeSkoop's): TC ingress/egress on the node's NIC(s), node level.
 *
 * Bytes are IP bytes (from the IP header on, as the packet's length says: a GSO/GRO
 * packet counts its whole length and its segments as packets), so both hooks and every
 * device type agree. */
#include "podnet.h"

#define FLOW_TX 1
#define FLOW_RX 2
#define IFF_LOOPBACK_ 0x8
#define ETH_HLEN_ 14
#define TC_ACT_UNSPEC_ (-1)

struct flow_value {
	__u64 packets;
	__u64 bytes;
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_PERCPU_HASH);
	__uint(max_entries, 10240);
	__type(key, struct flow_key);
	__type(value, struct flow_value);
} flows SEC(".maps");

/* 0: no ports in the key; 1: both ports; 2: the server port only (the ephemeral one of a
 * pair is zeroed, so one busy client is one flow, not one per connection). */
volatile const __u32 ports_mode = 0;
/* The node's ephemeral port range (net.ipv4.ip_local_port_range). */
volatile const __u32 ephemeral_low = 32768;
volatile const __u32 ephemeral_high = 60999;
/* pods mode: the host's network namespace, whose devices are not a pod's. */
volatile const __u32 host_netns = 0;

static __always_inline int ephemeral(__u16 port)
{
	return port >= ephemeral_low && port <= ephemeral_high;
}

static __always_inline void aggregate_ports(struct flow_key *k)
{
	int s = ephemeral(k->sport), d = ephemeral(k->dport);
	/* Both ephemeral (a server on a high port): keep the lower, the likelier listener. */
	if (s && (!d || k->sport > k->dport))
		k->sport = 0;
	else if (d)
		k->dport = 0;
}

static __always_inline void count_flow(__u32 netns, __u8 direction, const struct event *t, __u64 bytes, __u64 packets)
{
	struct flow_key fk;
	flow_key_of(&fk, netns, t, ports_mode != 0);
	fk.direction = direction;
	if (ports_mode == 2)
		aggregate_ports(&fk);
	/* Per-CPU values: this CPU's slot, no atomics. */
	struct flow_value *v = bpf_map_lookup_elem(&flows, &fk);
	if (!v) {
		struct flow_value first = { .packets = packets, .bytes = bytes };
		if (!bpf_map_update_elem(&flows, &fk, &first, BPF_NOEXIST)) {
			stat_inc(ST_FLOWS_NEW);
			return;
		}
		/* Another CPU added it first. */
		v = bpf_map_lookup_elem(&flows, &fk);
		if (!v)
			return;
	}
	v->packets += packets;
	v->bytes += bytes;
}

/* pods mode. `nh`: the IP header's offset from head; `l2`: link-layer bytes still counted
 * in skb->len at this hook (receive: netif_receive_skb; transmit: net_dev_queue). */
static __always_inline int count_skb(int btf, struct sk_buff *skb, __u8 direction)
{
	/* Most runs end here: every packet also crosses the host's devices. No counter on
	 * this path, it runs for every packet on the node. */
	struct net_device *dev = KREAD(btf, skb, dev);
	if (!dev)
		return 0;
	__u32 netns = dev_netns(btf, dev);
	if (netns == host_netns)
		return 0;
	unsigned int flags = KREAD(btf, dev, flags);
	__u16 proto = bpf_ntohs(KREAD(btf, skb, protocol));
	if ((flags & IFF_LOOPBACK_) || (proto != ETH_P_IP && proto != ETH_P_IPV6))
		return 0;
	unsigned char *head = KREAD(btf, skb, head);
	unsigned char *data = KREAD(btf, skb, data);
	__u32 len = KREAD(btf, skb, len);
	__u16 nh, th;
	if (direction == FLOW_RX) {
		/* netif_receive_skb fires before the stack resets the network header: the driver
		 * has pulled the link header, so data is the IP header. */
		nh = data - head;
		th = (__u16)~0U;
	} else {
		nh = KREAD(btf, skb, network_header);
		th = KREAD(btf, skb, transport_header);
	}
	struct event t = {};
	if (!tuple_from_headers(head, nh, th, &t))
		return 0;
	/* data is at the link header on transmit, at the IP header on receive. */
	__u32 l2 = head + nh > data ? head + nh - data : 0;
	/* A computed address, not a BTF pointer: a probe read on every kernel (6.1's verifier
	 * refuses a plain load from it in tp_btf). */
	struct skb_shared_info *shinfo = (void *)(head + KREAD(btf, skb, end));
	__u16 segs = BPF_CORE_READ(shinfo, gso_segs);
	count_flow(netns, direction, &t, len > l2 ? len - l2 : 0, segs ?: 1);
	return 0;
}

SEC("tp_btf/net_dev_queue")
int BPF_PROG(flow_tx_btf, struct sk_buff *skb)
{
	return count_skb(1, skb, FLOW_TX);
}

SEC("tp_btf/netif_receive_skb")
int BPF_PROG(flow_rx_btf, struct sk_buff *skb)
{
	return count_skb(1, skb, FLOW_RX);
}

SEC("tracepoint/net/net_dev_queue")
int flow_tx_tp(struct trace_event_raw_net_dev_template *args)
{
	return count_skb(0, BPF_CORE_READ(args, skbaddr), FLOW_TX);
}

SEC("tracepoint/net/netif_receive_skb")
int flow_rx_tp(struct trace_event_raw_net_dev_template *args)
{
	return count_skb(0, BPF_CORE_READ(args, skbaddr), FLOW_RX);
}

/* nic mode: Ethernet devices (user space attaches to nothing else). Returns "no verdict"
 * (TC_ACT_UNSPEC, tcx's NEXT) so the programs after this one, a CNI's, still run. */
static __always_inline int count_tc(struct __sk_buff *skb, __u8 direction)
{
	__u16 proto = bpf_ntohs(skb->protocol);
	union {
		struct iphdr v4;
		struct ipv6hdr v6;
		__u8 raw[44];
	} h = {};
	struct event t = {};
	__u32 l4off;
	if (proto == ETH_P_IP) {
		if (bpf_skb_load_bytes(skb, ETH_HLEN_, &h, 24) < 0 && bpf_skb_load_bytes(skb, ETH_HLEN_, &h, 20) < 0)
			goto filtered;
		if (h.v4.version != 4)
			goto filtered;
		t.family = AF_INET;
		t.l4proto = h.v4.protocol;
		__builtin_memcpy(t.saddr, &h.v4.saddr, 4);
		__builtin_memcpy(t.daddr, &h.v4.daddr, 4);
		l4off = h.v4.ihl * 4;
	} else if (proto == ETH_P_IPV6) {
		if (bpf_skb_load_bytes(skb, ETH_HLEN_, &h, 44) < 0 && bpf_skb_load_bytes(skb, ETH_HLEN_, &h, 40) < 0)
			goto filtered;
		if (h.v6.version != 6)
			goto filtered;
		t.family = AF_INET6;
		t.l4proto = h.v6.nexthdr;
		__builtin_memcpy(t.saddr, &h.v6.saddr, 16);
		__builtin_memcpy(t.daddr, &h.v6.daddr, 16);
		l4off = 40;
	} else {
		goto filtered;
	}
	if (ports_mode && (t.l4proto == IPPROTO_TCP || t.l4proto == IPPROTO_UDP)) {
		__be16 ports[2] = {};
		if (l4off == 20)
			__builtin_memcpy(ports, &h.raw[20], sizeof(ports));
		else if (l4off == 40)
			__builtin_memcpy(ports, &h.raw[40], sizeof(ports));
		else
			bpf_skb_load_bytes(skb, ETH_HLEN_ + (l4off & 0x3f), ports, sizeof(ports));
		t.sport = bpf_ntohs(ports[0]);
		t.dport = bpf_ntohs(ports[1]);
	}
	count_flow(0, direction, &t, skb->len > ETH_HLEN_ ? skb->len - ETH_HLEN_ : 0, skb->gso_segs ?: 1);
filtered:
	return TC_ACT_UNSPEC_;
}

SEC("classifier")
int flow_tc_ingress(struct __sk_buff *skb)
{
	return count_tc(skb, FLOW_RX);
}

SEC("classifier")
int flow_tc_egress(struct __sk_buff *skb)
{
	return count_tc(skb, FLOW_TX);
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
