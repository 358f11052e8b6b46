// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* virtcmdlatency: how long the virtio-net driver waits for the device to answer a control
 * command (virtnet_send_command_reply since 6.10, virtnet_send_command before), node
 * level. No tracepoint exists: kprobe + kretprobe, start time per thread. */
#include "latency.h"

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 1024);
	__type(key, __u32);
	__type(value, __u64);
} inflight SEC(".maps");

static __always_inline int on_call(void)
{
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	__u64 now = bpf_ktime_get_ns();
	if (!bpf_map_update_elem(&inflight, &tid, &now, BPF_ANY))
		stat_inc(ST_STARTED);
	return 0;
}

static __always_inline int on_return(void)
{
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	__u64 *ts = bpf_map_lookup_elem(&inflight, &tid);
	if (!ts)
		return 0;
	__u64 ns = bpf_ktime_get_ns() - *ts;
	bpf_map_delete_elem(&inflight, &tid);
	stat_inc(ST_COMPLETED);
	lat_record(0, 0, 0, ns, 0);
	struct event *e = lat_event(EV_VIRTCMD, 0, ns);
	if (e) {
		event_task(e);
		submit_event(e);
	}
	return 0;
}

SEC("kprobe/virtnet_send_command_reply")
int BPF_KPROBE(virtcmd_reply_kprobe)
{
	return on_call();
}

SEC("kretprobe/virtnet_send_command_reply")
int BPF_KRETPROBE(virtcmd_reply_kretprobe)
{
	return on_return();
}

SEC("kprobe/virtnet_send_command")
int BPF_KPROBE(virtcmd_kprobe)
{
	return on_call();
}

SEC("kretprobe/virtnet_send_command")
int BPF_KRETPROBE(virtcmd_kretprobe)
{
	return on_return();
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
