// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* tcpretrans: TCP retransmissions counted per namespace and TCP state, and per flow
 * (LRU), with an optional event per retransmit. */
#include "podnet.h"

struct state_key {
	__u32 netns;
	__u32 state;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, 16384);
	__type(key, struct state_key);
	__type(value, __u64);
} retrans SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 10240);
	__type(key, struct flow_key);
	__type(value, __u64);
} retrans_flows SEC(".maps");

static __always_inline int handle_retrans(void *ctx, const struct sock *sk)
{
	struct event tuple = {};
	if (!sk)
		return 0;
	stat_inc(ST_HITS);
	tuple_from_sk(sk, &tuple);
	struct state_key key = { .netns = sk_netns(sk), .state = tuple.state };
	count_one(&retrans, &key, 0);

	tuple.l4proto = IPPROTO_TCP;
	struct flow_key fk;
	flow_key_of(&fk, key.netns, &tuple, 1);
	if (count_one(&retrans_flows, &fk, 1))
		stat_inc(ST_FLOWS_NEW);

	struct event *e = reserve_event(EV_RETRANS, key.netns);
	if (!e)
		return 0;
	e->state = tuple.state;
	event_tuple(e, &tuple);
	add_stack(ctx, e);
	submit_event(e);
	return 0;
}

SEC("tp_btf/tcp_retransmit_skb")
int BPF_PROG(tcpretrans_btf, const struct sock *sk)
{
	return handle_retrans(ctx, sk);
}

/* The record as this kernel lays it out: the event's own, or its old class's (6.1). The
 * branch for the other layout is dead here, so the verifier never sees its reads. */
SEC("tracepoint/tcp/tcp_retransmit_skb")
int tcpretrans_tp(void *ctx)
{
	const struct sock *sk;
	if (bpf_core_type_exists(struct trace_event_raw_tcp_retransmit_skb))
		sk = BPF_CORE_READ((struct trace_event_raw_tcp_retransmit_skb *)ctx, skaddr);
	else
		sk = BPF_CORE_READ((struct trace_event_raw_tcp_event_sk_skb *)ctx, skaddr);
	return handle_retrans(ctx, sk);
}

SEC("kprobe/tcp_retransmit_skb")
int BPF_KPROBE(tcpretrans_kprobe, struct sock *sk)
{
	return handle_retrans(ctx, sk);
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
