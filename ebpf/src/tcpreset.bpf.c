// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* tcpreset: TCP resets sent and received, typed as KubeSkoop does (NOSOCK, ACTIVE,
 * PROCESS, RECEIVE), counted per namespace, kind and reset reason. */
#include "podnet.h"

struct reset_key {
	__u32 netns;
	__u16 kind;
	__u16 reason;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, 16384);
	__type(key, struct reset_key);
	__type(value, __u64);
} resets SEC(".maps");

static __always_inline void count_reset(__u32 netns, __u32 kind, __u32 reason)
{
	struct reset_key key = { .netns = netns, .kind = kind, .reason = reason };
	stat_inc(ST_HITS);
	count_one(&resets, &key, 0);
}

/* A reset we send. No socket: the reply to a segment for a closed port (NOSOCK). No
 * segment: the local end aborted (ACTIVE: SO_LINGER 0, close with unread data). Both:
 * the socket answered a segment it rejects (PROCESS). */
static __always_inline int handle_send(void *ctx, const struct sock *sk, const struct sk_buff *skb, __u32 reason)
{
	__u32 kind = !sk ? EV_RESET_NOSOCK : (!skb ? EV_RESET_ACTIVE : EV_RESET_PROCESS);
	__u32 netns = sk ? sk_netns(sk) : skb_netns(skb);
	count_reset(netns, kind, reason);
	struct event *e = reserve_event(kind, netns);
	if (!e)
		return 0;
	e->reason = reason;
	e->l4proto = IPPROTO_TCP;
	if (kind == EV_RESET_ACTIVE) {
		tuple_from_sk(sk, e);
	} else {
		/* The tuple of the segment that caused the reset, as KubeSkoop reports it. */
		e->protocol = tuple_from_skb(skb, e);
		e->l4proto = IPPROTO_TCP;
		if (sk)
			e->state = BPF_CORE_READ(sk, __sk_common.skc_state);
	}
	add_stack(ctx, e);
	submit_event(e);
	return 0;
}

static __always_inline int handle_receive(void *ctx, const struct sock *sk)
{
	__u32 netns = sk_netns(sk);
	count_reset(netns, EV_RESET_RECEIVE, 0);
	struct event *e = reserve_event(EV_RESET_RECEIVE, netns);
	if (!e)
		return 0;
	tuple_from_sk(sk, e);
	e->l4proto = IPPROTO_TCP;
	add_stack(ctx, e);
	submit_event(e);
	return 0;
}

/* The reason argument came with enum sk_rst_reason (6.10): before, the verifier refuses a
 * read of a third argument, so it is read only where the kernel passes it. */
SEC("tp_btf/tcp_send_reset")
int tcpreset_send_btf(__u64 *ctx)
{
	__u32 reason = 0;
	if (bpf_core_type_exists(enum sk_rst_reason))
		reason = (__u32)ctx[2];
	return handle_send(ctx, (const struct sock *)ctx[0], (const struct sk_buff *)ctx[1], reason);
}

SEC("tp_btf/tcp_receive_reset")
int BPF_PROG(tcpreset_receive_btf, struct sock *sk)
{
	return handle_receive(ctx, sk);
}

/* The record as this kernel lays it out: the event's own, or its old class's (6.1). */
SEC("tracepoint/tcp/tcp_send_reset")
int tcpreset_send_tp(void *ctx)
{
	const struct sock *sk;
	const struct sk_buff *skb;
	__u32 reason = 0;
	if (bpf_core_type_exists(struct trace_event_raw_tcp_send_reset)) {
		struct trace_event_raw_tcp_send_reset *args = ctx;
		sk = BPF_CORE_READ(args, skaddr);
		skb = BPF_CORE_READ(args, skbaddr);
		if (bpf_core_field_exists(args->reason))
			reason = BPF_CORE_READ(args, reason);
	} else {
		struct trace_event_raw_tcp_event_sk_skb *args = ctx;
		sk = BPF_CORE_READ(args, skaddr);
		skb = BPF_CORE_READ(args, skbaddr);
	}
	return handle_send(ctx, sk, skb, reason);
}

SEC("tracepoint/tcp/tcp_receive_reset")
int tcpreset_receive_tp(struct trace_event_raw_tcp_event_sk *args)
{
	return handle_receive(args, BPF_CORE_READ(args, skaddr));
}

/* Kernels without the send-reset tracepoint: the functions KubeSkoop probes. */
SEC("kprobe/tcp_v4_send_reset")
int BPF_KPROBE(tcpreset_v4_send_kprobe, const struct sock *sk, struct sk_buff *skb)
{
	return handle_send(ctx, sk, skb, 0);
}

SEC("kprobe/tcp_send_active_reset")
int BPF_KPROBE(tcpreset_active_kprobe, struct sock *sk)
{
	return handle_send(ctx, sk, 0, 0);
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
