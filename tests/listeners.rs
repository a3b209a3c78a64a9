//! The two listeners of the real `mapscope` binary under slow, careless and
//! hostile clients, each fault reproduced as a client would on 127.0.0.1:
//! raw sockets where framing or timing matters, reqwest elsewhere. Short
//! bounds are set by flags (a 1 s header timeout) so each test is quick;
//! assertions are about behaviour (the server closed the connection, the
//! status, the JSON body, RSS under budget), never about wall time, and
//! every wait is bounded by [`WAIT`].

// Drives the sidecar (its binary or its ingest endpoint): `--features sidecar`.
#![cfg(feature = "sidecar")]

mod common {
    pub(crate) mod blocking;
    pub(crate) mod e2e;
    pub(crate) mod exposition;
    pub(crate) mod poll;
    pub(crate) mod process;
    pub(crate) mod run;
    pub(crate) mod wait;
}

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use common::blocking::{blocking_client, scrape_blocking};
use common::e2e::e2e_required;
use common::poll::poll;
use common::process::{mapscope_command, start_mapscope, MapscopeProcess};
use common::run::run;
use common::wait::WAIT;
use serde_json::{json, Value};

const TOKEN: &str = "listener-test-token";

/// The sidecar on ephemeral loopback ports, with `extra` flags.
fn sidecar(extra: &[&str]) -> Sidecar {
    let mut args = vec![
        "sidecar",
        "--listen",
        "127.0.0.1:0",
        "--ingest-listen",
        "127.0.0.1:0",
    ];
    args.extend_from_slice(extra);
    let process = start_mapscope(&args);
    let http = address_of(&process.url);
    let ingest = address_of(&process.ingest_url());
    Sidecar {
        process,
        http,
        ingest,
    }
}

struct Sidecar {
    process: MapscopeProcess,
    http: SocketAddr,
    ingest: SocketAddr,
}

impl Sidecar {
    fn http_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.http)
    }

    fn ingest_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.ingest)
    }

    fn metrics(&self) -> common::exposition::Exposition {
        scrape_blocking(&self.http_url(""))
    }
}

/// `127.0.0.1:PORT` out of `http://127.0.0.1:PORT/...`.
fn address_of(url: &str) -> SocketAddr {
    let rest = url.strip_prefix("http://").expect("an http:// URL");
    let authority = rest.split('/').next().expect("an authority");
    authority
        .parse()
        .unwrap_or_else(|e| panic!("{authority}: {e}"))
}

fn connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    stream.set_read_timeout(Some(WAIT)).expect("read timeout");
    stream.set_write_timeout(Some(WAIT)).expect("write timeout");
    stream
}

/// A valid protocol v1 report, as bytes.
fn report(seq: u64) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "source": {"app": "listeners", "instance": "test"},
        "seq": seq,
        "interval_seconds": 10,
        "maps": [],
    }))
    .expect("json")
}

/// The head of a `POST /v1/report` announcing `length` bytes.
fn report_head(authorization: Option<&str>, length: usize) -> String {
    let mut head = format!(
        "POST /v1/report HTTP/1.1\r\nHost: sidecar\r\nContent-Type: application/json\r\nContent-Length: {length}\r\n"
    );
    if let Some(value) = authorization {
        head.push_str(&format!("Authorization: {value}\r\n"));
    }
    head.push_str("\r\n");
    head
}

/// One response read off a raw socket.
#[derive(Debug)]
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "{e}: the body is not JSON: {:?}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    /// Asserts an ingest error answer: JSON, the `{error, field, limit}`
    /// shape, and `error` mentioning `mention`.
    fn assert_error(&self, status: u16, mention: &str) -> Value {
        assert_eq!(self.status, status, "{self:?}");
        assert_eq!(self.header("content-type"), Some("application/json"));
        let body = self.json();
        let object = body.as_object().expect("an object");
        let keys: Vec<&str> = object.keys().map(String::as_str).collect();
        assert_eq!(keys, ["error", "field", "limit"], "{body}");
        let error = body["error"].as_str().expect("error is a string");
        assert!(error.contains(mention), "{error:?} lacks {mention:?}");
        body
    }
}

