// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* socktable: every TCP socket a process holds, in every network namespace, in one pass over
 * the tasks' open files. A sock_diag dump walks the whole (global) TCP hash once per
 * namespace; this walks each open file once per node. Read by the `netlink` receiver's
 * tcpsummary probe (receivers/netlink/src/socktable.rs).
 *
 * Sockets without a file (TIME_WAIT, pending requests, orphans, children not yet accepted)
 * are not seen here: the receiver counts them from each namespace's sockstat and the
 * listeners' queues reported below, and dumps that namespace with sock_diag when those do
 * not add up. A socket held by several fds or processes is seen once per fd: the receiver
 * keeps the first row per inode. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>

#define AF_INET 2
#define AF_INET6 10
#define IPPROTO_TCP 6
#define SOCK_STREAM 1
#define TCP_CLOSE 7
#define TCP_LISTEN 10

/* One row per socket file (mirrored in receivers/netlink/src/socktable.rs). The queue
 * fields are what sock_diag reports in idiag_rqueue/idiag_wqueue. */
struct sock_row {
	__u64 inode;        /* the socket's inode, as sock_diag's idiag_inode */
	__u64 memory_bytes; /* sk_rmem_alloc + sk_wmem_queued + sk_forward_alloc (SKMEMINFO) */
	__u32 netns;        /* network namespace inode */
	__u32 recv_queue;   /* listening: accept queue; else rcv_nxt - copied_seq */
	__u32 send_queue;   /* listening: backlog limit; else write_seq - snd_una */
	__u32 requests;     /* listening: pending connection requests (SYN_RECV) */
	__u8 state;
	__u8 family;
	__u8 pad[6];
};

SEC("iter/task_file")
int socktable(struct bpf_iter__task_file *ctx)
{
	struct seq_file *seq = ctx->meta->seq;
	struct file *file = ctx->file;
	struct sock_row row = {};

	if (!file)
		return 0;
	struct socket *sock = bpf_sock_from_file(file);
	if (!sock)
		return 0;
	struct sock *sk = BPF_CORE_READ(sock, sk);
	if (!sk)
		return 0;
	row.family = BPF_CORE_READ(sk, __sk_common.skc_family);
	if (row.family != AF_INET && row.family != AF_INET6)
		return 0;
	if (BPF_CORE_READ(sk, sk_protocol) != IPPROTO_TCP || BPF_CORE_READ(sk, sk_type) != SOCK_STREAM)
		return 0;
	row.state = BPF_CORE_READ(sk, __sk_common.skc_state);
	/* Not hashed: sock_diag does not list it and sockstat does not count it. */
	if (row.state == TCP_CLOSE)
		return 0;
	row.inode = BPF_CORE_READ(file, f_inode, i_ino);
	row.netns = BPF_CORE_READ(sk, __sk_common.skc_net.net, ns.inum);
	if (row.state == TCP_LISTEN) {
		struct inet_connection_sock *icsk = (struct inet_connection_sock *)sk;
		row.recv_queue = BPF_CORE_READ(sk, sk_ack_backlog);
		row.send_queue = BPF_CORE_READ(sk, sk_max_ack_backlog);
		row.requests = BPF_CORE_READ(icsk, icsk_accept_queue.qlen.counter);
	} else {
		struct tcp_sock *tp = (struct tcp_sock *)sk;
		__s32 unread = BPF_CORE_READ(tp, rcv_nxt) - BPF_CORE_READ(tp, copied_seq);
		row.recv_queue = unread > 0 ? unread : 0;
		row.send_queue = BPF_CORE_READ(tp, write_seq) - BPF_CORE_READ(tp, snd_una);
	}
	row.memory_bytes = (__u64)(__u32)BPF_CORE_READ(sk, sk_backlog.rmem_alloc.counter) +
			   (__u64)(__u32)BPF_CORE_READ(sk, sk_wmem_queued) +
			   (__u64)(__u32)BPF_CORE_READ(sk, sk_forward_alloc);
	bpf_seq_write(seq, &row, sizeof(row));
	return 0;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
