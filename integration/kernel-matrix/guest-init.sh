#!/bin/sh
# The guest's /init (busybox sh): sets up a test pod, then for each /cfg/*.yaml (one round
# of hook settings, written by integration/tests/kernel_matrix.rs) runs `podnet run`, plants
# the events every probe must see, and writes what the agent reported to the second serial
# port for the host to check. The kernel's own console is the first serial port.
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
exec </dev/console >/dev/console 2>&1
mount -t bpf bpf /sys/fs/bpf
mount -t tracefs tracefs /sys/kernel/tracing
mount -t tmpfs tmpfs /tmp
mkdir -p /run/netns
stty -F /dev/ttyS1 raw -echo
exec 3>/dev/ttyS1

say() { echo "$*"; echo "$*" >&3; }
# A named block of the results: the host splits on these lines.
block() { echo "@@@ begin $1" >&3; cat "$2" >&3 2>/dev/null; echo >&3; echo "@@@ end $1" >&3; }

say "@@@ kernel $(uname -r)"
ip link set lo up
M=/lib/modules/$(uname -r)
while read -r m; do
    [ -n "$m" ] || continue
    insmod "$M/$m" || say "@@@ error insmod $m failed"
done </modules.list

# The test pod: a process in its own network namespace behind a veth (10.2.0.1 here,
# 10.2.0.2 there), serving TCP on 8080 and dropping TCP to port 7 with nftables.
unshare -n sh -c 'while :; do sleep 1; done' &
POD=$!
sleep 1
ip link add v0 type veth peer name v1
# busybox names the peer veth0 whatever was asked: rename it.
PEER=$(ip -o link | sed -n 's/^[0-9]*: \([^:@]*\)@v0.*/\1/p')
[ -n "$PEER" ] && [ "$PEER" != v1 ] && ip link set "$PEER" name v1
ip link set v1 netns $POD
ip addr add 10.2.0.1/24 dev v0
ip link set v0 up
nsenter -t $POD -n sh -c 'ip link set lo up; ip addr add 10.2.0.2/24 dev v1; ip link set v1 up'
nsenter -t $POD -n nft add table inet km
nsenter -t $POD -n nft add chain inet km in '{ type filter hook input priority 0; }'
nsenter -t $POD -n nft add rule inet km in tcp dport 7 drop
nsenter -t $POD -n nc -ll -p 8080 -e cat </dev/null >/dev/null 2>&1 &
ip link set eth0 up 2>/dev/null
say "@@@ host-netns $(readlink /proc/1/ns/net | tr -dc 0-9)"
say "@@@ pod-netns $(readlink /proc/$POD/ns/net | tr -dc 0-9)"
sleep 2

rounds=0
for cfg in /cfg/*.yaml; do
    round=$(basename "$cfg" .yaml)
    want=$(sed -n 's/^# probes: //p' "$cfg")
    say "@@@ round $round start $(cut -d' ' -f1 /proc/uptime)"
    PODNET_NODE_NAME=km podnet run -c "$cfg" >/tmp/log-$round 2>&1 &
    AGENT=$!
    # Until every probe reported up or unsupported (podnet_probe_up per probe), 120 s at most.
    i=0
    while [ $i -lt 240 ]; do
        up=$(wget -q -O - http://127.0.0.1:9102/metrics 2>/dev/null | grep -c '^podnet_probe_up{')
        [ "$up" -ge "$want" ] && break
        sleep 0.5; i=$((i+1))
    done
    say "@@@ round $round probes $up/$want $(cut -d' ' -f1 /proc/uptime)"

    # Planted events (the host test knows these numbers):
    # 3 connects to the pod's closed port 9: the pod drops 3 SYNs (NO_SOCKET) and sends 3
    # resets (NOSOCK); this namespace receives 3.
    for n in 1 2 3; do nc -w 2 10.2.0.2 9 </dev/null >/dev/null 2>&1; done
    # 2 connects to port 7, which the pod's nft rule drops: within nc's 2 s each SYN is sent
    # and retransmitted once (the first RTO is 1 s): 4 drops there, 2 retransmits here.
    nc -w 2 10.2.0.2 7 </dev/null >/dev/null 2>&1 &
    second=$!
    nc -w 2 10.2.0.2 7 </dev/null >/dev/null 2>&1
    wait $second 2>/dev/null
    # 10 pings of 100 bytes: 10 ICMP packets each way.
    ping -c 10 -i 0.2 -s 100 10.2.0.2 >/dev/null 2>&1
    # TCP with data, read in the pod (socket and kernel latency, device transmit).
    for n in 1 2 3; do echo "hello $n" | nc -w 1 10.2.0.2 8080 >/dev/null 2>&1; done
    # Block IO from the pod: direct reads of the virtio disk.
    nsenter -t $POD -n dd if=/dev/vda of=/dev/null bs=4096 count=32 iflag=direct 2>/dev/null
    # virtio-net control commands: receive mode and address changes.
    ip link set eth0 promisc on 2>/dev/null; ip link set eth0 promisc off 2>/dev/null
    rounds=$((rounds+1))
    ip link set eth0 address 52:54:00:12:34:$((10 + rounds)) 2>/dev/null
    # Two collections (1 s) for the counts to reach the exporter.
    sleep 3

    wget -q -O /tmp/metrics http://127.0.0.1:9102/metrics
    wget -q -O /tmp/status http://127.0.0.1:13133/status
    kill -INT $AGENT
    i=0; while kill -0 $AGENT 2>/dev/null && [ $i -lt 20 ]; do sleep 0.5; i=$((i+1)); done
    kill -9 $AGENT 2>/dev/null; wait $AGENT 2>/dev/null
    block "$round metrics" /tmp/metrics
    block "$round status" /tmp/status
    block "$round events" /tmp/events-$round.jsonl
    block "$round log" /tmp/log-$round
    say "@@@ round $round end $(cut -d' ' -f1 /proc/uptime)"
done
say "@@@ done"
poweroff -f
