// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* kernellatency: per namespace, the time a TCP packet spends in the kernel
 *  - RX: the device hands it to the stack (netif_receive_skb) -> TCP takes it for an
 *    established socket (tcp_probe), keyed by the skb;
 *  - TX: TCP's transmit clock for the segment (skb->tstamp: TCP sets it to its monotonic
 *    departure time, EDT) -> the device queue (net_dev_queue). No state at all.
 * RX start times of packets TCP never takes (dropped, not for a socket) are reclaimed by
 * the LRU, counted as started - completed - present. */
#include "latency.h"

enum { STAGE_RX = 0, STAGE_TX = 1 };
#define IPPROTO_TCP_ 6

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64);
	__type(value, __u64);
} rx_start SEC(".maps");

/* Only TCP over IP: read the protocol byte where skb->data points (the IP header, once
 * the driver pulled the link header). */
static __always_inline int rx_is_tcp(int btf, const struct sk_buff *skb)
{
	__u16 proto = bpf_ntohs(KREAD(btf, skb, protocol));
	unsigned char *data = KREAD(btf, skb, data);
	__u8 l4 = 0;
	if (proto == ETH_P_IP)
		bpf_probe_read_kernel(&l4, 1, data + 9);
	else if (proto == ETH_P_IPV6)
		bpf_probe_read_kernel(&l4, 1, data + 6);
	return l4 == IPPROTO_TCP_;
}

static __always_inline int on_receive(int btf, const struct sk_buff *skb)
{
	if (!skb || !rx_is_tcp(btf, skb))
		return 0;
	__u64 key = (__u64)skb, now = bpf_ktime_get_ns();
	if (!bpf_map_update_elem(&rx_start, &key, &now, BPF_ANY))
		stat_inc(ST_STARTED);
	return 0;
}

static __always_inline void slow(__u32 kind, const struct sk_buff *skb, __u32 netns, __u64 ns)
{
	struct event *e = lat_event(kind, netns, ns);
	if (!e)
		return;
	e->protocol = tuple_from_skb(skb, e);
	submit_event(e);
}

static __always_inline int on_tcp_rcv(int btf, const struct sock *sk, const struct sk_buff *skb)
{
	__u64 key = (__u64)skb;
	__u64 *ts = bpf_map_lookup_elem(&rx_start, &key);
	if (!ts)
		return 0;
	__u64 ns = bpf_ktime_get_ns() - *ts;
	bpf_map_delete_elem(&rx_start, &key);
	stat_inc(ST_COMPLETED);
	__u32 netns = sk ? sock_netns(btf, sk) : skb_netns(skb);
	lat_record(netns, STAGE_RX, 0, ns, 0);
	slow(EV_RX_KERNEL, skb, netns, ns);
	return 0;
}

static __always_inline int on_dev_queue(int btf, const struct sk_buff *skb)
{
	struct sock *sk = KREAD(btf, skb, sk);
	if (!sk)
		return 0;
	/* Full TCP sockets only: request and time-wait sockets keep no transmit clock. */
	__u8 state = KREAD(btf, sk, __sk_common.skc_state);
	if (state == 6 /* TIME_WAIT */ || state == 12 /* NEW_SYN_RECV */)
		return 0;
	__u16 family = KREAD(btf, sk, __sk_common.skc_family);
	if ((family != AF_INET && family != AF_INET6) || KREAD(btf, sk, sk_protocol) != IPPROTO_TCP_)
		return 0;
	__u64 sent = KREAD(btf, skb, tstamp);
	__u64 now = bpf_ktime_get_ns();
	if (!sent)
		return 0;
	/* A paced segment queued before its departure time spent no time in the stack. */
	__u64 ns = sent < now ? now - sent : 0;
	struct net_device *dev = KREAD(btf, skb, dev);
	__u32 netns = dev ? dev_netns(btf, dev) : sock_netns(btf, sk);
	lat_record(netns, STAGE_TX, 0, ns, 0);
	slow(EV_TX_KERNEL, skb, netns, ns);
	return 0;
}

SEC("tp_btf/netif_receive_skb")
int BPF_PROG(kernellatency_rx_btf, struct sk_buff *skb)
{
	return on_receive(1, skb);
}

SEC("tp_btf/tcp_probe")
int BPF_PROG(kernellatency_tcp_btf, struct sock *sk, const struct sk_buff *skb)
{
	return on_tcp_rcv(1, sk, skb);
}

SEC("tp_btf/net_dev_queue")
int BPF_PROG(kernellatency_tx_btf, struct sk_buff *skb)
{
	return on_dev_queue(1, skb);
}

SEC("tracepoint/net/netif_receive_skb")
int kernellatency_rx_tp(struct trace_event_raw_net_dev_template *args)
{
	return on_receive(0, BPF_CORE_READ(args, skbaddr));
}

SEC("tracepoint/tcp/tcp_probe")
int kernellatency_tcp_tp(struct trace_event_raw_tcp_probe *args)
{
	return on_tcp_rcv(0, BPF_CORE_READ(args, skaddr), BPF_CORE_READ(args, skbaddr));
}

SEC("tracepoint/net/net_dev_queue")
int kernellatency_tx_tp(struct trace_event_raw_net_dev_template *args)
{
	return on_dev_queue(0, BPF_CORE_READ(args, skbaddr));
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
