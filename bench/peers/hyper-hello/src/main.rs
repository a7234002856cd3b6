//! HTTP/1.1 server on hyper 0.14 and Tokio's multi-thread runtime: the
//! response that examples/http_server.c gives at `/`.
//!
//!   hyper-hello [--addr HOST:PORT] [--workers N]
//!
//! Every request (any method, any path) gets `200 OK` with
//! `Content-Type: text/plain` and the body `hello`; hyper adds
//! `content-length` and `date`, and handles keep-alive, HTTP/1.0 and
//! `Connection: close`. One task per connection (hyper's `serve_connection`
//! on a Tokio `TcpStream` with TCP_NODELAY). Once bound, the server prints
//! `listening on <addr> ...` on stdout; SIGINT or SIGTERM stops it with exit
//! status 0.

use std::convert::Infallible;
use std::future::Future;
use std::io::Write;
use std::net::SocketAddr;
use std::pin::Pin;
use std::process;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::server::conn::Http;
use hyper::service::service_fn;
use hyper::{Body, Request, Response};
use tokio::net::TcpSocket;
use tokio::runtime::Builder;
use tokio::signal::unix::{signal, Signal, SignalKind};

struct Config {
    addr: SocketAddr,
    workers: Option<usize>,
}

fn usage() -> ! {
    eprintln!("usage: hyper-hello [--addr HOST:PORT] [--workers N]");
    process::exit(2);
}

fn parse_args() -> Config {
    let mut cfg = Config { addr: "127.0.0.1:8080".parse().unwrap(), workers: None };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let (flag, inline) = match a.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_string(), Some(v.to_string())),
            _ => (a.clone(), None),
        };
        let mut value = || inline.clone().or_else(|| args.next()).unwrap_or_else(|| usage());
        match flag.as_str() {
            "--addr" => {
                let v = value();
                cfg.addr = v.parse().unwrap_or_else(|_| {
                    eprintln!("hyper-hello: bad --addr '{}' (want 127.0.0.1:8080 or [::1]:8080)", v);
                    usage()
                });
            }
            "--workers" => match value().parse::<usize>() {
                Ok(n) if n > 0 => cfg.workers = Some(n),
                _ => {
                    eprintln!("hyper-hello: --workers needs a positive number");
                    usage();
                }
            },
            "-h" | "--help" => usage(),
            _ => {
                eprintln!("hyper-hello: unknown argument '{}'", a);
                usage();
            }
        }
    }
    cfg
}

async fn hello(_req: Request<Body>) -> Result<Response<Body>, Infallible> {
    let mut resp = Response::new(Body::from("hello"));
    resp.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    Ok(resp)
}

/// Resolves when either SIGINT or SIGTERM arrives.
struct Shutdown {
    int: Signal,
    term: Signal,
}

impl Future for Shutdown {
    type Output = &'static str;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<&'static str> {
        let this = self.get_mut();
        if this.int.poll_recv(cx).is_ready() {
            return Poll::Ready("SIGINT");
        }
        if this.term.poll_recv(cx).is_ready() {
            return Poll::Ready("SIGTERM");
        }
        Poll::Pending
    }
}

fn main() {
    let cfg = parse_args();
    let mut builder = Builder::new_multi_thread();
    if let Some(n) = cfg.workers {
        builder.worker_threads(n);
    }
    let rt = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("hyper-hello: cannot build runtime: {}", e);
            process::exit(1);
        }
    };

    let result: std::io::Result<&'static str> = rt.block_on(async {
        // The handlers first, so a signal sent right after the announcement
        // is never missed.
        let shutdown = Shutdown { int: signal(SignalKind::interrupt())?, term: signal(SignalKind::terminate())? };
        let socket = if cfg.addr.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
        socket.set_reuseaddr(true)?;
        socket.bind(cfg.addr)?;
        let listener = socket.listen(1024)?;
        let workers = cfg.workers.map_or("default".to_string(), |n| n.to_string());
        println!("listening on {} (hyper 0.14, multi-thread workers={})", listener.local_addr()?, workers);
        let _ = std::io::stdout().flush();

        tokio::spawn(async move {
            let http = Http::new();
            loop {
                match listener.accept().await {
                    Ok((stream, _)) => {
                        let _ = stream.set_nodelay(true);
                        let conn = http.serve_connection(stream, service_fn(hello));
                        tokio::spawn(async move {
                            let _ = conn.await;
                        });
                    }
                    Err(e) => {
                        // out of descriptors and the like: back off briefly
                        eprintln!("hyper-hello: accept: {}", e);
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                }
            }
        });
        Ok(shutdown.await)
    });

    match result {
        Ok(sig) => {
            eprintln!("hyper-hello: {} received, shutting down", sig);
            rt.shutdown_timeout(Duration::from_millis(200));
            process::exit(0);
        }
        Err(e) => {
            eprintln!("hyper-hello: {}: {}", cfg.addr, e);
            process::exit(1);
        }
    }
}
