// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* softirq: per softirq type, the scheduling delay (raise -> entry) and the execution time
 * (entry -> exit), node level. A softirq runs on the CPU that raised it, so the start
 * times live in per-CPU arrays indexed by vector: bounded, nothing to leak. */
#define NR_VEC 10
#define LAT_FIXED_SERIES (2 * NR_VEC)
#include "latency.h"

enum { STAGE_SCHED = 0, STAGE_EXEC = 1 };

/* Bit per vector (NET_TX = 2, NET_RX = 3, ...); set by the receiver. */
volatile const __u32 softirq_mask = (1 << 2) | (1 << 3);

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, NR_VEC);
	__type(key, __u32);
	__type(value, __u64);
} raised SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, NR_VEC);
	__type(key, __u32);
	__type(value, __u64);
} entered SEC(".maps");

static __always_inline void record(__u32 stage, __u32 vec, __u64 ns)
{
	__u32 i = stage * NR_VEC + vec;
	struct lat_hist *h = bpf_map_lookup_elem(&latency, &i);
	if (h)
		lat_count(h, ns);
}

static __always_inline int wanted(__u32 vec)
{
	return vec < NR_VEC && (softirq_mask & (1U << vec));
}

static __always_inline int on_raise(__u32 vec)
{
	if (!wanted(vec))
		return 0;
	__u64 *ts = bpf_map_lookup_elem(&raised, &vec);
	/* The first raise counts: later ones join the same pending run. */
	if (ts && *ts == 0) {
		*ts = bpf_ktime_get_ns();
		stat_inc(ST_STARTED);
	}
	return 0;
}

static __always_inline void slow_event(__u32 kind, __u32 vec, __u64 ns)
{
	struct event *e = lat_event(kind, 0, ns);
	if (!e)
		return;
	e->detail = vec;
	event_task(e);
	submit_event(e);
}

static __always_inline int on_entry(__u32 vec)
{
	if (!wanted(vec))
		return 0;
	__u64 now = bpf_ktime_get_ns();
	__u64 *ts = bpf_map_lookup_elem(&raised, &vec);
	if (ts && *ts) {
		__u64 ns = now - *ts;
		*ts = 0;
		stat_inc(ST_COMPLETED);
		record(STAGE_SCHED, vec, ns);
		slow_event(EV_SOFTIRQ_SCHED, vec, ns);
	}
	__u64 *start = bpf_map_lookup_elem(&entered, &vec);
	if (start)
		*start = now;
	return 0;
}

static __always_inline int on_exit(__u32 vec)
{
	if (!wanted(vec))
		return 0;
	__u64 *start = bpf_map_lookup_elem(&entered, &vec);
	if (!start || !*start)
		return 0;
	__u64 ns = bpf_ktime_get_ns() - *start;
	*start = 0;
	record(STAGE_EXEC, vec, ns);
	slow_event(EV_SOFTIRQ_EXEC, vec, ns);
	return 0;
}

SEC("tp_btf/softirq_raise")
int BPF_PROG(softirq_raise_btf, unsigned int vec)
{
	return on_raise(vec);
}

SEC("tp_btf/softirq_entry")
int BPF_PROG(softirq_entry_btf, unsigned int vec)
{
	return on_entry(vec);
}

SEC("tp_btf/softirq_exit")
int BPF_PROG(softirq_exit_btf, unsigned int vec)
{
	return on_exit(vec);
}

SEC("tracepoint/irq/softirq_raise")
int softirq_raise_tp(struct trace_event_raw_softirq *args)
{
	return on_raise(args->vec);
}

SEC("tracepoint/irq/softirq_entry")
int softirq_entry_tp(struct trace_event_raw_softirq *args)
{
	return on_entry(args->vec);
}

SEC("tracepoint/irq/softirq_exit")
int softirq_exit_tp(struct trace_event_raw_softirq *args)
{
	return on_exit(args->vec);
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
