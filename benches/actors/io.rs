//! What the IO workloads (`blocking`, `tcp_echo`, `idle_cpu`) share between the runtimes: their
//! sizes, the bytes a `tcp_echo` client sends, and the checks and metrics computed from
//! what the drivers saw.

use std::time::Duration;

/// Processes calling into the blocking pool at once in `blocking`. More than the
/// workers, so that calls overlap and the pool runs several threads, as it does under
/// a server's file IO; picked out of thin air.
pub const BLOCKING_PROCESSES: u64 = 8;
/// Calls each `blocking` process makes, one after another.
pub const BLOCKING_CALLS: u64 = 20_000;

/// Client connections in `tcp_echo`.
pub const TCP_ECHO_CLIENTS: u64 = 100;
/// Request/response round trips each `tcp_echo` client makes.
pub const TCP_ECHO_REQUESTS: u64 = 10_000;
/// Bytes in a `tcp_echo` request, and in its response.
pub const TCP_ECHO_SIZE: usize = 64;
/// The longest a `tcp_echo` client waits for one response before the run fails. A
/// response comes within milliseconds even at full load; one that takes this long is
/// lost, not slow.
pub const TCP_ECHO_PATIENCE: Duration = Duration::from_secs(10);

/// How long `idle_cpu` watches an idle runtime's CPU time.
pub const IDLE_WATCH: Duration = Duration::from_secs(10);
/// Idle connections in the second `idle_cpu` case.
pub const IDLE_CONNECTIONS: usize = 1_000;

/// Connects `n` plain (blocking, outside any runtime) sockets to `addr` and waits
/// until the server has accepted them all (`accepted` counts them).
pub fn connect_idle_clients(
    addr: std::net::SocketAddr,
    n: usize,
    accepted: &std::sync::atomic::AtomicUsize,
) -> Vec<std::net::TcpStream> {
    let clients: Vec<_> = (0..n)
        .map(|_| std::net::TcpStream::connect(addr).expect("connecting an idle client"))
        .collect();
    let start = std::time::Instant::now();
    while accepted.load(std::sync::atomic::Ordering::SeqCst) < n {
        assert!(
            start.elapsed() < TCP_ECHO_PATIENCE,
            "the server did not accept every idle client"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    clients
}

/// Watches this process's CPU time for [`IDLE_WATCH`] while nothing happens, and
/// reports it as a share of one core.
pub fn idle_cpu() -> String {
    // Let the start-up settle first (threads parking, the first timer turns).
    std::thread::sleep(Duration::from_millis(500));
    let before = super::memory::cpu_time();
    let start = std::time::Instant::now();
    std::thread::sleep(IDLE_WATCH);
    let used = super::memory::cpu_time().saturating_sub(before);
    format!(
        "cpu_pct={:.2}",
        100.0 * used.as_secs_f64() / start.elapsed().as_secs_f64()
    )
}

/// The calls per second of a `blocking` run that took `elapsed` for all its calls.
/// Each call's result was checked by its caller as it came.
pub fn blocking(elapsed: Duration) -> String {
    let calls = BLOCKING_PROCESSES * BLOCKING_CALLS;
    format!("calls_per_sec={:.0}", calls as f64 / elapsed.as_secs_f64())
}

/// Request `seq` of client `client`: the two numbers, then a pattern that depends on
/// both, so that a response carrying another request's bytes, or bytes out of order,
/// fails the client's comparison.
pub fn tcp_echo_request(client: u64, seq: u64) -> [u8; TCP_ECHO_SIZE] {
    let mut request = [0u8; TCP_ECHO_SIZE];
    request[..8].copy_from_slice(&client.to_le_bytes());
    request[8..16].copy_from_slice(&seq.to_le_bytes());
    for (i, byte) in request.iter_mut().enumerate().skip(16) {
        *byte = (client as usize + seq as usize * 7 + i) as u8;
    }
    request
}

/// What a tcp_echo run saw.
pub struct TcpEchoOutcome {
    /// From spawning the first client to the last client's last response.
    pub elapsed: Duration,
    /// Responses that came back equal to their request, over all clients.
    pub echoed: u64,
}

/// Checks that every request came back, and returns the request rate.
pub fn tcp_echo(outcome: TcpEchoOutcome) -> String {
    let requests = TCP_ECHO_CLIENTS * TCP_ECHO_REQUESTS;
    assert_eq!(outcome.echoed, requests, "responses went missing");
    let cpu = super::memory::cpu_time();
    format!(
        "clients={TCP_ECHO_CLIENTS} requests={requests} req_per_sec={:.0} cpu_us_per_req={:.2}",
        requests as f64 / outcome.elapsed.as_secs_f64(),
        cpu.as_secs_f64() * 1e6 / requests as f64
    )
}
