/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* What every podnet probe shares: the event record read by the `ebpf` receiver
 * (mirrored in receivers/ebpf/src/abi.rs: keep both in step), the per-probe self
 * counters, the per-namespace event rate limit and the socket/packet readers. */
#pragma once

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>

#define AF_INET 2
#define AF_INET6 10
#define ETH_P_IP 0x0800
#define ETH_P_IPV6 0x86DD
#define MAX_STACK 64

enum event_kind {
	EV_DROP = 1,
	EV_RESET_NOSOCK = 2,
	EV_RESET_ACTIVE = 3,
	EV_RESET_PROCESS = 4,
	EV_RESET_RECEIVE = 5,
	EV_RETRANS = 6,
	/* Latency events: `latency_ns` is set, `reason` is 1 when the latency is above the
	 * probe's high threshold (KubeSkoop's `_100MS` types). */
	EV_RX_KERNEL = 7,
	EV_TX_KERNEL = 8,
	EV_NETIF_QDISC = 9,
	EV_NETIF_XMIT = 10,
	EV_SOCK_READ = 11,
	EV_SOCK_WRITE = 12,
	EV_SOFTIRQ_SCHED = 13,
	EV_SOFTIRQ_EXEC = 14,
	EV_VIRTCMD = 15,
	EV_BIO = 16,
};

/* Indexes of the `stats` per-CPU array. */
enum probe_stat {
	ST_HITS = 0,        /* hook calls that were counted */
	ST_EVENTS = 1,      /* events written to the ring buffer */
	ST_LOST = 2,        /* events lost: the ring buffer was full */
	ST_RATE_LIMITED = 3, /* events suppressed by the per-namespace limit */
	ST_FILTERED = 4,    /* hook calls ignored (not IP, not a drop) */
	ST_FLOWS_NEW = 5,   /* flows added to the flow table (evictions = added - present) */
	ST_STARTED = 6,     /* latency probes: start timestamps stored */
	ST_COMPLETED = 7,   /* latency probes: start timestamps consumed by a completion */
	ST_SERIES_FULL = 8, /* latency probes: a new histogram series found its map full */
	ST_MAX = 10,
};

struct event {
	__u64 ts_ns;     /* bpf_ktime_get_ns(): CLOCK_MONOTONIC */
	__u64 location;  /* drop: the kernel address that freed the skb */
	__u32 kind;      /* enum event_kind */
	__u32 netns;     /* network namespace inode */
	__u32 reason;    /* skb_drop_reason or sk_rst_reason */
	__u16 family;    /* AF_INET / AF_INET6 */
	__u16 protocol;  /* ethertype, host order */
	__u16 sport;     /* host order */
	__u16 dport;     /* host order */
	__u8 l4proto;
	__u8 state;      /* TCP state of the socket, 0 when there is none */
	__u16 stack_len; /* frames in `stack` (stack-carrying records only) */
	__u8 saddr[16];
	__u8 daddr[16];
	__u64 latency_ns; /* latency events */
	__u32 pid;        /* the task, where the hook runs in one (tgid) */
	__u32 cpu;
	__u32 detail;     /* softirq vector, block device (dev_t), interface index */
	__u32 pad;
	char name[16];    /* the task's comm, or the device's name */
};

struct event_with_stack {
	struct event ev;
	__u64 stack[MAX_STACK];
};

struct rate_window {
	__u64 start_ns;
	__u64 count;
};

/* Set by the receiver at load time. */
volatile const __u32 emit_events = 1;
volatile const __u32 emit_stack = 0;
/* Events per second per namespace; 0 = no limit. */
volatile const __u32 events_per_second = 0;
/* Wake the reader only once this many records are waiting (it also drains on a timer). */
volatile const __u32 wakeup_batch = 512;

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 20);
} events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, ST_MAX);
	__type(key, __u32);
	__type(value, __u64);
} stats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 4096);
	__type(key, __u32);
	__type(value, struct rate_window);
} rate SEC(".maps");

static __always_inline void stat_inc(__u32 k)
{
	__u64 *v = bpf_map_lookup_elem(&stats, &k);
	if (v)
		*v += 1;
}

/* Adds one to the counter at `key`, creating it on first use: in a per-CPU hash this CPU's
 * slot (`shared` 0), in a hash all CPUs share an atomic add (`shared` 1). Two CPUs may both
 * find the key missing: the one whose insert fails (EEXIST) adds to the entry the other
 * made, so no first count is lost. Returns 1 when this call made the entry. */
static __always_inline int count_one(void *map, const void *key, int shared)
{
	__u64 one = 1, *v = bpf_map_lookup_elem(map, key);
	if (!v) {
		if (!bpf_map_update_elem(map, key, &one, BPF_NOEXIST))
			return 1;
		v = bpf_map_lookup_elem(map, key);
		if (!v)
			return 0;
	}
	if (shared)
		__sync_fetch_and_add(v, 1);
	else
		*v += 1;
	return 0;
}

