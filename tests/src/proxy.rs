//! A TCP proxy the test controls, put between a linkbus and its nats-server to break the real
//! connection (not a mock of it), two ways:
//!
//! - [`Proxy::cut`] closes every connection through it and refuses new ones until
//!   [`Proxy::restore`]: a link that drops, which both ends see at once.
//! - [`Proxy::black_hole`] keeps every socket open but lets no byte through, either way, until
//!   [`Proxy::release`]: a partition (a cable pulled beyond a switch, a firewall dropping
//!   packets), which neither end is told of. Bytes sent meanwhile are read and thrown away, so
//!   no sender blocks on a full buffer; a side that closes meanwhile is not told to the other.
//!   New connections are accepted (by the kernel, as the listener is open) and black-holed too:
//!   the client's handshake gets no answer, as a SYN into a partition. On release, every
//!   connection that lived through the hole is closed — what a healed link does to a TCP
//!   connection whose bytes were lost (its next segment is out of sequence, or meets a peer that
//!   gave up: a reset) — and new connections flow.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// A running proxy on 127.0.0.1 forwarding to `target`. Stops when dropped.
pub struct Proxy {
    addr: SocketAddr,
    open: Arc<AtomicBool>,
    /// Bumped by every cut; each forwarding task ends when it changes.
    cuts: watch::Sender<u64>,
    /// True while the black hole lasts.
    hole: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Proxy {
    /// Starts forwarding every connection made to the proxy's port to `target`.
    pub async fn start(target: SocketAddr) -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let open = Arc::new(AtomicBool::new(true));
        let (cuts, _) = watch::channel(0u64);
        let (hole, _) = watch::channel(false);
        let task = tokio::spawn(accept(listener, target, open.clone(), cuts.clone(), hole.clone()));
        Ok(Self { addr, open, cuts, hole, task })
    }

    /// `nats://127.0.0.1:<proxy port>`.
    pub fn url(&self) -> String {
        format!("nats://{}", self.addr)
    }

    /// Closes every connection through the proxy and refuses new ones.
    pub fn cut(&self) {
        self.open.store(false, Ordering::SeqCst);
        self.cuts.send_modify(|n| *n += 1);
    }

    /// Accepts and forwards connections again.
    pub fn restore(&self) {
        self.open.store(true, Ordering::SeqCst);
    }

    /// Lets no byte through, either way, on every connection, old or new, until
    /// [`Proxy::release`]; the sockets stay open.
    pub fn black_hole(&self) {
        self.hole.send_replace(true);
    }

    /// Ends the black hole: the connections that lived through it are closed, new ones flow.
    pub fn release(&self) {
        self.hole.send_replace(false);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.cut();
        self.release();
        self.task.abort();
    }
}

async fn accept(
    listener: TcpListener,
    target: SocketAddr,
    open: Arc<AtomicBool>,
    cuts: watch::Sender<u64>,
    hole: watch::Sender<bool>,
) {
    while let Ok((client, _)) = listener.accept().await {
        if !open.load(Ordering::SeqCst) {
            // Refused: the client sees the connection closed at once, as with a dead link.
            drop(client);
            continue;
        }
        let mut cut = cuts.subscribe();
        let hole = hole.subscribe();
        tokio::spawn(async move {
            let Ok(server) = TcpStream::connect(target).await else { return };
            let (client_read, client_write) = client.into_split();
            let (server_read, server_write) = server.into_split();
            tokio::select! {
                _ = forward(client_read, server_write, hole.clone()) => {}
                _ = forward(server_read, client_write, hole) => {}
                _ = cut.changed() => {}
            }
        });
    }
}

/// Copies `from` to `to` while there is no black hole. In one, reads and drops what comes, and
/// on its end closes the connection (returns). A close by `from` during a hole is kept until the
/// hole ends.
async fn forward(
    mut from: impl AsyncRead + Unpin,
    mut to: impl AsyncWrite + Unpin,
    mut hole: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        if *hole.borrow_and_update() {
            return swallow(&mut from, &mut buf, &mut hole).await;
        }
        tokio::select! {
            read = from.read(&mut buf) => {
                let n = read?;
                if n == 0 {
                    return Ok(());
                }
                if *hole.borrow() {
                    // The hole opened while these bytes were on their way: they are lost.
                    return swallow(&mut from, &mut buf, &mut hole).await;
                }
                to.write_all(&buf[..n]).await?;
            }
            changed = hole.changed() => {
                if changed.is_err() {
                    // The proxy is gone.
                    return Ok(());
                }
            }
        }
    }
}

/// Reads and drops everything from `from` until the hole ends (a close by `from` meanwhile is
/// told to nobody); returns then, which closes the connection.
async fn swallow(
    from: &mut (impl AsyncRead + Unpin),
    buf: &mut [u8],
    hole: &mut watch::Receiver<bool>,
) -> std::io::Result<()> {
    let mut closed = false;
    loop {
        if !*hole.borrow_and_update() {
            return Ok(());
        }
        tokio::select! {
            read = from.read(buf), if !closed => {
                if matches!(read, Ok(0) | Err(_)) {
                    closed = true;
                }
            }
            changed = hole.changed() => {
                if changed.is_err() {
                    return Ok(());
                }
            }
        }
    }
}
