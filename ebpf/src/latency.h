/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* What the latency probes share: histograms of base-2 buckets aggregated in the kernel
 * per (namespace, stage, dimension), two threshold counters, and the slow-event record.
 * Mirrored in receivers/ebpf/src/abi.rs (LatKey, LatHist). */
#pragma once

#include "podnet.h"

/* Bucket i counts values v with 2^(i-1) < v <= 2^i ns (bucket 0: v = 1): OTLP's
 * exponential buckets at scale 0 (index i-1), upper bounds inclusive as Prometheus' `le`.
 * The last bucket also takes anything longer than 2^46 ns (about 20 hours). */
#define LAT_SLOTS 48

struct lat_key {
	__u32 netns; /* 0: node level */
	__u32 stage; /* the probe's interval (sched/execute, read/write, ...) */
	__u32 dim;   /* softirq vector, device, or 0 */
};

struct lat_hist {
	__u64 slots[LAT_SLOTS];
	__u64 zero;
	__u64 sum_ns;
	__u64 over_low;  /* above threshold_low_ns */
	__u64 over_high; /* above threshold_high_ns */
};

/* Set by the receiver at load time. */
volatile const __u64 threshold_low_ns = 10000000ULL;
volatile const __u64 threshold_high_ns = 100000000ULL;
volatile const __u64 event_threshold_ns = 10000000ULL;

#ifndef LAT_FIXED_SERIES
/* Allocated per key as it appears: a node with few pods pays for few. A probe with a small
 * fixed set of node-level series (softirq) defines LAT_FIXED_SERIES and keeps them in a
 * per-CPU array of its own named `latency`, indexed stage * LAT_FIXED_DIMS + dim. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, 16384);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct lat_key);
	__type(value, struct lat_hist);
} latency SEC(".maps");
#else
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, LAT_FIXED_SERIES);
	__type(key, __u32);
	__type(value, struct lat_hist);
} latency SEC(".maps");
#endif

/* Never written: the zeroes a new series starts from (too big for the BPF stack). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct lat_hist);
} empty_hist SEC(".maps");

/* Names of dimensions (devices, disks), written once when a series starts. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, struct lat_key);
	__type(value, char[16]);
} dim_names SEC(".maps");

static __always_inline __u32 log2_u64(__u64 v)
{
	__u32 r, shift;
	r = (v > 0xFFFFFFFFULL) << 5;
	v >>= r;
	shift = (v > 0xFFFF) << 4;
	v >>= shift;
	r |= shift;
	shift = (v > 0xFF) << 3;
	v >>= shift;
	r |= shift;
	shift = (v > 0xF) << 2;
	v >>= shift;
	r |= shift;
	shift = (v > 0x3) << 1;
	v >>= shift;
	r |= shift;
	r |= (v >> 1);
	return r;
}

/* The bucket of v >= 1: ceil(log2(v)). */
static __always_inline __u32 lat_slot(__u64 v)
{
	__u32 s = v <= 1 ? 0 : log2_u64(v - 1) + 1;
	return s < LAT_SLOTS ? s : LAT_SLOTS - 1;
}

/* Counts one interval of `ns` nanoseconds into a series. */
static __always_inline void lat_count(struct lat_hist *h, __u64 ns)
{
	stat_inc(ST_HITS);
	if (ns == 0) {
		h->zero += 1;
	} else {
		__u32 s = lat_slot(ns);
		if (s < LAT_SLOTS)
			h->slots[s] += 1;
	}
	h->sum_ns += ns;
	if (ns > threshold_low_ns)
		h->over_low += 1;
	if (ns > threshold_high_ns)
		h->over_high += 1;
}

#ifndef LAT_FIXED_SERIES
/* `dev`, when set, names the series' dimension: read only when the series is new. */
static __always_inline struct lat_hist *lat_series(struct lat_key *k, const struct net_device *dev)
{
	struct lat_hist *h = bpf_map_lookup_elem(&latency, k);
	if (h)
		return h;
	__u32 zero = 0;
	struct lat_hist *z = bpf_map_lookup_elem(&empty_hist, &zero);
	if (!z)
		return 0;
	bpf_map_update_elem(&latency, k, z, BPF_NOEXIST);
	h = bpf_map_lookup_elem(&latency, k);
	if (!h) {
		stat_inc(ST_SERIES_FULL);
		return 0;
	}
	if (dev) {
		char name[16] = {};
		BPF_CORE_READ_STR_INTO(&name, dev, name);
		bpf_map_update_elem(&dim_names, k, name, BPF_NOEXIST);
	}
	return h;
}

/* Counts one interval of `ns` nanoseconds. */
static __always_inline void lat_record(__u32 netns, __u32 stage, __u32 dim, __u64 ns, const struct net_device *dev)
{
	struct lat_key k = { .netns = netns, .stage = stage, .dim = dim };
	struct lat_hist *h = lat_series(&k, dev);
	if (h)
		lat_count(h, ns);
}
#endif

/* A slow-event record, or 0 when the interval is not slow enough or events are off. */
static __always_inline struct event *lat_event(__u32 kind, __u32 netns, __u64 ns)
{
	if (ns <= event_threshold_ns)
		return 0;
	struct event *e = reserve_event(kind, netns);
	if (!e)
		return 0;
	e->latency_ns = ns;
	e->reason = ns > threshold_high_ns;
	e->cpu = bpf_get_smp_processor_id();
	return e;
}


static __always_inline __u32 sock_netns(int btf, const struct sock *sk)
{
	if (btf)
		return sk->__sk_common.skc_net.net->ns.inum;
	return BPF_CORE_READ(sk, __sk_common.skc_net.net, ns.inum);
}

/* The task the hook runs in (meaningless in softirq context: callers decide). */
static __always_inline void event_task(struct event *e)
{
	e->pid = bpf_get_current_pid_tgid() >> 32;
	bpf_get_current_comm(e->name, sizeof(e->name));
}