/// Reads one response: its head, then `Content-Length` bytes of body.
fn read_answer(stream: &mut TcpStream) -> Answer {
    let mut bytes = Vec::new();
    let mut buf = [0u8; 4096];
    let head_end = loop {
        if let Some(at) = bytes.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        let n = stream
            .read(&mut buf)
            .unwrap_or_else(|e| panic!("no answer: {e} (read so far: {bytes:?})"));
        assert!(n > 0, "the connection closed before an answer: {bytes:?}");
        bytes.extend_from_slice(&buf[..n]);
    };
    let head = String::from_utf8_lossy(&bytes[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().expect("a status line");
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let length: usize = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = bytes[head_end..].to_vec();
    while body.len() < length {
        let n = stream.read(&mut buf).expect("read the body");
        assert!(n > 0, "the connection closed inside the body");
        body.extend_from_slice(&buf[..n]);
    }
    body.truncate(length);
    Answer {
        status,
        headers,
        body,
    }
}

/// Asserts that the server closes `stream` (EOF or reset) within [`WAIT`],
/// reading and dropping whatever it still sends.
fn assert_closed_by_server(stream: &mut TcpStream, what: &str) {
    let deadline = Instant::now() + WAIT;
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return,
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted
                ) =>
            {
                return
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                panic!("{what}: the server did not close the connection within {WAIT:?}")
            }
            Err(e) => panic!("{what}: {e}"),
        }
        assert!(
            Instant::now() < deadline,
            "{what}: the server kept the connection open past {WAIT:?}"
        );
    }
}

/// POSTs a report with `authorization` and returns the status.
fn post_report(sidecar: &Sidecar, authorization: Option<&str>, seq: u64) -> u16 {
    let mut request = blocking_client()
        .post(sidecar.ingest_url("/v1/report"))
        .header("Content-Type", "application/json")
        .body(report(seq));
    if let Some(value) = authorization {
        request = request.header("Authorization", value);
    }
    request
        .send()
        .unwrap_or_else(|e| panic!("POST /v1/report: {e}"))
        .status()
        .as_u16()
}

fn healthz(sidecar: &Sidecar) -> Option<u16> {
    blocking_client()
        .get(sidecar.http_url("/healthz"))
        .send()
        .ok()
        .map(|r| r.status().as_u16())
}

// ---------------------------------------------------------------------------
// Timeouts
// ---------------------------------------------------------------------------

#[test]
fn slowloris_is_closed_at_the_header_timeout_while_both_ports_answer() {
    let sidecar = sidecar(&["--header-timeout", "1"]);
    for (port, addr) in [("http", sidecar.http), ("ingest", sidecar.ingest)] {
        let mut slow = connect(addr);
        slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: sidecar\r\n")
            .expect("start the request");
        // A header line every 200 ms, five per header timeout: trickling
        // must not reset the clock. The trickle stops when writes fail.
        let mut trickle = slow.try_clone().expect("clone the socket");
        let trickler = thread::spawn(move || {
            for i in 0..(WAIT.as_millis() / 200) {
                if trickle
                    .write_all(format!("X-Slow-{i}: 1\r\n").as_bytes())
                    .is_err()
                {
                    return;
                }
                thread::sleep(Duration::from_millis(200));
            }
        });
        assert_eq!(healthz(&sidecar), Some(200), "{port}: /healthz while slow");
        assert_eq!(
            post_report(&sidecar, None, 1),
            200,
            "{port}: ingest while slow"
        );
        assert_closed_by_server(&mut slow, &format!("{port}: slowloris"));
        trickler.join().expect("the trickler");
    }
}

#[test]
fn idle_keep_alive_connections_are_closed() {
    let sidecar = sidecar(&["--header-timeout", "1"]);
    let mut main = connect(sidecar.http);
    main.write_all(b"GET /healthz HTTP/1.1\r\nHost: sidecar\r\n\r\n")
        .expect("send");
    assert_eq!(read_answer(&mut main).status, 200);
    assert_closed_by_server(&mut main, "http: idle keep-alive");

    let mut ingest = connect(sidecar.ingest);
    let body = report(1);
    ingest
        .write_all(report_head(None, body.len()).as_bytes())
        .expect("send the head");
    ingest.write_all(&body).expect("send the body");
    assert_eq!(read_answer(&mut ingest).status, 200);
    assert_closed_by_server(&mut ingest, "ingest: idle keep-alive");
}

