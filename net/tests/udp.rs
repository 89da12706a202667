//! UDP through processes: send_to/recv_from, connect/send/recv, timeouts, close.
#![cfg(not(loom))]

mod common;

use std::io;
use std::time::{Duration, Instant};

use common::{runtime, watchdog};
use fibra_net::UdpSocket;
use fibra_runtime::FnContext;

#[test]
fn send_to_and_recv_from_between_processes() {
    const DATAGRAMS: u32 = 100;
    watchdog(20, || {
        let rt = runtime();
        rt.block_on(|cx| {
            let server = UdpSocket::bind("127.0.0.1:0").unwrap();
            let server_addr = server.local_addr().unwrap();
            // Answers each datagram with its number doubled, to its sender.
            let echo = cx.spawn_fn(move |_cx: &mut FnContext<'_, ()>| {
                let mut buf = [0; 64];
                for _ in 0..DATAGRAMS {
                    let (n, from) = server.recv_from(&mut buf).unwrap();
                    assert_eq!(n, 4);
                    let value = u32::from_le_bytes(buf[..4].try_into().unwrap());
                    server.send_to(&(value * 2).to_le_bytes(), from).unwrap();
                }
            });
            let client = UdpSocket::bind("127.0.0.1:0").unwrap();
            // Loopback does not lose datagrams at this rate, but a test must not
            // hang if it ever did: the receive is bounded.
            client
                .set_read_timeout(Some(Duration::from_secs(5)))
                .unwrap();
            let mut buf = [0; 64];
            for value in 0..DATAGRAMS {
                client.send_to(&value.to_le_bytes(), server_addr).unwrap();
                let (n, from) = client.recv_from(&mut buf).unwrap();
                assert_eq!(from, server_addr);
                assert_eq!(&buf[..n], &(value * 2).to_le_bytes());
            }
            echo.join().unwrap();
        });
    });
}

#[test]
fn connect_send_and_recv() {
    watchdog(20, || {
        let rt = runtime();
        rt.block_on(|cx| {
            let a = UdpSocket::bind("127.0.0.1:0").unwrap();
            let b = UdpSocket::bind("127.0.0.1:0").unwrap();
            a.connect(b.local_addr().unwrap()).unwrap();
            b.connect(a.local_addr().unwrap()).unwrap();
            assert_eq!(a.peer_addr().unwrap(), b.local_addr().unwrap());
            let receiver = cx.spawn_fn(move |_cx: &mut FnContext<'_, ()>| {
                let mut buf = [0; 16];
                let mut peeked = [0; 16];
                let n = b.peek(&mut peeked).unwrap();
                assert_eq!(b.recv(&mut buf).unwrap(), n);
                assert_eq!(buf[..n], peeked[..n]);
                b.send(&buf[..n]).unwrap();
                buf[..n].to_vec()
            });
            a.send(b"hello").unwrap();
            let mut buf = [0; 16];
            let n = a.recv(&mut buf).unwrap();
            assert_eq!(&buf[..n], b"hello");
            assert_eq!(receiver.join().unwrap(), b"hello");
        });
    });
}

#[test]
fn recv_timeout_and_close_while_suspended() {
    watchdog(20, || {
        let rt = runtime();
        rt.block_on(|cx| {
            let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
            socket
                .set_read_timeout(Some(Duration::from_millis(80)))
                .unwrap();
            let start = Instant::now();
            let err = socket.recv_from(&mut [0; 8]).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::TimedOut);
            assert!(start.elapsed() >= Duration::from_millis(80));

            socket.set_read_timeout(None).unwrap();
            let receiving = socket.try_clone().unwrap();
            let receiver = cx.spawn_fn(move |_cx: &mut FnContext<'_, ()>| {
                receiving.recv_from(&mut [0; 8]).map_err(|e| e.kind())
            });
            cx.sleep(Duration::from_millis(50));
            socket.close();
            assert_eq!(
                receiver.join().unwrap().unwrap_err(),
                io::ErrorKind::NotConnected
            );
        });
    });
}

#[test]
fn udp_on_a_plain_thread() {
    watchdog(20, || {
        let a = UdpSocket::bind("127.0.0.1:0").unwrap();
        let b = UdpSocket::bind("127.0.0.1:0").unwrap();
        let b_addr = b.local_addr().unwrap();
        let receiver = std::thread::spawn(move || {
            let mut buf = [0; 8];
            let (n, _) = b.recv_from(&mut buf).unwrap();
            buf[..n].to_vec()
        });
        a.send_to(b"thread", b_addr).unwrap();
        assert_eq!(receiver.join().unwrap(), b"thread");
    });
}
