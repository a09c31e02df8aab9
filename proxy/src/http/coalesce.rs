//! Write coalescing for HTTP/2 connections, Envoy's way: whatever a connection's
//! frames add up to while its task runs leaves in one `writev` when the task yields.
//!
//! h2 flushes after every DATA frame it sends by reference (anything of 256 bytes or
//! more), so a connection answering several streams at once would otherwise make a
//! system call per response. [`CoalescingIo`] takes the codec's writes into a buffer
//! and treats its flushes as done; [`Flushing`] wraps the connection's future and
//! writes the buffer out each time that future has been polled. A buffer over
//! [`HIGH_WATER`] is written out at once, and a full socket pushes back on the codec.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use bytes::{Buf, BytesMut};
use parking_lot::Mutex;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

use crate::stats::Counter;

/// Buffered bytes beyond which a write goes to the socket before the task yields.
const HIGH_WATER: usize = 64 * 1024;

/// The write side shared by a connection's I/O and the future that drives it.
struct Outbox {
    socket: OwnedWriteHalf,
    pending: BytesMut,
    tx: Option<Counter>,
    /// A write failed: the codec sees the error on its next write.
    failed: Option<io::ErrorKind>,
}

impl Outbox {
    /// Writes the buffer until it is empty or the socket is full.
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if let Some(kind) = self.failed {
            return Poll::Ready(Err(kind.into()));
        }
        while !self.pending.is_empty() {
            let written = match ready!(Pin::new(&mut self.socket).poll_write(cx, &self.pending)) {
                Ok(0) => Err(io::ErrorKind::WriteZero.into()),
                other => other,
            };
            match written {
                Ok(n) => {
                    if let Some(tx) = &self.tx {
                        tx.add(n as u64);
                    }
                    self.pending.advance(n);
                }
                Err(e) => {
                    self.pending.clear();
                    self.failed = Some(e.kind());
                    return Poll::Ready(Err(e));
                }
            }
        }
        Poll::Ready(Ok(()))
    }

    /// Makes room for more: writes out a buffer over [`HIGH_WATER`] first.
    fn poll_room(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if let Some(kind) = self.failed {
            return Poll::Ready(Err(kind.into()));
        }
        if self.pending.len() >= HIGH_WATER {
            ready!(self.poll_drain(cx))?;
        }
        Poll::Ready(Ok(()))
    }
}

/// A TCP connection whose writes are buffered until [`Flushing`] writes them out.
pub struct CoalescingIo {
    read: OwnedReadHalf,
    outbox: Arc<Mutex<Outbox>>,
    rx: Option<Counter>,
}

impl CoalescingIo {
    /// `rx` and `tx` count the bytes that cross the socket, when given.
    pub fn new(
        stream: TcpStream,
        rx: Option<Counter>,
        tx: Option<Counter>,
    ) -> (CoalescingIo, Flusher) {
        let (read, write) = stream.into_split();
        let outbox = Arc::new(Mutex::new(Outbox {
            socket: write,
            pending: BytesMut::new(),
            tx,
            failed: None,
        }));
        (
            CoalescingIo {
                read,
                outbox: outbox.clone(),
                rx,
            },
            Flusher(outbox),
        )
    }
}

impl AsyncRead for CoalescingIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.read).poll_read(cx, buf);
        if let (Poll::Ready(Ok(())), Some(rx)) = (&polled, &self.rx) {
            rx.add((buf.filled().len() - before) as u64);
        }
        polled
    }
}

impl AsyncWrite for CoalescingIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let mut outbox = self.outbox.lock();
        ready!(outbox.poll_room(cx))?;
        outbox.pending.extend_from_slice(data);
        Poll::Ready(Ok(data.len()))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let mut outbox = self.outbox.lock();
        ready!(outbox.poll_room(cx))?;
        let mut n = 0;
        for buf in bufs {
            outbox.pending.extend_from_slice(buf);
            n += buf.len();
        }
        Poll::Ready(Ok(n))
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    /// Done when the driving [`Flushing`] future returns, which is soon: the codec only
    /// flushes while that future is being polled.
    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut outbox = self.outbox.lock();
        ready!(outbox.poll_drain(cx))?;
        Pin::new(&mut outbox.socket).poll_shutdown(cx)
    }
}

/// Writes out what a [`CoalescingIo`] has buffered.
pub struct Flusher(Arc<Mutex<Outbox>>);

