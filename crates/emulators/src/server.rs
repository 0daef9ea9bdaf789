//! Serving an [`axum::Router`] on a loopback port for the lifetime of a value.

use std::net::SocketAddr;

use tokio::sync::oneshot;

/// A server listening on `127.0.0.1:<port>`, on a thread and tokio runtime of its own (so
/// that it keeps answering whatever the test's runtime does: a paused clock, a
/// current-thread runtime blocked in a call); it stops when this value is dropped.
#[derive(Debug)]
pub struct Running {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Running {
    /// Binds `127.0.0.1:0` and serves `router` until dropped.
    pub fn start(router: axum::Router) -> std::io::Result<Running> {
        let listener = std::net::TcpListener::bind(("127.0.0.1", 0))?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("emulator")
            .enable_io()
            .enable_time()
            .build()?;
        let (stop, stopped) = oneshot::channel::<()>();
        let thread = std::thread::Builder::new().name(format!("emulator-{}", addr.port())).spawn(move || {
            runtime.block_on(async move {
                let listener = match tokio::net::TcpListener::from_std(listener) {
                    Ok(l) => l,
                    Err(e) => {
                        tracing::warn!(error = %e, "emulator could not listen");
                        return;
                    }
                };
                let serve = axum::serve(listener, router).with_graceful_shutdown(async move {
                    let _ = stopped.await;
                });
                if let Err(e) = serve.await {
                    tracing::warn!(error = %e, "emulator server stopped with an error");
                }
            });
            // Connections still open (a long poll) end with the runtime.
            runtime.shutdown_background();
        })?;
        Ok(Running { addr, stop: Some(stop), thread: Some(thread) })
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:<port>` (no trailing slash).
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        // Graceful shutdown waits for open connections; a client that keeps one alive (a
        // pooled keep-alive connection, a long poll) would hold this forever, so do not join.
        drop(self.thread.take());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn serves_on_loopback_until_dropped() {
        let router = axum::Router::new().route("/ping", axum::routing::get(|| async { "pong" }));
        let running = Running::start(router).unwrap();
        assert!(running.addr().ip().is_loopback());
        let mut stream = tokio::net::TcpStream::connect(running.addr()).await.unwrap();
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        stream.write_all(b"GET /ping HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n").await.unwrap();
        let mut reply = String::new();
        stream.read_to_string(&mut reply).await.unwrap();
        assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
        assert!(reply.ends_with("pong"), "{reply}");
        let addr = running.addr();
        drop(running);
        let refused = onefolder_wait(|| async move { tokio::net::TcpStream::connect(addr).await.is_err() }).await;
        assert!(refused, "the server still accepts connections after drop");
    }

    /// Polls `cond` every 20 ms for up to 10 s.
    async fn onefolder_wait<F, Fut>(cond: F) -> bool
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        for _ in 0..500 {
            if cond().await {
                return true;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        false
    }
}