#[test]
fn a_body_announced_and_never_sent_is_closed_at_the_body_timeout() {
    let sidecar = sidecar(&["--body-timeout", "1", "--ingest-token", TOKEN]);
    let mut stream = connect(sidecar.ingest);
    stream
        .write_all(report_head(Some(&format!("Bearer {TOKEN}")), 1024 * 1024).as_bytes())
        .expect("send the head");
    let answer = read_answer(&mut stream);
    let body = answer.assert_error(408, "--body-timeout");
    assert_eq!(body["limit"], json!(1));
    assert_closed_by_server(&mut stream, "ingest: body never sent");

    // The main listener reads no bodies: it answers and closes.
    let mut stream = connect(sidecar.http);
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: sidecar\r\nContent-Length: 1048576\r\n\r\n")
        .expect("send the head");
    assert_eq!(read_answer(&mut stream).status, 200);
    assert_closed_by_server(&mut stream, "http: body never sent");

    let metrics = sidecar.metrics();
    assert_eq!(
        metrics.value(
            "mapscope_ingest_rejected_total",
            &[("reason", "body_timeout")]
        ),
        1.0
    );
}

#[test]
fn a_head_over_the_header_limit_is_431_and_closed() {
    let sidecar = sidecar(&["--max-header-bytes", "8192"]);
    for addr in [sidecar.http, sidecar.ingest] {
        let mut stream = connect(addr);
        let padding = "a".repeat(9000);
        stream
            .write_all(
                format!("GET /healthz HTTP/1.1\r\nHost: sidecar\r\nX-Pad: {padding}\r\n\r\n")
                    .as_bytes(),
            )
            .expect("send");
        assert_eq!(read_answer(&mut stream).status, 431);
        assert_closed_by_server(&mut stream, "after 431");
    }
    // A head just under the limit is served.
    let response = blocking_client()
        .get(sidecar.http_url("/healthz"))
        .header("X-Pad", "a".repeat(7000))
        .send()
        .expect("send");
    assert_eq!(response.status(), 200);
}

#[test]
fn connections_past_the_limit_are_closed_at_once() {
    let sidecar = sidecar(&["--max-connections", "3", "--header-timeout", "60"]);
    // Three served keep-alive connections hold every place.
    let mut held: Vec<TcpStream> = (0..3)
        .map(|_| {
            let mut stream = connect(sidecar.http);
            stream
                .write_all(b"GET /healthz HTTP/1.1\r\nHost: sidecar\r\n\r\n")
                .expect("send");
            assert_eq!(read_answer(&mut stream).status, 200);
            stream
        })
        .collect();
    let mut fourth = connect(sidecar.http);
    assert_closed_by_server(&mut fourth, "a fourth connection over --max-connections 3");
    // Each listener has its own places.
    assert_eq!(post_report(&sidecar, None, 1), 200);
    // A place freed is a place taken again.
    held.pop();
    poll(WAIT, "/healthz once a place is free", || {
        (healthz(&sidecar) == Some(200)).then_some(())
    });
}

// ---------------------------------------------------------------------------
// Authentication before the body
// ---------------------------------------------------------------------------

#[test]
fn unauthenticated_requests_are_answered_before_their_body() {
    // With a 60 s body timeout, an answer within WAIT proves the server
    // did not wait for the 1 MiB it was promised.
    let sidecar = sidecar(&["--ingest-token", TOKEN, "--body-timeout", "60"]);
    for authorization in [None, Some("Bearer wrong-token"), Some("Basic bm8=")] {
        let mut stream = connect(sidecar.ingest);
        stream
            .write_all(report_head(authorization, 1024 * 1024).as_bytes())
            .expect("send the head");
        let answer = read_answer(&mut stream);
        let body = answer.assert_error(401, "Authorization: Bearer");
        assert_eq!(body["field"], json!("Authorization"));
        assert_eq!(answer.header("www-authenticate"), Some("Bearer"));
    }
}

#[test]
fn the_bearer_scheme_is_case_insensitive() {
    let sidecar = sidecar(&["--ingest-token", TOKEN]);
    for (seq, scheme) in ["Bearer", "bearer", "BEARER", "bEaReR"]
        .into_iter()
        .enumerate()
    {
        let status = post_report(&sidecar, Some(&format!("{scheme} {TOKEN}")), seq as u64 + 1);
        assert_eq!(status, 200, "{scheme}");
    }
    for wrong in [
        format!("Bearer {TOKEN}x"),
        format!("Bearer{TOKEN}"),
        format!("Token {TOKEN}"),
        "Bearer".to_owned(),
    ] {
        assert_eq!(post_report(&sidecar, Some(&wrong), 10), 401, "{wrong}");
    }
}

