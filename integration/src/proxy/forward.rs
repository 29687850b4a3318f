//! Moving a connection's bytes both ways under the rules in force: holding, delaying and resetting.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use testkit::Rng;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::rules::{Delay, Direction, Party};
use super::shared::{Proxy, Shared, Side};
use super::sniff::identify;

/// Most bytes read at once from a socket.
const CHUNK: usize = 16 * 1024;
/// Chunks read but not yet written, per direction: with a delay, what may be in flight (4 MiB).
const CHUNKS_IN_FLIGHT: usize = 256;

pub(super) async fn accept_loop(listener: TcpListener, proxy: Arc<Proxy>, shared: Arc<Shared>) {
    loop {
        match listener.accept().await {
            Ok((socket, dialer)) => {
                tokio::spawn(serve(
                    socket,
                    dialer,
                    Arc::clone(&proxy),
                    Arc::clone(&shared),
                ));
            }
            Err(e) => {
                // Out of file descriptors, say: wait instead of spinning.
                tracing::warn!(listen = %proxy.listen, error = %e, "proxy accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// Classifies one connection, then forwards it under the faults in force until either side closes it, a
/// fault resets it or the network stops.
async fn serve(
    mut downstream: TcpStream,
    dialer: SocketAddr,
    proxy: Arc<Proxy>,
    shared: Arc<Shared>,
) {
    let number = shared.connections.fetch_add(1, Ordering::Relaxed);
    let mut rng = connection_rng(shared.seed, number);
    let _ = downstream.set_nodelay(true);
    let (head, party) = match proxy.side {
        Side::Client => (Vec::new(), Party::Client),
        Side::Peer => identify(&mut downstream, dialer, &proxy, &shared).await,
    };
    let member = Party::Member(proxy.member);
    let inbound = Direction {
        from: party,
        to: member,
    };
    let outbound = Direction {
        from: member,
        to: party,
    };
    // Subscribe before reading the rule, so no change between the two goes unnoticed.
    let mut changes = shared.changed.subscribe();
    let (mut drop_call, share) = shared.drop_roll([inbound, outbound]);
    if rng.chance(share) {
        tracing::debug!(%dialer, ?party, ?member, "proxy resets a new connection");
        reset(&downstream);
        return;
    }
    let mut upstream = match TcpStream::connect(proxy.upstream).await {
        Ok(upstream) => upstream,
        Err(e) => {
            // The member is down: the dialer sees its connection reset.
            tracing::debug!(upstream = %proxy.upstream, error = %e, "proxy cannot reach its member");
            reset(&downstream);
            return;
        }
    };
    let _ = upstream.set_nodelay(true);
    tracing::trace!(%dialer, ?party, ?member, "proxy connection");
    let (rng_in, rng_out) = (rng.fork(), rng.fork());
    let failed = {
        let (mut down_read, mut down_write) = downstream.split();
        let (mut up_read, mut up_write) = upstream.split();
        let forward = async {
            tokio::try_join!(
                pump(
                    &mut down_read,
                    &mut up_write,
                    inbound,
                    head,
                    &shared,
                    rng_in
                ),
                pump(
                    &mut up_read,
                    &mut down_write,
                    outbound,
                    Vec::new(),
                    &shared,
                    rng_out
                ),
            )
        };
        let dropped = async {
            loop {
                if changes.changed().await.is_err() {
                    std::future::pending::<()>().await;
                }
                let (latest, share) = shared.drop_roll([inbound, outbound]);
                if latest != drop_call {
                    drop_call = latest;
                    if rng.chance(share) {
                        tracing::debug!(%dialer, ?party, ?member, "proxy resets a connection");
                        return;
                    }
                }
            }
        };
        tokio::select! {
            result = forward => result.is_err(),
            () = dropped => true,
        }
    };
    if failed {
        // Pass a failure on as a reset, as the network would, rather than as a clean end of stream.
        reset(&downstream);
        reset(&upstream);
    }
}

/// Sets the socket to send RST instead of FIN when it is closed.
fn reset(socket: &TcpStream) {
    if let Err(e) = socket.set_zero_linger() {
        tracing::debug!(error = %e, "cannot set SO_LINGER");
    }
}

/// A chunk read from one side, with the time it arrived.
struct Chunk {
    at: Instant,
    bytes: Vec<u8>,
}

/// Forwards one direction until its source ends (then passes the end on) or either side fails.
/// `head` was read from `src` already.
async fn pump<R, W>(
    src: &mut R,
    dst: &mut W,
    dir: Direction,
    head: Vec<u8>,
    shared: &Shared,
    mut rng: Rng,
) -> io::Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let (tx, mut rx) = mpsc::channel::<Chunk>(CHUNKS_IN_FLIGHT);
    let read = async move {
        if !head.is_empty() {
            let chunk = Chunk {
                at: Instant::now(),
                bytes: head,
            };
            if tx.send(chunk).await.is_err() {
                return Ok(());
            }
        }
        let mut buf = vec![0u8; CHUNK];
        loop {
            // While blocked, leave the bytes in the kernel: the sender's TCP stalls, as in a partition.
            shared.wait_open(dir).await;
            let n = src.read(&mut buf).await?;
            if n == 0 {
                return Ok(());
            }
            let chunk = Chunk {
                at: Instant::now(),
                bytes: buf[..n].to_vec(),
            };
            // The writer only goes away after failing, and reports that failure itself.
            if tx.send(chunk).await.is_err() {
                return Ok(());
            }
        }
    };
    let write = async {
        let mut not_before = Instant::now();
        while let Some(chunk) = rx.recv().await {
            let delay = shared.rule(dir).delay;
            if delay != Delay::default() {
                let release =
                    (chunk.at + delay.latency + rng.share_of(delay.jitter)).max(not_before);
                tokio::time::sleep_until(release).await;
                not_before = release;
            }
            shared.wait_open(dir).await;
            dst.write_all(&chunk.bytes).await?;
        }
        dst.shutdown().await
    };
    tokio::try_join!(read, write).map(|_| ())
}

/// The generator of connection `number`: seeded with `(seed, number)`, so a run that opens the same
/// connections in the same order makes the same choices.
fn connection_rng(seed: u64, number: u64) -> Rng {
    let mut rng = Rng::new(seed ^ number.wrapping_mul(0xD1B5_4A32_D192_ED03));
    rng.next_u64();
    rng
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_generator_is_seeded() {
        let draws = |seed| {
            let mut rng = connection_rng(seed, 3);
            (0..4).map(|_| rng.next_u64()).collect::<Vec<_>>()
        };
        assert_eq!(draws(1), draws(1));
        assert_ne!(draws(1), draws(2));
        let mut rng = connection_rng(9, 0);
        assert!((0..1000).all(|_| (0.0..1.0).contains(&rng.unit())));
        assert!(!rng.chance(0.0));
    }
}