impl Flusher {
    /// Wraps the future that drives the connection's codec.
    pub fn drive<F: Future>(self, connection: F) -> Flushing<F, F::Output> {
        Flushing {
            connection: Box::pin(connection),
            flusher: self,
            output: None,
        }
    }
}

/// A connection's future that writes the connection's buffered frames out every time
/// it has been polled, and once more before it completes.
///
/// The output type is a parameter of its own, not `F::Output`, so that the struct's
/// auto traits do not depend on proving `F: Future` (which trips the compiler's
/// higher-ranked lifetime checks on hyper's connection inside an `async fn`).
pub struct Flushing<F, O> {
    connection: Pin<Box<F>>,
    flusher: Flusher,
    output: Option<O>,
}

impl<F, O> Flushing<F, O> {
    pub fn connection(&mut self) -> Pin<&mut F> {
        self.connection.as_mut()
    }
}

impl<F: Future<Output = O>, O: Unpin> Future for Flushing<F, O> {
    type Output = O;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<O> {
        let this = &mut *self;
        if this.output.is_none()
            && let Poll::Ready(output) = this.connection.as_mut().poll(cx)
        {
            this.output = Some(output);
        }
        // A write error reaches the codec through its next write or read; the connection
        // ends then.
        let drained = this.flusher.0.lock().poll_drain(cx);
        match (this.output.take(), drained) {
            (Some(output), Poll::Ready(_)) => Poll::Ready(output),
            (output, _) => {
                this.output = output;
                Poll::Pending
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::test_support::tcp_pair as pair;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn writes_leave_together_when_the_driving_future_yields() {
        let (ours, peer) = pair().await;
        let (mut io, flusher) = CoalescingIo::new(ours, None, None);
        let (tx_gate, rx_gate) = tokio::sync::oneshot::channel::<()>();
        let driver = tokio::spawn(flusher.drive(async move {
            io.write_all(b"one ").await.unwrap();
            io.flush().await.unwrap();
            // Flushed as far as the codec knows, but still ours until the task yields.
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            let mut probe = [0u8; 8];
            let early = peer.try_read(&mut probe);
            io.write_all(b"two").await.unwrap();
            io.flush().await.unwrap();
            let _ = rx_gate.await;
            (io, peer, early.map_err(|e| e.kind()))
        }));
        tx_gate.send(()).unwrap();
        let (mut io, mut peer, early) = driver.await.unwrap();
        // The sleep yielded, so "one " was written then, and "two" at the next yield.
        assert_eq!(early, Ok(4));
        io.shutdown().await.unwrap();
        let mut rest = Vec::new();
        peer.read_to_end(&mut rest).await.unwrap();
        assert_eq!(rest, b"two");
    }

    #[tokio::test]
    async fn nothing_is_written_before_the_driving_future_yields() {
        let (ours, peer) = pair().await;
        let (mut io, flusher) = CoalescingIo::new(ours, None, None);
        let driver = tokio::spawn(flusher.drive(async move {
            io.write_all(b"one ").await.unwrap();
            io.flush().await.unwrap();
            // A blocking wait: the task does not yield, so the flush cannot have run.
            std::thread::sleep(std::time::Duration::from_millis(20));
            let mut probe = [0u8; 8];
            let early = peer.try_read(&mut probe).map_err(|e| e.kind());
            io.write_all(b"two").await.unwrap();
            (io, peer, early)
        }));
        let (_io, mut peer, early) = driver.await.unwrap();
        assert_eq!(early, Err(io::ErrorKind::WouldBlock));
        let mut got = vec![0u8; 7];
        peer.read_exact(&mut got).await.unwrap();
        assert_eq!(got, b"one two");
    }

    #[tokio::test]
    async fn a_full_socket_holds_the_codec_back_and_loses_nothing() {
        let (ours, mut peer) = pair().await;
        let (mut io, flusher) = CoalescingIo::new(ours, None, None);
        let total = 8 * 1024 * 1024;
        let writer = tokio::spawn(flusher.drive(async move {
            let chunk = vec![7u8; 16 * 1024];
            let mut sent = 0;
            while sent < total {
                io.write_all(&chunk).await.unwrap();
                sent += chunk.len();
            }
            io.shutdown().await.unwrap();
        }));
        // The peer reads slowly at first, so the socket fills up.
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        let mut received = Vec::new();
        peer.read_to_end(&mut received).await.unwrap();
        writer.await.unwrap();
        assert_eq!(received.len(), total);
        assert!(received.iter().all(|b| *b == 7));
    }
}