#[test]
fn an_empty_token_is_refused_at_start() {
    let base = [
        "sidecar",
        "--listen",
        "127.0.0.1:0",
        "--ingest-listen",
        "127.0.0.1:0",
    ];
    let by_flag = {
        let mut command = mapscope_command();
        command.args(base).args(["--ingest-token", ""]);
        command
    };
    let by_env = {
        let mut command = mapscope_command();
        command.args(base).env("MAPSCOPE_INGEST_TOKEN", "");
        command
    };
    for (how, command) in [("flag", by_flag), ("env", by_env)] {
        let output = run(command, WAIT);
        assert!(
            !output.status.success(),
            "{how}: started with an empty token"
        );
        for name in ["--ingest-token", "MAPSCOPE_INGEST_TOKEN", "empty"] {
            assert!(
                output.stderr.contains(name),
                "{how}: stderr does not name {name}: {}",
                output.stderr
            );
        }
    }
}

#[test]
fn ingest_on_a_non_loopback_address_without_a_token_is_warned_about() {
    let process = start_mapscope(&[
        "sidecar",
        "--listen",
        "127.0.0.1:0",
        "--ingest-listen",
        "0.0.0.0:0",
    ]);
    poll(WAIT, "a warning about ingest without a token", || {
        let stderr = process.stderr_text();
        (stderr.contains("WARN")
            && stderr.contains("non-loopback")
            && stderr.contains("--ingest-token"))
        .then_some(())
    });
}

// ---------------------------------------------------------------------------
// A readable 413, framing, JSON everywhere
// ---------------------------------------------------------------------------

#[test]
fn a_content_length_over_the_limit_is_413_before_reading() {
    let sidecar = sidecar(&["--max-body-bytes", "1024", "--body-timeout", "60"]);
    let mut stream = connect(sidecar.ingest);
    stream
        .write_all(report_head(None, 1025).as_bytes())
        .expect("send the head");
    let body = read_answer(&mut stream).assert_error(413, "--max-body-bytes");
    assert_eq!(body["limit"], json!(1024));
}

/// Python's urllib and most scripts write the whole body before reading:
/// the answer must still reach them, not a reset.
#[test]
fn a_client_writing_a_whole_8_mb_body_reads_the_answer() {
    let sidecar = sidecar(&["--ingest-token", TOKEN]);
    let body = vec![b' '; 8 * 1024 * 1024];
    let good = format!("Bearer {TOKEN}");
    for (authorization, status, mention) in [
        (Some(good.as_str()), 413, "--max-body-bytes"),
        (Some("Bearer wrong"), 401, "Authorization"),
    ] {
        let mut stream = connect(sidecar.ingest);
        stream
            .write_all(report_head(authorization, body.len()).as_bytes())
            .expect("send the head");
        stream
            .write_all(&body)
            .unwrap_or_else(|e| panic!("{status}: writing the body failed: {e}"));
        read_answer(&mut stream).assert_error(status, mention);
        if status == 413 {
            // Drained whole, the body leaves the connection usable.
            let report = report(1);
            stream
                .write_all(report_head(authorization, report.len()).as_bytes())
                .and_then(|()| stream.write_all(&report))
                .expect("a second request on the connection");
            assert_eq!(read_answer(&mut stream).status, 200);
        }
    }
    // The same without Content-Length: a chunked body over the limit.
    let mut stream = connect(sidecar.ingest);
    stream
        .write_all(
            format!(
                "POST /v1/report HTTP/1.1\r\nHost: sidecar\r\nContent-Type: application/json\r\nAuthorization: {good}\r\nTransfer-Encoding: chunked\r\n\r\n"
            )
            .as_bytes(),
        )
        .expect("send the head");
    for chunk in body.chunks(64 * 1024) {
        stream
            .write_all(format!("{:x}\r\n", chunk.len()).as_bytes())
            .and_then(|()| stream.write_all(chunk))
            .and_then(|()| stream.write_all(b"\r\n"))
            .expect("write a chunk");
    }
    stream.write_all(b"0\r\n\r\n").expect("end the body");
    read_answer(&mut stream).assert_error(413, "--max-body-bytes");
}

