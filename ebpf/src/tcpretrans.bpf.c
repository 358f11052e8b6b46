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
	__u64 one = 1, *v;
	if (!sk)
		return 0;
	stat_inc(ST_HITS);
	tuple_from_sk(sk, &tuple);
	struct state_key key = { .netns = sk_netns(sk), .state = tuple.state };
	v = bpf_map_lookup_elem(&retrans, &key);
	if (v)
		*v += 1;
	else
		bpf_map_update_elem(&retrans, &key, &one, BPF_NOEXIST);

	tuple.l4proto = IPPROTO_TCP;
	struct flow_key fk;
	flow_key_of(&fk, key.netns, &tuple, 1);
	v = bpf_map_lookup_elem(&retrans_flows, &fk);
	if (v)
		__sync_fetch_and_add(v, 1);
	else if (!bpf_map_update_elem(&retrans_flows, &fk, &one, BPF_NOEXIST))
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

SEC("tracepoint/tcp/tcp_retransmit_skb")
int tcpretrans_tp(struct trace_event_raw_tcp_retransmit_skb *args)
{
	return handle_retrans(args, BPF_CORE_READ(args, skaddr));
}

SEC("kprobe/tcp_retransmit_skb")
int BPF_KPROBE(tcpretrans_kprobe, struct sock *sk)
{
	return handle_retrans(ctx, sk);
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
