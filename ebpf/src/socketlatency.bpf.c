// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* socketlatency: per namespace, for TCP sockets,
 *  - read delay: the oldest unread data arrived on the socket (sk_data_ready) -> the
 *    application reads (recvmsg returns data);
 *  - write delay: the application queued data (tcp_sendmsg_locked) -> the stack hands the
 *    socket's next packet to a device (net_dev_queue with skb->sk).
 * State per socket in an LRU keyed by the socket, deleted when the socket is destroyed;
 * sockets that vanish otherwise are reclaimed by the LRU (counted). */
#include "latency.h"

enum { STAGE_READ = 0, STAGE_WRITE = 1 };
#define IPPROTO_TCP_ 6
#define MSG_PEEK_ 2

struct sock_times {
	__u64 unread_since;
	__u64 unsent_since;
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64);
	__type(value, struct sock_times);
} socks SEC(".maps");

static __always_inline int is_tcp(int btf, const struct sock *sk)
{
	__u16 family = KREAD(btf, sk, __sk_common.skc_family);
	if (family != AF_INET && family != AF_INET6)
		return 0;
	return KREAD(btf, sk, sk_protocol) == IPPROTO_TCP_;
}

static __always_inline struct sock_times *times_of(const struct sock *sk, int create)
{
	__u64 key = (__u64)sk;
	struct sock_times *t = bpf_map_lookup_elem(&socks, &key);
	if (t || !create)
		return t;
	struct sock_times fresh = {};
	if (bpf_map_update_elem(&socks, &key, &fresh, BPF_NOEXIST))
		return bpf_map_lookup_elem(&socks, &key);
	stat_inc(ST_STARTED);
	return bpf_map_lookup_elem(&socks, &key);
}

static __always_inline void slow(__u32 kind, const struct sock *sk, __u32 netns, __u64 ns, int task)
{
	struct event *e = lat_event(kind, netns, ns);
	if (!e)
		return;
	tuple_from_sk(sk, e);
	e->l4proto = IPPROTO_TCP_;
	if (task)
		event_task(e);
	submit_event(e);
}

static __always_inline int on_data_ready(int btf, const struct sock *sk)
{
	if (!sk || !is_tcp(btf, sk))
		return 0;
	struct sock_times *t = times_of(sk, 1);
	if (t && !t->unread_since)
		t->unread_since = bpf_ktime_get_ns();
	return 0;
}

static __always_inline int on_read(int btf, const struct sock *sk, int copied, int flags)
{
	if (!sk || copied <= 0 || (flags & MSG_PEEK_))
		return 0;
	struct sock_times *t = times_of(sk, 0);
	if (!t || !t->unread_since)
		return 0;
	__u64 ns = bpf_ktime_get_ns() - t->unread_since;
	t->unread_since = 0;
	__u32 netns = sock_netns(btf, sk);
	lat_record(netns, STAGE_READ, 0, ns, 0);
	slow(EV_SOCK_READ, sk, netns, ns, 1);
	return 0;
}

static __always_inline int on_send(const struct sock *sk)
{
	if (!sk)
		return 0;
	struct sock_times *t = times_of(sk, 1);
	if (t && !t->unsent_since)
		t->unsent_since = bpf_ktime_get_ns();
	return 0;
}

static __always_inline int on_transmit(int btf, const struct sock *sk)
{
	/* Only TCP sockets are in the table: a protocol check is cheaper than a lookup. */
	if (!sk || KREAD(btf, sk, sk_protocol) != IPPROTO_TCP_)
		return 0;
	struct sock_times *t = times_of(sk, 0);
	if (!t || !t->unsent_since)
		return 0;
	__u64 ns = bpf_ktime_get_ns() - t->unsent_since;
	t->unsent_since = 0;
	__u32 netns = sock_netns(btf, sk);
	lat_record(netns, STAGE_WRITE, 0, ns, 0);
	slow(EV_SOCK_WRITE, sk, netns, ns, 0);
	return 0;
}

static __always_inline int on_destroy(const struct sock *sk)
{
	__u64 key = (__u64)sk;
	if (!bpf_map_delete_elem(&socks, &key))
		stat_inc(ST_COMPLETED);
	return 0;
}

SEC("tp_btf/sk_data_ready")
int BPF_PROG(socketlatency_ready_btf, const struct sock *sk)
{
	return on_data_ready(1, sk);
}

SEC("tp_btf/sock_recv_length")
int BPF_PROG(socketlatency_read_btf, struct sock *sk, int ret, int flags)
{
	return on_read(1, sk, ret, flags);
}

SEC("tp_btf/tcp_sendmsg_locked")
int BPF_PROG(socketlatency_send_btf, const struct sock *sk)
{
	return on_send(sk);
}

SEC("tp_btf/net_dev_queue")
int BPF_PROG(socketlatency_xmit_btf, struct sk_buff *skb)
{
	return on_transmit(1, skb->sk);
}

SEC("tp_btf/tcp_destroy_sock")
int BPF_PROG(socketlatency_destroy_btf, struct sock *sk)
{
	return on_destroy(sk);
}

/* KubeSkoop's functions, for kernels without the tracepoints (before 6.5). */
SEC("kprobe/sock_def_readable")
int BPF_KPROBE(socketlatency_ready_kprobe, struct sock *sk)
{
	return on_data_ready(0, sk);
}

SEC("kprobe/tcp_cleanup_rbuf")
int BPF_KPROBE(socketlatency_read_kprobe, struct sock *sk, int copied)
{
	return on_read(0, sk, copied, 0);
}

SEC("kprobe/tcp_sendmsg_locked")
int BPF_KPROBE(socketlatency_send_kprobe, struct sock *sk)
{
	return on_send(sk);
}

SEC("kprobe/tcp_write_xmit")
int BPF_KPROBE(socketlatency_xmit_kprobe, struct sock *sk)
{
	return on_transmit(0, sk);
}

SEC("kprobe/tcp_v4_destroy_sock")
int BPF_KPROBE(socketlatency_destroy_kprobe, struct sock *sk)
{
	return on_destroy(sk);
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
