// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* biolatency: block IO time per disk and direction, attributed to the namespace of the
 * task that started the IO (a pod's process writing to its volume), node level for the
 * kernel's own writeback. Start -> done of the request, keyed by (device, sector); a
 * request merged into another never completes under its own key and is reclaimed by the
 * LRU (counted). */
#include "latency.h"

enum { STAGE_READ = 0, STAGE_WRITE = 1, STAGE_OTHER = 2 };

struct bio_key {
	__u32 dev;
	__u32 pad;
	__u64 sector;
};

struct bio_start {
	__u64 ts;
	__u32 netns;
	__u32 pid;
	char comm[16];
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, struct bio_key);
	__type(value, struct bio_start);
} started SEC(".maps");

static __always_inline __u32 task_netns(int btf)
{
	if (btf) {
		struct task_struct *t = bpf_get_current_task_btf();
		return t->nsproxy->net_ns->ns.inum;
	}
	struct task_struct *t = (void *)bpf_get_current_task();
	return BPF_CORE_READ(t, nsproxy, net_ns, ns.inum);
}

static __always_inline int on_start(int btf, __u32 dev, __u64 sector)
{
	struct bio_key k = { .dev = dev, .sector = sector };
	struct bio_start s = { .ts = bpf_ktime_get_ns(), .netns = task_netns(btf), .pid = bpf_get_current_pid_tgid() >> 32 };
	bpf_get_current_comm(s.comm, sizeof(s.comm));
	if (!bpf_map_update_elem(&started, &k, &s, BPF_ANY))
		stat_inc(ST_STARTED);
	return 0;
}

/* 'R'ead or 'W'rite from the block tracepoints' rwbs text ("WS", "RA", "FWS", ...). */
static __always_inline __u32 stage_of_rwbs(const char *rwbs)
{
	char c[4] = {};
	bpf_probe_read_kernel(c, sizeof(c), rwbs);
	for (int i = 0; i < 4; i++) {
		if (c[i] == 'W')
			return STAGE_WRITE;
		if (c[i] == 'R')
			return STAGE_READ;
	}
	return STAGE_OTHER;
}

static __always_inline int on_done(__u32 dev, __u64 sector, __u32 stage)
{
	struct bio_key k = { .dev = dev, .sector = sector };
	struct bio_start *s = bpf_map_lookup_elem(&started, &k);
	if (!s)
		return 0;
	__u64 ns = bpf_ktime_get_ns() - s->ts;
	__u32 netns = s->netns;
	stat_inc(ST_COMPLETED);
	lat_record(netns, stage, dev, ns, 0);
	struct event *e = lat_event(EV_BIO, netns, ns);
	if (e) {
		e->detail = dev;
		e->pid = s->pid;
		__builtin_memcpy(e->name, s->comm, sizeof(e->name));
		submit_event(e);
	}
	bpf_map_delete_elem(&started, &k);
	return 0;
}

/* The request's disk as a dev_t, and its direction: plain loads through a BTF pointer
 * (tp_btf), CO-RE probe reads through a bare address (kprobes). */
static __always_inline __u32 rq_dev(int btf, const struct request *rq)
{
	struct request_queue *q = KREAD(btf, rq, q);
	struct gendisk *disk = q ? KREAD(btf, q, disk) : 0;
	if (!disk)
		return 0;
	return ((__u32)KREAD(btf, disk, major) << 20) | (__u32)KREAD(btf, disk, first_minor);
}

static __always_inline __u32 rq_stage(int btf, const struct request *rq)
{
	__u32 op = KREAD(btf, rq, cmd_flags) & 0xff;
	return op == 0 ? STAGE_READ : op == 1 ? STAGE_WRITE : STAGE_OTHER;
}

SEC("tp_btf/block_io_start")
int BPF_PROG(biolatency_start_btf, struct request *rq)
{
	return on_start(1, rq_dev(1, rq), rq->__sector);
}

SEC("tp_btf/block_io_done")
int BPF_PROG(biolatency_done_btf, struct request *rq)
{
	return on_done(rq_dev(1, rq), rq->__sector, rq_stage(1, rq));
}

SEC("tracepoint/block/block_io_start")
int biolatency_start_tp(struct trace_event_raw_block_rq *args)
{
	return on_start(0, BPF_CORE_READ(args, dev), BPF_CORE_READ(args, sector));
}

SEC("tracepoint/block/block_io_done")
int biolatency_done_tp(struct trace_event_raw_block_rq *args)
{
	return on_done(BPF_CORE_READ(args, dev), BPF_CORE_READ(args, sector), stage_of_rwbs(args->rwbs));
}

/* Kernels before 6.5 have no block_io_*: the bio as the task submits it -> its request
 * completes (a bio merged behind another completes under the first one's sector). */
SEC("tracepoint/block/block_bio_queue")
int biolatency_queue_tp(struct trace_event_raw_block_bio *args)
{
	return on_start(0, BPF_CORE_READ(args, dev), BPF_CORE_READ(args, sector));
}

SEC("tracepoint/block/block_rq_complete")
int biolatency_complete_tp(struct trace_event_raw_block_rq_completion *args)
{
	return on_done(BPF_CORE_READ(args, dev), BPF_CORE_READ(args, sector), stage_of_rwbs(args->rwbs));
}

/* KubeSkoop's functions, where the kernel lets kprobes attach. */
SEC("kprobe/blk_account_io_start")
int BPF_KPROBE(biolatency_start_kprobe, struct request *rq)
{
	return on_start(0, rq_dev(0, rq), BPF_CORE_READ(rq, __sector));
}

SEC("kprobe/blk_account_io_done")
int BPF_KPROBE(biolatency_done_kprobe, struct request *rq)
{
	return on_done(rq_dev(0, rq), BPF_CORE_READ(rq, __sector), rq_stage(0, rq));
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
