//! The proxies at work: real sockets through a [`Network`] in front of echo servers.

use std::net::{SocketAddr, TcpListener as StdListener};
use std::thread;
use std::time::Duration;

use super::network::Network;
use super::rules::{Delay, Link};
use super::shared::Side;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream as StdStream};
use std::sync::mpsc as std_mpsc;

/// Long enough to be sure a held byte is not on its way; nothing depends on it being short.
const QUIET: Duration = Duration::from_millis(300);
const LONG: Duration = Duration::from_secs(10);

/// An echo server on 127.0.0.1:0 that also reports every chunk it receives.
fn echo_server() -> (SocketAddr, std_mpsc::Receiver<Vec<u8>>) {
    let listener = StdListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = std_mpsc::channel();
    thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { return };
            let tx = tx.clone();
            thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while let Ok(n) = conn.read(&mut buf) {
                    if n == 0 || conn.write_all(&buf[..n]).is_err() {
                        return;
                    }
                    let _ = tx.send(buf[..n].to_vec());
                }
            });
        }
    });
    (addr, rx)
}

/// A network with one proxy in front of an echo server playing member `member`.
fn proxied_echo(side: Side, member: usize) -> (Network, SocketAddr, std_mpsc::Receiver<Vec<u8>>) {
    let (upstream, received) = echo_server();
    let network = Network::start(7).unwrap();
    let listener = StdListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    network.add_proxy(member, side, listener, upstream).unwrap();
    (network, addr, received)
}

fn connect(addr: SocketAddr) -> StdStream {
    let stream = StdStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(LONG)).unwrap();
    stream
}

fn read_exactly(stream: &mut StdStream, len: usize) -> Vec<u8> {
    let mut buf = vec![0u8; len];
    stream.read_exact(&mut buf).unwrap();
    buf
}

/// Whether `len` bytes arrive on `stream` within [`QUIET`] (they are then consumed).
fn arrives(stream: &mut StdStream, len: usize) -> bool {
    stream.set_read_timeout(Some(QUIET)).unwrap();
    let mut buf = vec![0u8; len];
    let got = stream.read_exact(&mut buf).is_ok();
    stream.set_read_timeout(Some(LONG)).unwrap();
    got
}

fn head(from: &str, to: &str) -> Vec<u8> {
    format!(
        "POST /raft/stream HTTP/1.1\r\nHost: x\r\nX-Server-From: {from}\r\nX-Raft-To: {to}\r\n\r\n"
    )
    .into_bytes()
}

#[test]
fn forwards_both_ways_and_passes_the_end_on() {
    let (_network, addr, _) = proxied_echo(Side::Client, 0);
    let mut stream = connect(addr);
    stream.write_all(b"hello").unwrap();
    assert_eq!(read_exactly(&mut stream, 5), b"hello");
    let big: Vec<u8> = (0..200_000u32).map(|i| i as u8).collect();
    let mut writer = stream.try_clone().unwrap();
    let sent = big.clone();
    let writing = thread::spawn(move || writer.write_all(&sent).unwrap());
    assert_eq!(read_exactly(&mut stream, big.len()), big);
    writing.join().unwrap();
    stream.shutdown(Shutdown::Write).unwrap();
    let mut rest = Vec::new();
    stream.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty());
}

#[test]
fn a_blocked_client_link_holds_bytes_until_healed() {
    let (network, addr, received) = proxied_echo(Side::Client, 0);
    let mut before = connect(addr);
    before.write_all(b"a").unwrap();
    assert_eq!(read_exactly(&mut before, 1), b"a");
    received.recv_timeout(LONG).unwrap();

    network.change(|f| f.block(Link::Client(0)));
    before.write_all(b"held").unwrap();
    let mut during = connect(addr);
    during.write_all(b"new").unwrap();
    assert!(!arrives(&mut before, 4));
    assert!(!arrives(&mut during, 3));
    assert!(received.try_recv().is_err(), "nothing reached the member");

    network.heal();
    assert_eq!(read_exactly(&mut before, 4), b"held");
    assert_eq!(read_exactly(&mut during, 3), b"new");
}

#[test]
fn a_one_way_blackhole_holds_only_its_direction() {
    // The proxy fronts member 1; this test process is member 0, found through /proc on the first
    // connection (its id is not known yet) and through its id afterwards.
    let (network, addr, received) = proxied_echo(Side::Peer, 1);
    network.set_pid(0, Some(std::process::id()));
    let hello = head("a0", "b1");
    let mut first = connect(addr);
    first.write_all(&hello).unwrap();
    assert_eq!(read_exactly(&mut first, hello.len()), hello);
    received.recv_timeout(LONG).unwrap();
    {
        let state = network.shared.state();
        assert_eq!(state.ids.get(&0xa0), Some(&0));
        assert_eq!(state.ids.get(&0xb1), Some(&1));
    }
    network.set_pid(0, None);

    // Member 1 to member 0 is lost: the request gets there, the echo does not come back.
    network.change(|f| f.block(Link::Peer { from: 1, to: 0 }));
    first.write_all(b"ping").unwrap();
    assert_eq!(received.recv_timeout(LONG).unwrap(), b"ping");
    assert!(!arrives(&mut first, 4));
    // So does a new connection, known by its header alone now.
    let mut second = connect(addr);
    second.write_all(&hello).unwrap();
    assert_eq!(received.recv_timeout(LONG).unwrap(), hello);
    assert!(!arrives(&mut second, hello.len()));
    network.heal();
    assert_eq!(read_exactly(&mut first, 4), b"ping");
    assert_eq!(read_exactly(&mut second, hello.len()), hello);

    // Member 0 to member 1 is lost: nothing gets there, on old or new connections.
    network.change(|f| f.block(Link::Peer { from: 0, to: 1 }));
    first.write_all(b"pong").unwrap();
    let mut third = connect(addr);
    third.write_all(&hello).unwrap();
    assert!(received.recv_timeout(QUIET).is_err());
    // A link between other members does not touch it.
    network.heal();
    network.change(|f| f.block(Link::Peer { from: 2, to: 1 }));
    assert_eq!(read_exactly(&mut first, 4), b"pong");
    assert_eq!(read_exactly(&mut third, hello.len()), hello);
}