/* A fixed one-second window per namespace: cheap, and a storm in one pod cannot
 * crowd the others out of the ring buffer. */
static __always_inline int rate_allows(__u32 netns)
{
	if (!events_per_second)
		return 1;
	__u64 now = bpf_ktime_get_ns();
	struct rate_window *w = bpf_map_lookup_elem(&rate, &netns);
	if (!w) {
		struct rate_window fresh = { .start_ns = now, .count = 1 };
		bpf_map_update_elem(&rate, &netns, &fresh, BPF_ANY);
		return 1;
	}
	if (now - w->start_ns >= 1000000000ULL) {
		w->start_ns = now;
		w->count = 1;
		return 1;
	}
	if (__sync_fetch_and_add(&w->count, 1) < events_per_second)
		return 1;
	stat_inc(ST_RATE_LIMITED);
	return 0;
}

static __always_inline void *reserve_event(__u32 kind, __u32 netns)
{
	struct event *e;
	if (!emit_events || !rate_allows(netns))
		return 0;
	if (emit_stack)
		e = bpf_ringbuf_reserve(&events, sizeof(struct event_with_stack), 0);
	else
		e = bpf_ringbuf_reserve(&events, sizeof(struct event), 0);
	if (!e) {
		stat_inc(ST_LOST);
		return 0;
	}
	__builtin_memset(e, 0, sizeof(*e));
	e->ts_ns = bpf_ktime_get_ns();
	e->kind = kind;
	e->netns = netns;
	return e;
}

static __always_inline void add_stack(void *ctx, struct event *e)
{
	if (!emit_stack)
		return;
	struct event_with_stack *s = (void *)e;
	long n = bpf_get_stack(ctx, s->stack, sizeof(s->stack), 0);
	if (n > 0)
		e->stack_len = n / sizeof(__u64);
}

static __always_inline void submit_event(struct event *e)
{
	__u64 flags = 0;
	if (wakeup_batch > 1) {
		/* Wake the reader once each time the backlog crosses another `wakeup_batch`
		 * records, not on every record while it lags: a wake-up costs far more than a record. */
		__u64 rec = (emit_stack ? sizeof(struct event_with_stack) : sizeof(struct event)) + 8;
		__u64 step = (__u64)wakeup_batch * rec;
		__u64 pending = bpf_ringbuf_query(&events, BPF_RB_AVAIL_DATA);
		flags = pending >= rec && pending / step != (pending - rec) / step ? BPF_RB_FORCE_WAKEUP : BPF_RB_NO_WAKEUP;
	}
	bpf_ringbuf_submit(e, flags);
	stat_inc(ST_EVENTS);
}

static __always_inline __u32 sk_netns(const struct sock *sk)
{
	if (!sk)
		return 0;
	return BPF_CORE_READ(sk, __sk_common.skc_net.net, ns.inum);
}

static __always_inline __u32 skb_netns(const struct sk_buff *skb)
{
	if (!skb)
		return 0;
	struct net_device *dev = BPF_CORE_READ(skb, dev);
	if (dev)
		return BPF_CORE_READ(dev, nd_net.net, ns.inum);
	return sk_netns(BPF_CORE_READ(skb, sk));
}

/* A field read: a plain load where the program holds a BTF pointer (tp_btf: `btf` is a
 * constant 1 in the inlined handler, so the other branch compiles away), a CO-RE probe
 * read where it holds a bare address (classic tracepoints, kprobes). */
/* The record of the tcp tracepoints' old event class: tcp_retransmit_skb and tcp_send_reset
 * were events of the class tcp_event_sk_skb until they got records of their own (the ones
 * this vmlinux.h, from 6.18, has). Only the fields read are declared: CO-RE finds them by
 * name in the running kernel. */
struct trace_event_raw_tcp_event_sk_skb {
	const void *skbaddr;
	const void *skaddr;
} __attribute__((preserve_access_index));

#define KREAD(btf, ptr, field) ((btf) ? (ptr)->field : BPF_CORE_READ(ptr, field))

static __always_inline __u32 dev_netns(int btf, const struct net_device *dev)
{
	if (btf)
		return dev->nd_net.net->ns.inum;
	return BPF_CORE_READ(dev, nd_net.net, ns.inum);
}

/* The socket's own view: source = local end. Works for full, request and time-wait
 * sockets alike, as all of them start with sock_common. */
static __always_inline void tuple_from_sk(const struct sock *sk, struct event *e)
{
	e->family = BPF_CORE_READ(sk, __sk_common.skc_family);
	e->state = BPF_CORE_READ(sk, __sk_common.skc_state);
	e->sport = BPF_CORE_READ(sk, __sk_common.skc_num);
	e->dport = bpf_ntohs(BPF_CORE_READ(sk, __sk_common.skc_dport));
	if (e->family == AF_INET) {
		__u32 s = BPF_CORE_READ(sk, __sk_common.skc_rcv_saddr);
		__u32 d = BPF_CORE_READ(sk, __sk_common.skc_daddr);
		__builtin_memcpy(e->saddr, &s, 4);
		__builtin_memcpy(e->daddr, &d, 4);
	} else if (e->family == AF_INET6) {
		BPF_CORE_READ_INTO(&e->saddr, sk, __sk_common.skc_v6_rcv_saddr);
		BPF_CORE_READ_INTO(&e->daddr, sk, __sk_common.skc_v6_daddr);
	}
}

