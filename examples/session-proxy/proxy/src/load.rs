//! Load for the proxy: an echo server to stand for the upstream, and long sessions
//! opened through the proxy, checked alive and closed. A session whose connection is
//! gone when it is closed was cut off.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// How long a session waits for its echo.
const ECHO_TIMEOUT: Duration = Duration::from_secs(5);

/// Echoes every byte back on every connection until `cancel`.
pub async fn echo(listener: TcpListener, cancel: CancellationToken) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            () = cancel.cancelled() => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            accepted = listener.accept() => {
                let Ok((mut stream, _)) = accepted else {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                };
                connections.spawn(async move {
                    let (mut read, mut write) = stream.split();
                    // Ends when the client closes its side.
                    let _ = tokio::io::copy(&mut read, &mut write).await;
                    let _ = write.shutdown().await;
                });
            }
        }
    }
    connections.shutdown().await;
}

/// Why a session could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The connection failed.
    #[error("connect to {0}: {1}")]
    Connect(SocketAddr, std::io::Error),
    /// The proxy closed it at once: its task is draining, try another.
    #[error("{0} closed the session at once (draining)")]
    Refused(SocketAddr),
}

/// How a session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Closed {
    /// It was still open, and closed cleanly by the client.
    Ended,
    /// Its connection was already gone: cut off.
    Cut,
}

/// One open session through the proxy.
#[derive(Debug)]
pub struct Session {
    stream: TcpStream,
    /// The address it was opened to.
    pub addr: SocketAddr,
}

/// Opens a session to `addr` and checks it reaches the upstream (one echo).
///
/// # Errors
/// If the connection fails, or the proxy closes it before the echo (a draining task).
pub async fn open(addr: SocketAddr) -> Result<Session, OpenError> {
    let stream = TcpStream::connect(addr)
        .await
        .map_err(|e| OpenError::Connect(addr, e))?;
    let mut session = Session { stream, addr };
    if session.alive().await {
        Ok(session)
    } else {
        Err(OpenError::Refused(addr))
    }
}

impl Session {
    /// Whether the session still carries data both ways (one echo, at most 5 s).
    pub async fn alive(&mut self) -> bool {
        const PING: &[u8] = b"ping\n";
        let round = async {
            self.stream.write_all(PING).await?;
            let mut back = [0_u8; PING.len()];
            self.stream.read_exact(&mut back).await?;
            Ok::<bool, std::io::Error>(back == PING)
        };
        matches!(
            tokio::time::timeout(ECHO_TIMEOUT, round).await,
            Ok(Ok(true))
        )
    }

    /// Closes it: [`Closed::Cut`] if it was no longer alive.
    pub async fn close(mut self) -> Closed {
        if !self.alive().await {
            return Closed::Cut;
        }
        let _ = self.stream.shutdown().await;
        // Wait for the far side's close, so the proxy has ended the session too.
        let mut rest = Vec::new();
        let _ = tokio::time::timeout(ECHO_TIMEOUT, self.stream.read_to_end(&mut rest)).await;
        Closed::Ended
    }
}

/// Opens a session to the address `pick` gives, trying again (another pick) while
/// the proxies refuse it, at most `attempts` times.
///
/// # Errors
/// The last attempt's error.
pub async fn open_with_retry(
    mut pick: impl FnMut() -> Option<SocketAddr>,
    attempts: u32,
) -> Result<Session, String> {
    let mut last = "no proxy to open a session to".to_owned();
    for _ in 0..attempts.max(1) {
        match pick() {
            Some(addr) => match open(addr).await {
                Ok(session) => return Ok(session),
                Err(e) => last = e.to_string(),
            },
            None => last = "no proxy to open a session to".to_owned(),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Err(last)
}