#[test]
fn outsiders_obey_member_wide_rules_only() {
    let (network, addr, _) = proxied_echo(Side::Peer, 1);
    // No header, no member pid: an outsider.
    network.change(|f| f.block(Link::Peer { from: 0, to: 1 }));
    let mut stream = connect(addr);
    stream.write_all(b"GET /version HTTP/1.1\r\n\r\n").unwrap();
    assert_eq!(
        read_exactly(&mut stream, 25),
        b"GET /version HTTP/1.1\r\n\r\n"
    );
    network.change(|f| f.block(Link::Peers(1)));
    stream.write_all(b"x").unwrap();
    assert!(!arrives(&mut stream, 1));
    network.heal();
    assert_eq!(read_exactly(&mut stream, 1), b"x");
}

#[test]
fn delay_adds_latency_and_keeps_order() {
    let (network, addr, _) = proxied_echo(Side::Client, 0);
    let latency = Duration::from_millis(150);
    network.change(|f| {
        f.delay(
            Link::Client(0),
            Delay {
                latency,
                jitter: Duration::from_millis(50),
            },
        )
    });
    let mut stream = connect(addr);
    let started = std::time::Instant::now();
    stream.write_all(b"x").unwrap();
    assert_eq!(read_exactly(&mut stream, 1), b"x");
    // Delayed on the way in and on the way back.
    assert!(started.elapsed() >= 2 * latency, "{:?}", started.elapsed());

    let mut writer = stream.try_clone().unwrap();
    let sending = thread::spawn(move || {
        for i in 0..200u8 {
            writer.write_all(&[i]).unwrap();
            thread::sleep(Duration::from_millis(1));
        }
    });
    let expected: Vec<u8> = (0..200u8).collect();
    assert_eq!(read_exactly(&mut stream, 200), expected);
    sending.join().unwrap();
}

#[test]
fn dropped_connections_are_reset_by_seeded_share() {
    let (network, addr, _) = proxied_echo(Side::Client, 0);
    let mut established = connect(addr);
    established.write_all(b"a").unwrap();
    assert_eq!(read_exactly(&mut established, 1), b"a");

    network.change(|f| f.drop_connections(Link::Client(0), 1.0));
    let mut buf = [0u8; 1];
    // Reset: an error (ECONNRESET) or, if the RST raced the read, the end of the stream.
    assert!(matches!(established.read(&mut buf), Err(_) | Ok(0)));
    let mut fresh = connect(addr);
    let _ = fresh.write_all(b"b");
    assert!(matches!(fresh.read(&mut buf), Err(_) | Ok(0)));

    network.change(|f| f.drop_connections(Link::Client(0), 0.5));
    let survivors = (0..40)
        .filter(|_| {
            let mut stream = connect(addr);
            stream.write_all(b"c").is_ok() && matches!(stream.read(&mut buf), Ok(1))
        })
        .count();
    assert!(
        survivors > 0 && survivors < 40,
        "{survivors} of 40 survived"
    );

    network.heal();
    let mut after = connect(addr);
    after.write_all(b"d").unwrap();
    assert_eq!(read_exactly(&mut after, 1), b"d");
}

#[test]
fn dropping_connections_on_one_link_spares_the_others() {
    let (network, addr0, _) = proxied_echo(Side::Client, 0);
    let (upstream, _) = echo_server();
    let listener = StdListener::bind("127.0.0.1:0").unwrap();
    let addr1 = listener.local_addr().unwrap();
    network
        .add_proxy(1, Side::Client, listener, upstream)
        .unwrap();
    let mut buf = [0u8; 1];
    let mut on1 = connect(addr1);
    on1.write_all(b"a").unwrap();
    assert_eq!(read_exactly(&mut on1, 1), b"a");

    // Connections to link 0 that survive the roll they get when they open.
    network.change(|f| f.drop_connections(Link::Client(0), 0.5));
    let mut survivors: Vec<StdStream> = (0..20)
        .map(|_| connect(addr0))
        .filter_map(|mut s| {
            (s.write_all(b"b").is_ok() && matches!(s.read(&mut buf), Ok(1))).then_some(s)
        })
        .collect();
    assert!(!survivors.is_empty());
    // Calls on link 1 reset link 1's connections, and make no connection of link 0 roll again.
    for _ in 0..10 {
        network.change(|f| f.drop_connections(Link::Client(1), 1.0));
    }
    assert!(matches!(on1.read(&mut buf), Err(_) | Ok(0)));
    for stream in &mut survivors {
        stream.write_all(b"c").unwrap();
        assert_eq!(read_exactly(stream, 1), b"c");
    }
}

#[test]
fn dropping_the_network_closes_listeners_and_connections() {
    let (network, addr, _) = proxied_echo(Side::Client, 0);
    let mut stream = connect(addr);
    stream.write_all(b"a").unwrap();
    assert_eq!(read_exactly(&mut stream, 1), b"a");
    drop(network);
    let mut buf = [0u8; 1];
    assert!(matches!(stream.read(&mut buf), Ok(0) | Err(_)));
    assert!(StdStream::connect(addr).is_err());
}
