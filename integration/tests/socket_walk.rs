//! tcpsummary's one-pass socket walk (a BPF iterator over the node's socket files, plus each
//! namespace's sockstat) against a sock_diag dump of the same namespaces: the same summary,
//! value for value, where the walk accounts for every socket; a namespace with sockets no
//! process holds (orphans, children not yet accepted) is left to sock_diag.

use std::io::Write;
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::unix::fs::MetadataExt;
use std::time::{Duration, Instant};

use podnet_integration::pods::{Pods, in_netns};
use podnet_integration::root_or_skip;
use podnet_receiver_netlink::socktable::{NamespaceSockets, SockStat, SockTable};
use podnet_receiver_netlink::tcpsummary::{self, TcpSummary};
use podnet_receiver_netlink::{Probe, ReadContext, Reading, read_namespace};

fn inode(ns: &str) -> u32 {
    u32::try_from(std::fs::metadata(format!("/run/netns/{ns}")).unwrap().ino()).unwrap()
}

/// (walk's summary if it accounts for every socket, sock_diag's summary), read back to back
/// inside namespace `ns`.
fn both(table: &mut SockTable, ns: &str) -> (Option<TcpSummary>, TcpSummary) {
    let walked = table.read().unwrap();
    let found = walked.get(&inode(ns)).cloned().unwrap_or_default();
    in_netns(ns, || {
        let by_walk = found.summary(&SockStat::read_current().unwrap());
        let by_diag = tcpsummary::summarize(&tcpsummary::collect(Duration::from_secs(2)).unwrap());
        (by_walk, by_diag)
    })
}

/// Fills `client`'s send buffer towards a peer that does not read.
fn fill(client: &TcpStream) {
    client.set_nonblocking(true).unwrap();
    let chunk = vec![7u8; 64 * 1024];
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut c = client;
    while c.write(&chunk).is_ok() {
        assert!(Instant::now() < deadline, "the send buffer never filled");
    }
}

#[test]
fn the_walk_gives_sock_diag_s_summary_for_every_namespace_it_accounts_for() {
    if !root_or_skip("test pods (network namespaces) and BPF iterators need root (CI runs as root)") {
        return;
    }
    let mut table = SockTable::load().expect("the socktable iterator loads on this kernel (BTF, iter/task_file)");
    let pods = Pods::create("sw");
    let (a, b) = (pods.a.as_str(), pods.b.as_str());

    // B serves on IPv4 and on IPv6 loopback; A connects. Every socket has a file.
    let listener = in_netns(b, || TcpListener::bind("10.213.0.2:7400").unwrap());
    let listener6 = in_netns(b, || TcpListener::bind("[::1]:7401").unwrap());
    let mut clients = Vec::new();
    let mut served = Vec::new();
    for _ in 0..4 {
        clients.push(in_netns(a, || TcpStream::connect("10.213.0.2:7400").unwrap()));
        served.push(listener.accept().unwrap().0);
    }
    let client6 = in_netns(b, || TcpStream::connect("[::1]:7401").unwrap());
    let served6 = listener6.accept().unwrap().0;
    // Unread bytes on B's side; a full send queue on A's; a half-closed connection
    // (CLOSE_WAIT at B, FIN_WAIT2 at A, both still held).
    (&clients[0]).write_all(&[1; 1000]).unwrap();
    fill(&clients[1]);
    clients[2].shutdown(Shutdown::Write).unwrap();
    // Two connections that A closes first and B then closes: TIME_WAIT at A, no file.
    for _ in 0..2 {
        let c = in_netns(a, || TcpStream::connect("10.213.0.2:7400").unwrap());
        let s = listener.accept().unwrap().0;
        drop(c);
        std::thread::sleep(Duration::from_millis(50));
        drop(s);
    }
    std::thread::sleep(Duration::from_millis(300));

    let [at_a, at_b] = [a, b].map(|ns| {
        let (by_walk, by_diag) = both(&mut table, ns);
        let by_walk = by_walk.unwrap_or_else(|| panic!("{ns}: the walk did not account for every socket: {by_diag:?}"));
        assert_eq!(by_walk, by_diag, "{ns}");
        by_diag
    });
    // What the namespaces hold, so that the equality above is not between two empty answers.
    assert_eq!(at_a.by_state.get("established"), Some(&3), "{at_a:?}");
    assert_eq!(at_a.by_state.get("fin_wait_2"), Some(&1), "{at_a:?}");
    assert_eq!(at_a.by_state.get("time_wait"), Some(&2), "{at_a:?}");
    assert!(at_a.tx_queue_bytes > 0, "{at_a:?}");
    assert_eq!(at_b.by_state.get("listen"), Some(&2), "{at_b:?}");
    assert_eq!(at_b.by_state.get("established"), Some(&5), "{at_b:?}");
    assert_eq!(at_b.by_state.get("close_wait"), Some(&1), "{at_b:?}");
    assert!(at_b.rx_queue_bytes >= 1000, "{at_b:?}");

    // Sockets no process holds: A's orphans (closed with unsent data) and B's connection
    // waiting in the accept queue. The walk cannot see them and says so; the probe then
    // dumps those namespaces, and still answers what sock_diag answers.
    let orphan = in_netns(a, || TcpStream::connect("10.213.0.2:7400").unwrap());
    served.push(listener.accept().unwrap().0);
    fill(&orphan);
    drop(orphan);
    let waiting = in_netns(a, || TcpStream::connect("10.213.0.2:7400").unwrap());
    std::thread::sleep(Duration::from_millis(300));
    let tcp = [Probe::named("tcpsummary").unwrap()];
    for ns in [a, b] {
        let (by_walk, by_diag) = both(&mut table, ns);
        assert_eq!(by_walk, None, "{ns}: the walk claimed to account for a socket it cannot see");
        let walked = table.read().unwrap();
        let found: NamespaceSockets = walked.get(&inode(ns)).cloned().unwrap_or_default();
        let read = in_netns(ns, || read_namespace(&tcp, &ReadContext { timeout: Duration::from_secs(2), sockets: Some(&found) }));
        let Ok(Reading::Tcp(summary)) = &read[0].1 else { panic!("{ns}: {read:?}") };
        assert_eq!(summary, &by_diag, "{ns}");
    }
    drop((clients, served, client6, served6, waiting, listener, listener6));
}
