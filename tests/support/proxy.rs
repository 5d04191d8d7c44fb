//! A TCP proxy in front of the test database that can lose an answer on
//! purpose: once armed, it forwards the client's next request and then
//! cuts both connections when the server's reply arrives, so the client
//! never learns whether its statement committed (an ambiguous commit).
//!
//! Include it with `#[path = "support/proxy.rs"] mod proxy;`.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;

/// The proxy's switches, shared by its threads.
#[derive(Default)]
struct Switches {
    armed: AtomicBool,
    request_seen: AtomicBool,
    cut: AtomicBool,
}

pub struct Proxy {
    pub port: u16,
    switches: Arc<Switches>,
}

impl Proxy {
    /// Listens on a free loopback port and forwards to `target_port`.
    pub fn start(target_port: u16) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("binding the proxy");
        let port = listener.local_addr().unwrap().port();
        let switches = Arc::new(Switches::default());
        let shared = Arc::clone(&switches);
        thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let Ok(server) = TcpStream::connect(("127.0.0.1", target_port)) else {
                    continue;
                };
                forward_both_ways(client, server, Arc::clone(&shared));
            }
        });
        Proxy { port, switches }
    }

    /// Loses the reply to the next request.
    pub fn arm(&self) {
        self.switches.request_seen.store(false, Ordering::SeqCst);
        self.switches.armed.store(true, Ordering::SeqCst);
    }

    /// Whether a reply was lost since `arm`.
    pub fn has_cut(&self) -> bool {
        self.switches.cut.load(Ordering::SeqCst)
    }
}

fn forward_both_ways(client: TcpStream, server: TcpStream, switches: Arc<Switches>) {
    let (client_in, server_out) = (client.try_clone().unwrap(), server.try_clone().unwrap());
    let requests = Arc::clone(&switches);
    thread::spawn(move || {
        pump(client_in, server_out, |_| {
            if requests.armed.load(Ordering::SeqCst) {
                requests.request_seen.store(true, Ordering::SeqCst);
            }
            true
        })
    });
    thread::spawn(move || {
        let (from, to) = (server, client);
        let (from_copy, to_copy) = (from.try_clone().unwrap(), to.try_clone().unwrap());
        pump(from, to, |_| {
            let lose = switches.armed.load(Ordering::SeqCst)
                && switches.request_seen.load(Ordering::SeqCst);
            if lose {
                switches.armed.store(false, Ordering::SeqCst);
                switches.cut.store(true, Ordering::SeqCst);
                let _ = from_copy.shutdown(Shutdown::Both);
                let _ = to_copy.shutdown(Shutdown::Both);
            }
            !lose
        });
    });
}

/// Copies `from` to `to` while `pass` lets each chunk through.
fn pump(mut from: TcpStream, mut to: TcpStream, mut pass: impl FnMut(&[u8]) -> bool) {
    let mut buffer = [0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buffer) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if !pass(&buffer[..n]) || to.write_all(&buffer[..n]).is_err() {
            break;
        }
    }
    let _ = to.shutdown(Shutdown::Write);
}
