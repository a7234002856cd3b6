//! HTTP/1.1 server on hyper 0.14 and Tokio's multi-thread runtime: the
//! response that examples/http_server.c gives at `/`.
//!
//!   hyper-hello [--addr HOST:PORT] [--workers N]
//!
//! Every request (any method, any path) gets `200 OK` with
//! `Content-Type: text/plain` and the body `hello`; hyper adds
//! `content-length` and `date`, and handles keep-alive, pipelining, HTTP/1.0
//! and `Connection: close`. One task per connection (hyper's
//! `serve_connection` on a Tokio `TcpStream` with TCP_NODELAY); no idle
//! timeout. Once bound, the server prints `listening on <addr> ...` on
//! stdout; SIGINT or SIGTERM stops it with exit status 0.

use std::convert::Infallible;
use std::io::Write;
use std::net::SocketAddr;
use std::process;
use std::time::Duration;

use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::server::conn::Http;
use hyper::service::service_fn;
use hyper::{Body, Request, Response};
use tokio::net::{TcpListener, TcpSocket};
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::mpsc;

fn fail(why: &str) -> ! {
    eprintln!("hyper-hello: {}\nusage: hyper-hello [--addr HOST:PORT] [--workers N]", why);
    process::exit(2);
}

/// `--addr` and `--workers`, each followed by its value.
fn parse_args() -> (SocketAddr, Option<usize>) {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut addr: SocketAddr = "127.0.0.1:8080".parse().unwrap();
    let mut workers = None;
    if args.len() % 2 != 0 {
        fail("every option takes a value");
    }
    for pair in args.chunks(2) {
        match pair[0].as_str() {
            "--addr" => {
                addr = pair[1].parse().unwrap_or_else(|_| fail("bad --addr (want 127.0.0.1:8080 or [::1]:8080)"))
            }
            "--workers" => match pair[1].parse::<usize>() {
                Ok(n) if n > 0 => workers = Some(n),
                _ => fail("--workers needs a positive number"),
            },
            other => fail(&format!("unknown option '{}'", other)),
        }
    }
    (addr, workers)
}

async fn hello(_req: Request<Body>) -> Result<Response<Body>, Infallible> {
    let mut resp = Response::new(Body::from("hello"));
    resp.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    Ok(resp)
}

async fn accept_loop(listener: TcpListener) {
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
                // out of descriptors and the like: back off instead of spinning
                eprintln!("hyper-hello: accept: {}", e);
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

/// Binds, announces the address, serves until SIGINT or SIGTERM; returns
/// the signal's name.
async fn serve(addr: SocketAddr, workers: Option<usize>) -> std::io::Result<&'static str> {
    // The signal handlers first, so a signal sent right after the
    // announcement is never missed; each one's task reports it here.
    let (tx, mut stop) = mpsc::channel::<&'static str>(2);
    for (kind, name) in [(SignalKind::interrupt(), "SIGINT"), (SignalKind::terminate(), "SIGTERM")] {
        let mut sig = signal(kind)?;
        let tx = tx.clone();
        tokio::spawn(async move {
            sig.recv().await;
            let _ = tx.send(name).await;
        });
    }
    let socket = if addr.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    let listener = socket.listen(1024)?;
    let w = workers.map_or_else(|| "default".to_string(), |n| n.to_string());
    println!("listening on {} (hyper 0.14, multi-thread workers={})", listener.local_addr()?, w);
    std::io::stdout().flush()?;
    tokio::spawn(accept_loop(listener));
    Ok(stop.recv().await.unwrap_or("end of signals"))
}

fn main() {
    let (addr, workers) = parse_args();
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = workers {
        builder.worker_threads(n);
    }
    let rt = builder.enable_all().build().unwrap_or_else(|e| {
        eprintln!("hyper-hello: cannot build the runtime: {}", e);
        process::exit(1)
    });
    let status = match rt.block_on(serve(addr, workers)) {
        Ok(sig) => {
            eprintln!("hyper-hello: {} received, shutting down", sig);
            0
        }
        Err(e) => {
            eprintln!("hyper-hello: {}: {}", addr, e);
            1
        }
    };
    rt.shutdown_timeout(Duration::from_millis(200));
    process::exit(status);
}