#[test]
fn discarding_an_unread_body_is_bounded() {
    let sidecar = sidecar(&["--ingest-token", TOKEN, "--drain-max-bytes", "65536"]);
    let mut stream = connect(sidecar.ingest);
    stream
        .write_all(report_head(Some("Bearer wrong"), 64 * 1024 * 1024).as_bytes())
        .expect("send the head");
    // Past 64 KiB the server stops reading and closes: the rest of the
    // 64 MiB cannot be written.
    let chunk = vec![b' '; 64 * 1024];
    let refused = (0..1024).any(|_| stream.write_all(&chunk).is_err());
    assert!(refused, "the server read 64 MiB past a 64 KiB drain bound");
}

#[test]
fn malformed_chunked_framing_is_400_not_413() {
    let sidecar = sidecar(&[]);
    let mut stream = connect(sidecar.ingest);
    stream
        .write_all(
            b"POST /v1/report HTTP/1.1\r\nHost: sidecar\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\nZZZ\r\n{}\r\n0\r\n\r\n",
        )
        .expect("send");
    read_answer(&mut stream).assert_error(400, "framing");
    assert_closed_by_server(&mut stream, "after malformed framing");
    let metrics = sidecar.metrics();
    assert_eq!(
        metrics.value(
            "mapscope_ingest_rejected_total",
            &[("reason", "malformed_body")]
        ),
        1.0
    );
}

#[test]
fn not_found_and_method_not_allowed_are_json_and_counted() {
    let sidecar = sidecar(&[]);
    let client = blocking_client();
    let answers = [
        (client.get(sidecar.ingest_url("/v1/report")), 405),
        (client.put(sidecar.ingest_url("/v1/report")), 405),
        (client.post(sidecar.ingest_url("/v1/nope")), 404),
        (client.get(sidecar.ingest_url("/")), 404),
    ];
    for (request, status) in answers {
        let response = request.send().expect("send");
        assert_eq!(response.status().as_u16(), status);
        assert_eq!(
            response.headers()["content-type"].to_str().ok(),
            Some("application/json")
        );
        if status == 405 {
            assert_eq!(response.headers()["allow"].to_str().ok(), Some("POST"));
        }
        let body: Value = response.json().expect("a JSON body");
        assert!(
            body["error"].as_str().is_some_and(|e| e.contains("POST")),
            "{body}"
        );
        assert_eq!(body["field"], Value::Null);
        assert_eq!(body["limit"], Value::Null);
    }
    let metrics = sidecar.metrics();
    for (code, reason, count) in [
        ("404", "not_found", 2.0),
        ("405", "method_not_allowed", 2.0),
    ] {
        assert_eq!(
            metrics.value("mapscope_ingest_requests_total", &[("code", code)]),
            count
        );
        assert_eq!(
            metrics.value("mapscope_ingest_rejected_total", &[("reason", reason)]),
            count
        );
    }
}

// ---------------------------------------------------------------------------
// Response headers of the main listener
// ---------------------------------------------------------------------------

#[test]
fn answers_are_nosniff_and_the_page_has_a_restrictive_csp() {
    let sidecar = sidecar(&[]);
    let client = blocking_client();
    for path in ["/", "/metrics", "/healthz", "/readyz", "/api/v1/maps"] {
        let response = client.get(sidecar.http_url(path)).send().expect("send");
        assert_eq!(response.status(), 200, "{path}");
        assert_eq!(
            response.headers()["x-content-type-options"].to_str().ok(),
            Some("nosniff"),
            "{path}"
        );
    }
    let page = client.get(sidecar.http_url("/")).send().expect("send");
    let csp = page.headers()["content-security-policy"]
        .to_str()
        .expect("ASCII")
        .to_owned();
    let html = page.text().expect("the page");
    assert!(csp.contains("default-src 'none'"), "{csp}");
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    // The page needs its inline style and nothing else: no script, no
    // image, no font, no fetch.
    assert!(html.contains("<style>"), "the page lost its style");
    assert!(
        !html.contains("<script"),
        "a script would be blocked by {csp}"
    );
    for allowed in ["script-src", "img-src", "connect-src", "unsafe-eval"] {
        assert!(!csp.contains(allowed), "{csp} allows {allowed}");
    }
    let missing = client
        .post(sidecar.ingest_url("/nope"))
        .send()
        .expect("send");
    assert_eq!(
        missing.headers()["x-content-type-options"].to_str().ok(),
        Some("nosniff")
    );
}

// ---------------------------------------------------------------------------
// Memory under many clients
// ---------------------------------------------------------------------------

