//! A TCP relay that adds latency: every chunk is forwarded after a delay drawn around a mean
//! (with jitter), keeping the order of the bytes, and a new connection waits one delay before
//! it reaches the upstream (the handshake's round trip). Used to inject latency between agents
//! and the hub on a kernel without `sch_netem`; the delay can change while connections run.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use rand::Rng;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;

/// Chunks in flight per direction of one connection.
const IN_FLIGHT: usize = 256;

/// The delay and jitter, in milliseconds, shared with every connection.
#[derive(Debug, Default)]
struct Latency {
    delay_ms: AtomicU64,
    jitter_ms: AtomicU64,
}

impl Latency {
    /// One delay: the mean ± up to the jitter, never negative.
    fn draw(&self) -> Duration {
        let delay = self.delay_ms.load(Ordering::Relaxed) as i64;
        let jitter = self.jitter_ms.load(Ordering::Relaxed) as i64;
        let offset = if jitter > 0 {
            rand::thread_rng().gen_range(-jitter..=jitter)
        } else {
            0
        };
        Duration::from_millis((delay + offset).max(0) as u64)
    }
}

/// A running relay; stops when dropped.
#[derive(Debug)]
pub struct Relay {
    /// Where it listens.
    pub addr: SocketAddr,
    latency: Arc<Latency>,
    task: tokio::task::JoinHandle<()>,
}

impl Relay {
    /// Listens on `listen` and forwards each connection to `upstream`, without delay at first.
    pub async fn start(listen: SocketAddr, upstream: SocketAddr) -> Result<Relay> {
        let listener = TcpListener::bind(listen).await?;
        let addr = listener.local_addr()?;
        let latency = Arc::new(Latency::default());
        let task = tokio::spawn({
            let latency = latency.clone();
            async move {
                while let Ok((down, _)) = listener.accept().await {
                    tokio::spawn(relay(down, upstream, latency.clone()));
                }
            }
        });
        Ok(Relay {
            addr,
            latency,
            task,
        })
    }

    /// Sets the one-way delay and its jitter.
    pub fn set(&self, delay: Duration, jitter: Duration) {
        self.latency
            .delay_ms
            .store(delay.as_millis() as u64, Ordering::Relaxed);
        self.latency
            .jitter_ms
            .store(jitter.as_millis() as u64, Ordering::Relaxed);
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn relay(down: TcpStream, upstream: SocketAddr, latency: Arc<Latency>) {
    tokio::time::sleep(latency.draw()).await;
    let Ok(up) = TcpStream::connect(upstream).await else {
        return;
    };
    let _ = down.set_nodelay(true);
    let _ = up.set_nodelay(true);
    let (down_r, down_w) = down.into_split();
    let (up_r, up_w) = up.into_split();
    let a = tokio::spawn(pump(down_r, up_w, latency.clone()));
    let b = tokio::spawn(pump(up_r, down_w, latency));
    let _ = a.await;
    let _ = b.await;
}

/// Forwards `from` to `to`, each chunk no earlier than its drawn delay after it was read and
/// no earlier than the chunk before it (TCP keeps order).
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    latency: Arc<Latency>,
) {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<(Instant, Vec<u8>)>(IN_FLIGHT);
    let writer = tokio::spawn(async move {
        while let Some((at, chunk)) = rx.recv().await {
            tokio::time::sleep_until(at).await;
            if to.write_all(&chunk).await.is_err() {
                return;
            }
        }
        let _ = to.shutdown().await;
    });
    let mut last = Instant::now();
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                let at = (Instant::now() + latency.draw()).max(last);
                last = at;
                if tx.send((at, buf[..n].to_vec())).await.is_err() {
                    break;
                }
            }
        }
    }
    drop(tx);
    let _ = writer.await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn forwards_both_ways_after_the_delay() {
        let echo = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let echo_addr = echo.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut s, _) = echo.accept().await.unwrap();
            let mut buf = [0u8; 5];
            s.read_exact(&mut buf).await.unwrap();
            s.write_all(&buf).await.unwrap();
        });
        let relay = Relay::start("127.0.0.1:0".parse().unwrap(), echo_addr)
            .await
            .unwrap();
        relay.set(Duration::from_millis(100), Duration::ZERO);
        let started = std::time::Instant::now();
        let mut c = TcpStream::connect(relay.addr).await.unwrap();
        c.write_all(b"hello").await.unwrap();
        let mut back = [0u8; 5];
        c.read_exact(&mut back).await.unwrap();
        assert_eq!(&back, b"hello");
        // Connect, there and back: three delays at least.
        assert!(
            started.elapsed() >= Duration::from_millis(300),
            "{:?}",
            started.elapsed()
        );
    }
}
