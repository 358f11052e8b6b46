// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* packetloss: every IP packet the kernel drops (skb:kfree_skb), counted per network
 * namespace and drop reason, and per flow (LRU), with an optional event per drop. */
#include "podnet.h"

struct drop_key {
	__u32 netns;
	__u32 reason;
};

struct flow_drops {
	__u64 total;
	__u64 netfilter;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, 16384);
	__type(key, struct drop_key);
	__type(value, __u64);
} drops SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 10240);
	__type(key, struct flow_key);
	__type(value, struct flow_drops);
} drop_flows SEC(".maps");

static __always_inline int not_a_drop(__u32 reason)
{
	if (reason == 0) /* SKB_NOT_DROPPED_YET */
		return 1;
	if (bpf_core_enum_value_exists(enum skb_drop_reason, SKB_CONSUMED) &&
	    reason == bpf_core_enum_value(enum skb_drop_reason, SKB_CONSUMED))
		return 1;
	return 0;
}

static __always_inline int is_netfilter(__u32 reason)
{
	return bpf_core_enum_value_exists(enum skb_drop_reason, SKB_DROP_REASON_NETFILTER_DROP) &&
	       reason == bpf_core_enum_value(enum skb_drop_reason, SKB_DROP_REASON_NETFILTER_DROP);
}

/* Counts a drop whose namespace and ethertype the caller read, with the tuple parsed
 * from the headers (for the flow table and the event). */
static __always_inline int count_drop(void *ctx, __u32 netns, __u16 proto, unsigned char *head, __u16 nh, __u16 th,
				      __u64 location, __u32 reason)
{
	struct event tuple = {};
	struct drop_key key = { .netns = netns, .reason = reason };

	if (not_a_drop(reason) || (proto != ETH_P_IP && proto != ETH_P_IPV6)) {
		stat_inc(ST_FILTERED);
		return 0;
	}
	/* A packet may claim IP and carry no parseable header yet: counted, without a flow. */
	proto = tuple_from_headers(head, nh, th, &tuple) ?: proto;
	stat_inc(ST_HITS);
	count_one(&drops, &key, 0);

	if (tuple.family) {
		struct flow_key fk;
		flow_key_of(&fk, netns, &tuple, 0);
		struct flow_drops *f = bpf_map_lookup_elem(&drop_flows, &fk);
		if (!f) {
			struct flow_drops zero = {};
			if (!bpf_map_update_elem(&drop_flows, &fk, &zero, BPF_NOEXIST))
				stat_inc(ST_FLOWS_NEW);
			f = bpf_map_lookup_elem(&drop_flows, &fk);
		}
		if (f) {
			__sync_fetch_and_add(&f->total, 1);
			if (is_netfilter(reason))
				__sync_fetch_and_add(&f->netfilter, 1);
		}
	}

	struct event *e = reserve_event(EV_DROP, netns);
	if (!e)
		return 0;
	e->location = location;
	e->reason = reason;
	e->protocol = proto;
	event_tuple(e, &tuple);
	add_stack(ctx, e);
	submit_event(e);
	return 0;
}

/* tp_btf: the skb is a typed pointer, so its fields are plain loads (no helper calls). */
SEC("tp_btf/kfree_skb")
int BPF_PROG(packetloss_btf, struct sk_buff *skb, void *location, enum skb_drop_reason reason)
{
	__u16 proto = bpf_ntohs(skb->protocol);
	if (proto != ETH_P_IP && proto != ETH_P_IPV6) {
		stat_inc(ST_FILTERED);
		return 0;
	}
	struct net_device *dev = skb->dev;
	struct sock *sk = skb->sk;
	__u32 netns = 0;
	if (dev)
		netns = dev->nd_net.net->ns.inum;
	else if (sk)
		netns = sk->__sk_common.skc_net.net->ns.inum;
	return count_drop(ctx, netns, proto, skb->head, skb->network_header, skb->transport_header, (__u64)location, reason);
}

static __always_inline int drop_core(void *ctx, struct sk_buff *skb, __u64 location, __u32 reason)
{
	__u16 proto = bpf_ntohs(BPF_CORE_READ(skb, protocol));
	if (proto != ETH_P_IP && proto != ETH_P_IPV6) {
		stat_inc(ST_FILTERED);
		return 0;
	}
	return count_drop(ctx, skb_netns(skb), proto, BPF_CORE_READ(skb, head), BPF_CORE_READ(skb, network_header),
			  BPF_CORE_READ(skb, transport_header), location, reason);
}

SEC("tracepoint/skb/kfree_skb")
int packetloss_tp(struct trace_event_raw_kfree_skb *args)
{
	struct sk_buff *skb = BPF_CORE_READ(args, skbaddr);
	__u32 reason = 0;
	if (bpf_core_field_exists(args->reason))
		reason = BPF_CORE_READ(args, reason);
	else
		reason = 2; /* kernels before drop reasons: every kfree_skb is a drop */
	return drop_core(args, skb, (__u64)BPF_CORE_READ(args, location), reason);
}

/* For kernels whose tracepoints cannot be used; needs kprobes. */
SEC("kprobe/kfree_skb_reason")
int BPF_KPROBE(packetloss_kprobe, struct sk_buff *skb, enum skb_drop_reason reason)
{
	return drop_core(ctx, skb, 0, reason);
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