/// The sidecar's peak resident memory so far, in bytes (`VmHWM`).
fn peak_rss(pid: u32) -> u64 {
    let status =
        std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read /proc/PID/status");
    let line = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .expect("a VmHWM line");
    let kib: u64 = line
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .expect("VmHWM in kB");
    kib * 1024
}

/// The budget for the sidecar's resident memory.
const RSS_BUDGET: u64 = 128 * 1024 * 1024;

/// 200 connections each send 1 MiB - 1 byte with a wrong token and hold:
/// the answer comes first, the bodies are discarded as they arrive, and
/// nothing is buffered.
#[test]
fn wrong_token_bodies_are_not_buffered() {
    if !cfg!(target_os = "linux") {
        eprintln!("SKIPPED: reads /proc/PID/status");
        return;
    }
    let sidecar = sidecar(&["--ingest-token", TOKEN]);
    let body = vec![b' '; 1024 * 1024 - 1];
    let held: Vec<TcpStream> = (0..200)
        .map(|_| {
            let mut stream = connect(sidecar.ingest);
            stream
                .write_all(report_head(Some("Bearer wrong"), body.len()).as_bytes())
                .expect("send the head");
            stream.write_all(&body).expect("send the body");
            read_answer(&mut stream).assert_error(401, "Authorization");
            stream
        })
        .collect();
    let peak = peak_rss(sidecar.process.pid());
    eprintln!(
        "peak RSS with 200 wrong-token 1 MiB bodies held: {} MiB",
        peak >> 20
    );
    assert!(peak < RSS_BUDGET, "peak RSS {} MiB", peak >> 20);
    drop(held);
}

/// 2,000 slowloris connections on each port, a header line every 10 s:
/// the server closes every one of them at the header timeout, `/healthz`,
/// `/metrics` and ingest answer all along, and RSS stays in budget.
#[test]
fn two_thousand_slowloris_per_port_within_budget() {
    if !e2e_required() {
        eprintln!();
        eprintln!("================================================================");
        eprintln!("SKIPPED: 2,000 slowloris connections per port take ~30 s;");
        eprintln!("set MAPSCOPE_REQUIRE_E2E=1 to run it (CI does)");
        eprintln!("================================================================");
        eprintln!();
        return;
    }
    const PER_PORT: usize = 2000;
    const LINE_EVERY: Duration = Duration::from_secs(10);
    // The default limits, except a header timeout short enough for a test
    // and longer than the line interval, so the trickle is tried.
    let sidecar = sidecar(&["--header-timeout", "15"]);
    let mut slow: Vec<TcpStream> = Vec::with_capacity(2 * PER_PORT);
    for addr in [sidecar.http, sidecar.ingest] {
        for _ in 0..PER_PORT {
            let mut stream = connect(addr);
            stream
                .write_all(b"POST /v1/report HTTP/1.1\r\nHost: sidecar\r\n")
                .expect("start a slow request");
            stream.set_nonblocking(true).expect("non-blocking");
            slow.push(stream);
        }
    }
    let opened = Instant::now();
    let mut answered = 0;
    let mut next_line = opened + LINE_EVERY;
    let deadline = opened + Duration::from_secs(60);
    let mut open = slow.len();
    while open > 0 {
        assert!(
            Instant::now() < deadline,
            "{open} of {} slow connections still open after 60 s",
            slow.len()
        );
        assert_eq!(healthz(&sidecar), Some(200), "/healthz under slowloris");
        let metrics = blocking_client()
            .get(sidecar.http_url("/metrics"))
            .send()
            .map(|r| r.status().as_u16());
        assert_eq!(metrics.ok(), Some(200), "/metrics under slowloris");
        assert_eq!(
            post_report(&sidecar, None, answered + 1),
            200,
            "ingest under slowloris"
        );
        answered += 1;
        let send_line = Instant::now() >= next_line;
        if send_line {
            next_line += LINE_EVERY;
        }
        open = 0;
        for stream in &mut slow {
            let mut buf = [0u8; 512];
            let closed = match stream.read(&mut buf) {
                Ok(0) => true,
                Ok(_) => false,
                Err(e) if e.kind() == ErrorKind::WouldBlock => false,
                Err(_) => true,
            };
            if closed {
                continue;
            }
            if send_line {
                let _ = stream.write_all(b"X-Slow: 1\r\n");
            }
            open += 1;
        }
        thread::sleep(Duration::from_millis(500));
    }
    let peak = peak_rss(sidecar.process.pid());
    eprintln!(
        "2 x {PER_PORT} slowloris connections: all closed by the server after {:?}, {answered} rounds of /healthz, /metrics and ingest answered, peak RSS {} MiB",
        opened.elapsed(),
        peak >> 20
    );
    assert!(peak < RSS_BUDGET, "peak RSS {} MiB", peak >> 20);
}