/* The packet's own view, from its IP and TCP/UDP headers at head + nh (transport header
 * at th when set). One read covers the IP header and the ports in the usual case.
 * Returns the ethertype, or 0 when the packet is not IP. */
static __always_inline __u16 tuple_from_headers(unsigned char *head, __u16 nh, __u16 th, struct event *e)
{
	union {
		struct iphdr v4;
		struct ipv6hdr v6;
		__u8 raw[48];
	} h;
	__u32 l4off;
	if (!head || nh == (__u16)~0U)
		return 0;
	if (bpf_probe_read_kernel(&h, sizeof(h), head + nh)) {
		__builtin_memset(&h, 0, sizeof(h));
		if (bpf_probe_read_kernel(&h, sizeof(struct iphdr), head + nh))
			return 0;
	}
	__u8 version = h.raw[0] >> 4;
	__u16 proto;
	if (version == 4) {
		proto = ETH_P_IP;
		e->family = AF_INET;
		e->l4proto = h.v4.protocol;
		__builtin_memcpy(e->saddr, &h.v4.saddr, 4);
		__builtin_memcpy(e->daddr, &h.v4.daddr, 4);
		l4off = h.v4.ihl * 4;
	} else if (version == 6) {
		proto = ETH_P_IPV6;
		e->family = AF_INET6;
		e->l4proto = h.v6.nexthdr;
		__builtin_memcpy(e->saddr, &h.v6.saddr, 16);
		__builtin_memcpy(e->daddr, &h.v6.daddr, 16);
		l4off = sizeof(struct ipv6hdr);
	} else {
		return 0;
	}
	if (e->l4proto != IPPROTO_TCP && e->l4proto != IPPROTO_UDP)
		return proto;
	if (th != (__u16)~0U && th > nh)
		l4off = th - nh;
	__be16 ports[2];
	/* Constant offsets only: the verifier refuses variable ones into the stack. */
	if (l4off == 20)
		__builtin_memcpy(ports, &h.raw[20], sizeof(ports));
	else if (l4off == 40)
		__builtin_memcpy(ports, &h.raw[40], sizeof(ports));
	else if (bpf_probe_read_kernel(ports, sizeof(ports), head + nh + l4off))
		return proto;
	e->sport = bpf_ntohs(ports[0]);
	e->dport = bpf_ntohs(ports[1]);
	return proto;
}

/* The same, reading the skb's fields through CO-RE probe reads (tracepoints, kprobes). */
static __always_inline __u16 tuple_from_skb(const struct sk_buff *skb, struct event *e)
{
	return tuple_from_headers(BPF_CORE_READ(skb, head), BPF_CORE_READ(skb, network_header),
				  BPF_CORE_READ(skb, transport_header), e);
}

static __always_inline void swap_tuple(struct event *e)
{
	__u8 tmp[16];
	__u16 p = e->sport;
	e->sport = e->dport;
	e->dport = p;
	__builtin_memcpy(tmp, e->saddr, 16);
	__builtin_memcpy(e->saddr, e->daddr, 16);
	__builtin_memcpy(e->daddr, tmp, 16);
}

/* Flow keys: bounded by an LRU map whose size the receiver sets. */
struct flow_key {
	__u32 netns;
	__u16 family;
	__u8 l4proto;
	__u8 direction; /* flow: FLOW_TX or FLOW_RX; 0 in the other probes' tables */
	__u16 sport;
	__u16 dport;
	__u8 saddr[16];
	__u8 daddr[16];
};

/* The flow of a parsed tuple; ports only where the table keeps them. */
static __always_inline void flow_key_of(struct flow_key *fk, __u32 netns, const struct event *t, int ports)
{
	__builtin_memset(fk, 0, sizeof(*fk));
	fk->netns = netns;
	fk->family = t->family;
	fk->l4proto = t->l4proto;
	if (ports) {
		fk->sport = t->sport;
		fk->dport = t->dport;
	}
	__builtin_memcpy(fk->saddr, t->saddr, 16);
	__builtin_memcpy(fk->daddr, t->daddr, 16);
}

/* Copies a parsed tuple into an event. */
static __always_inline void event_tuple(struct event *e, const struct event *t)
{
	e->family = t->family;
	e->l4proto = t->l4proto;
	e->sport = t->sport;
	e->dport = t->dport;
	__builtin_memcpy(e->saddr, t->saddr, 16);
	__builtin_memcpy(e->daddr, t->daddr, 16);
}
