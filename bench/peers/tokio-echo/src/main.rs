//! TCP echo server on Tokio.
//!
//!   tokio-echo [--addr HOST:PORT] [--workers N | --current-thread] [--backlog N]
//!
//! One task per connection; each reads into a 64 KiB buffer and writes back
//! what it read with `write_all`. TCP_NODELAY is set on every accepted
//! socket. `--addr` takes IPv4 (`127.0.0.1:7777`, the default) or IPv6
//! (`[::1]:7777`); port 0 picks a free port. Once bound, the server prints
//! `listening on <addr> ...` on stdout. SIGINT or SIGTERM stops it with exit
//! status 0.

use std::future::Future;
use std::io::Write;
use std::net::SocketAddr;
use std::pin::Pin;
use std::process;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::runtime::Builder;
use tokio::signal::unix::{signal, Signal, SignalKind};

const BUF_SIZE: usize = 64 * 1024;

struct Config {
    addr: SocketAddr,
    workers: Option<usize>,
    current_thread: bool,
    backlog: u32,
}

fn usage() -> ! {
    eprintln!("usage: tokio-echo [--addr HOST:PORT] [--workers N | --current-thread] [--backlog N]");
    process::exit(2);
}

fn parse_args() -> Config {
    let mut cfg = Config {
        addr: "127.0.0.1:7777".parse().unwrap(),
        workers: None,
        current_thread: false,
        backlog: 1024,
    };
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
                cfg.addr = match v.parse() {
                    Ok(a) => a,
                    Err(_) => {
                        eprintln!("tokio-echo: bad --addr '{}' (want 127.0.0.1:7777 or [::1]:7777)", v);
                        usage();
                    }
                };
            }
            "--workers" => match value().parse::<usize>() {
                Ok(n) if n > 0 => cfg.workers = Some(n),
                _ => {
                    eprintln!("tokio-echo: --workers needs a positive number");
                    usage();
                }
            },
            "--backlog" => match value().parse::<u32>() {
                Ok(n) if n > 0 => cfg.backlog = n,
                _ => {
                    eprintln!("tokio-echo: --backlog needs a positive number");
                    usage();
                }
            },
            "--current-thread" => cfg.current_thread = true,
            "-h" | "--help" => usage(),
            _ => {
                eprintln!("tokio-echo: unknown argument '{}'", a);
                usage();
            }
        }
    }
    if cfg.current_thread && cfg.workers.is_some() {
        eprintln!("tokio-echo: --workers and --current-thread are exclusive");
        usage();
    }
    cfg
}

async fn serve_conn(mut stream: TcpStream) {
    let _ = stream.set_nodelay(true);
    let mut buf = vec![0u8; BUF_SIZE];
    loop {
        let n = match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if stream.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
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

fn bind(cfg: &Config) -> std::io::Result<tokio::net::TcpListener> {
    let socket = if cfg.addr.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
    socket.set_reuseaddr(true)?;
    socket.bind(cfg.addr)?;
    socket.listen(cfg.backlog)
}

fn main() {
    let cfg = parse_args();

    let mut builder = if cfg.current_thread {
        Builder::new_current_thread()
    } else {
        let mut b = Builder::new_multi_thread();
        if let Some(n) = cfg.workers {
            b.worker_threads(n);
        }
        b
    };
    let rt = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("tokio-echo: cannot build runtime: {}", e);
            process::exit(1);
        }
    };

    let result: std::io::Result<&'static str> = rt.block_on(async {
        // Install the handlers before announcing the address, so a signal
        // sent right after the announcement is never missed.
        let shutdown = Shutdown {
            int: signal(SignalKind::interrupt())?,
            term: signal(SignalKind::terminate())?,
        };
        let listener = bind(&cfg)?;
        let local = listener.local_addr()?;
        let mode = if cfg.current_thread {
            "current-thread".to_string()
        } else {
            match cfg.workers {
                Some(n) => format!("multi-thread workers={}", n),
                None => "multi-thread workers=default".to_string(),
            }
        };
        println!("listening on {} ({})", local, mode);
        let _ = std::io::stdout().flush();

        tokio::spawn(async move {
            loop {
                match listener.accept().await {
                    Ok((stream, _)) => {
                        tokio::spawn(serve_conn(stream));
                    }
                    Err(e) => {
                        // Out of descriptors and similar: back off briefly
                        // instead of spinning.
                        eprintln!("tokio-echo: accept: {}", e);
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                }
            }
        });

        Ok(shutdown.await)
    });

    match result {
        Ok(sig) => {
            eprintln!("tokio-echo: {} received, shutting down", sig);
            rt.shutdown_timeout(Duration::from_millis(200));
            process::exit(0);
        }
        Err(e) => {
            eprintln!("tokio-echo: {}: {}", cfg.addr, e);
            process::exit(1);
        }
    }
}