/// Container runtimes often start a process with a soft limit of 1,024
/// open files, below two listeners' worth of connections: the sidecar
/// raises it to the hard limit, and warns when even that is short.
#[test]
#[cfg(target_os = "linux")]
fn the_open_files_limit_is_raised_and_a_shortfall_warned_about() {
    use std::io::BufRead;
    use std::process::{Command, Stdio};

    let mut command = Command::new("sh");
    command
        .arg("-c")
        .arg("ulimit -Sn 256 && ulimit -Hn 1000 && exec \"$0\" \"$@\"")
        .arg(common::process::mapscope_bin())
        .args([
            "sidecar",
            "--listen",
            "127.0.0.1:0",
            "--ingest-listen",
            "127.0.0.1:0",
        ]);
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("MAPSCOPE_") {
            command.env_remove(key);
        }
    }
    let mut child = command
        .env("MAPSCOPE_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn sh");
    let (tx, rx) = std::sync::mpsc::channel();
    let stderr = child.stderr.take().expect("piped stderr");
    thread::spawn(move || {
        for line in std::io::BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            let _ = tx.send(line);
        }
    });
    let deadline = Instant::now() + WAIT;
    let mut warned = None;
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        match rx.recv_timeout(left) {
            Ok(line) if line.contains("open-files limit") => {
                warned = Some(line);
                break;
            }
            Ok(_) => {}
            Err(_) => break,
        }
    }
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", child.id()));
    let _ = child.kill();
    let _ = common::wait::wait_bounded(&mut child, WAIT);
    assert!(warned.is_some(), "no warning about the open-files limit");
    let limits = limits.expect("read /proc/PID/limits");
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .expect("a Max open files line");
    let fields: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(
        &fields[3..5],
        ["1000", "1000"],
        "soft limit not raised: {line}"
    );
}

// ---------------------------------------------------------------------------
// Documentation
// ---------------------------------------------------------------------------

/// Every listener flag is in `--help` with its variable, and in the README's
/// configuration table and docs/protocol.md's limits table with its
/// default.
#[test]
fn every_listener_flag_is_documented_with_its_default() {
    let help = run(
        {
            let mut command = mapscope_command();
            command.args(["sidecar", "--help"]);
            command
        },
        WAIT,
    );
    assert!(help.status.success(), "{}", help.stderr);
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(root.join("README.md")).expect("README.md");
    let protocol =
        std::fs::read_to_string(root.join("docs/protocol.md")).expect("docs/protocol.md");
    for (flag, env, default) in [
        ("--header-timeout", "MAPSCOPE_HEADER_TIMEOUT", "20"),
        ("--max-header-bytes", "MAPSCOPE_MAX_HEADER_BYTES", "8192"),
        ("--max-connections", "MAPSCOPE_MAX_CONNECTIONS", "2048"),
        ("--body-timeout", "MAPSCOPE_BODY_TIMEOUT", "30"),
        ("--drain-max-bytes", "MAPSCOPE_DRAIN_MAX_BYTES", "16777216"),
        ("--drain-timeout", "MAPSCOPE_DRAIN_TIMEOUT", "10"),
    ] {
        assert!(help.stdout.contains(flag), "--help has no {flag}");
        assert!(help.stdout.contains(env), "--help has no {env}");
        assert!(
            help.stdout.contains(&format!("[default: {default}]")),
            "--help does not give {flag} the default {default}"
        );
        let row = format!("| `{flag}` | `{env}` | `{default}` |");
        assert!(readme.contains(&row), "README.md has no row {row}");
        let line = protocol
            .lines()
            .find(|line| line.starts_with('|') && line.contains(&format!("`{flag}`")))
            .unwrap_or_else(|| panic!("docs/protocol.md has no limits row for {flag}"));
        assert!(line.contains(env), "docs/protocol.md: {flag} without {env}");
        assert!(
            line.contains(default),
            "docs/protocol.md: {flag} without its default {default}"
        );
    }
}
