//! Tests against a real ingest server on loopback.

use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use bytes::Bytes;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::*;
use crate::connector::http::test_util::{answer, guard, raw_exchange};
use crate::connector::http::{HttpClient, HttpClientConfig, Response};

/// An admission with a settable amount of room that records what it took.
#[derive(Default)]
struct Room {
    room: AtomicUsize,
    offers: AtomicUsize,
    hint: Option<Duration>,
    /// Whether what does not fit is dropped (`Rest::Dropped`) rather than deferred.
    drops: bool,
    taken: Mutex<Vec<Value>>,
    dead: Mutex<Vec<(usize, LineError, String)>>,
}

impl Room {
    fn with_room(room: usize) -> Arc<Self> {
        Arc::new(Self {
            room: AtomicUsize::new(room),
            hint: Some(Duration::from_millis(1500)),
            ..Self::default()
        })
    }
    fn taken(&self) -> Vec<Value> {
        self.taken.lock().expect("test lock").clone()
    }
    fn dead_lines(&self) -> Vec<usize> {
        self.dead
            .lock()
            .expect("test lock")
            .iter()
            .map(|d| d.0)
            .collect()
    }
}

impl Admission for Room {
    fn offer(&self, records: &mut VecDeque<Value>) -> Rest {
        self.offers.fetch_add(1, Ordering::Relaxed);
        let room = self.room.load(Ordering::Relaxed);
        let take = room.min(records.len());
        self.room.store(room - take, Ordering::Relaxed);
        self.taken
            .lock()
            .expect("test lock")
            .extend(records.drain(..take));
        if self.drops {
            Rest::Dropped(self.hint)
        } else {
            Rest::Deferred(self.hint)
        }
    }

    fn dead_letter(&self, line: usize, error: &LineError, raw: &str) {
        self.dead
            .lock()
            .expect("test lock")
            .push((line, error.clone(), raw.to_owned()));
    }
}

fn config() -> IngestConfig {
    IngestConfig {
        addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        ..IngestConfig::default()
    }
}

struct Harness {
    server: IngestServer,
    client: HttpClient,
}

impl Harness {
    fn start(config: IngestConfig, admission: Arc<dyn Admission>) -> Self {
        let server = IngestServer::bind(config, admission).expect("bind on loopback");
        Self {
            server,
            client: HttpClient::new(HttpClientConfig::default()),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.server.local_addr())
    }

    async fn ingest(&self, body: &str) -> Response {
        let url = self.url("/ingest");
        let sent = self.client.post(
            &url,
            "application/x-ndjson",
            Bytes::from(body.to_owned()),
            Duration::from_secs(5),
        );
        answer(guard(sent).await)
    }
}

fn reply(response: &Response) -> IngestReply {
    response.json().expect("the answer carries an IngestReply")
}

#[tokio::test]
async fn accepts_every_record_with_202() {
    let room = Room::with_room(10);
    let h = Harness::start(config(), room.clone());
    let response = h.ingest("{\"a\":1}\n{\"a\":2}\n\n{\"a\":3}\n").await;

    assert_eq!(response.status, StatusCode::ACCEPTED);
    assert_eq!(response.retry_after, None);
    assert_eq!(
        reply(&response),
        IngestReply {
            accepted: 3,
            deferred: 0,
            dropped: 0,
            resume_at_line: None,
            rejected_total: 0,
            rejected: vec![],
            retry_after_ms: None
        }
    );
    assert_eq!(
        room.taken(),
        vec![json!({"a": 1}), json!({"a": 2}), json!({"a": 3})]
    );
    let stats = h.server.stats();
    assert_eq!(
        (
            stats.requests,
            stats.records_accepted,
            stats.records_deferred
        ),
        (1, 3, 0)
    );
}

#[tokio::test]
async fn no_room_gives_429_with_retry_after_and_recovers_when_room_returns() {
    let room = Room::with_room(0);
    let h = Harness::start(config(), room.clone());
    let body = "{\"a\":1}\n{\"a\":2}\n";

    let full = h.ingest(body).await;
    assert_eq!(full.status, StatusCode::TOO_MANY_REQUESTS);
    // 1.5 s is sent as 2 whole seconds; the body keeps the precise hint.
    assert_eq!(full.retry_after, Some(Duration::from_secs(2)));
    let r = reply(&full);
    assert_eq!(
        (r.accepted, r.deferred, r.resume_at_line, r.retry_after_ms),
        (0, 2, Some(1), Some(1500))
    );
    assert!(room.taken().is_empty());

    room.room.store(5, Ordering::Relaxed);
    let again = h.ingest(body).await;
    assert_eq!(again.status, StatusCode::ACCEPTED);
    assert_eq!(reply(&again).accepted, 2);
    assert_eq!(room.taken(), vec![json!({"a": 1}), json!({"a": 2})]);
    assert_eq!(h.server.stats().throttled, 1);
}

#[tokio::test]
async fn admission_without_hint_gets_the_default_retry_after() {
    let room = Arc::new(Room::default()); // no room, no hint
    let config = IngestConfig {
        default_retry_after: Duration::from_secs(3),
        ..config()
    };
    let h = Harness::start(config, room);
    let response = h.ingest("{}\n").await;
    assert_eq!(response.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(response.retry_after, Some(Duration::from_secs(3)));
}

#[tokio::test]
async fn dropped_records_get_503_with_a_retry_hint_too() {
    // An admission that drops what does not fit, with and without a hint of its own.
    let with_hint = Arc::new(Room {
        hint: Some(Duration::from_millis(2500)),
        drops: true,
        ..Room::default()
    });
    let h = Harness::start(config(), with_hint);
    let response = h.ingest("{}\n{}\n").await;
    assert_eq!(response.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(response.retry_after, Some(Duration::from_secs(3)));
    let r = reply(&response);
    assert_eq!(
        (r.accepted, r.dropped, r.deferred, r.retry_after_ms),
        (0, 2, 0, Some(2500))
    );
    assert_eq!(h.server.stats().records_dropped, 2);

    let without = Arc::new(Room {
        drops: true,
        ..Room::default()
    });
    let config = IngestConfig {
        default_retry_after: Duration::from_secs(4),
        ..config()
    };
    let h = Harness::start(config, without);
    let response = h.ingest("{}\n").await;
    assert_eq!(response.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(response.retry_after, Some(Duration::from_secs(4)));
}

#[tokio::test]
async fn partial_acceptance_names_exactly_the_lines_to_resend() {
    let room = Room::with_room(2);
    let h = Harness::start(config(), room.clone());
    let lines = [
        "{\"n\":1}",
        "oops",
        "{\"n\":2}",
        "{\"n\":3}",
        "",
        "{\"n\":4}",
    ];
    let partial = h.ingest(&lines.join("\n")).await;

    assert_eq!(partial.status, StatusCode::TOO_MANY_REQUESTS);
    let r = reply(&partial);
    assert_eq!(
        (r.accepted, r.deferred, r.resume_at_line, r.rejected_total),
        (2, 2, Some(4), 1)
    );
    assert_eq!(
        r.rejected.iter().map(|x| x.line).collect::<Vec<_>>(),
        vec![2]
    );
    assert!(
        r.rejected[0].reason.starts_with("invalid JSON"),
        "{:?}",
        r.rejected[0]
    );

    // The client resends what the reply says, once room is back.
    let resend: Vec<&str> = lines
        .iter()
        .enumerate()
        .filter(|(i, _)| r.must_resend(i + 1))
        .map(|(_, l)| *l)
        .collect();
    assert_eq!(resend, vec!["{\"n\":3}", "", "{\"n\":4}"]);
    room.room.store(10, Ordering::Relaxed);
    let rest = h.ingest(&resend.join("\n")).await;
    assert_eq!(rest.status, StatusCode::ACCEPTED);

    // Every record arrived exactly once, in order; the bad line was dead-lettered once.
    assert_eq!(
        room.taken(),
        (1..=4).map(|n| json!({ "n": n })).collect::<Vec<_>>()
    );
    assert_eq!(room.dead_lines(), vec![2]);
    assert_eq!(room.dead.lock().expect("test lock")[0].2, "oops");
}

#[tokio::test]
async fn a_body_without_a_valid_line_is_400_and_every_line_is_dead_lettered() {
    let room = Room::with_room(10);
    let h = Harness::start(config(), room.clone());
    let response = h.ingest("nope\n[1,2]\n\n\"text\"\n").await;

    assert_eq!(response.status, StatusCode::BAD_REQUEST);
    let r = reply(&response);
    assert_eq!((r.accepted, r.deferred, r.rejected_total), (0, 0, 3));
    assert_eq!(
        r.rejected.iter().map(|x| x.line).collect::<Vec<_>>(),
        vec![1, 2, 4]
    );
    assert_eq!(
        r.rejected[1].reason,
        "expected a JSON object, found an array"
    );
    assert_eq!(room.dead_lines(), vec![1, 2, 4]);
    assert_eq!(
        room.offers.load(Ordering::Relaxed),
        0,
        "nothing valid, so nothing offered"
    );
    assert_eq!(h.server.stats().lines_rejected, 3);
}

#[tokio::test]
async fn the_reply_lists_at_most_the_configured_rejections_but_counts_all() {
    let room = Room::with_room(10);
    let h = Harness::start(
        IngestConfig {
            max_reported_rejections: 2,
            ..config()
        },
        room.clone(),
    );
    let response = h.ingest("x\nx\nx\nx\n{}\n").await;
    assert_eq!(response.status, StatusCode::ACCEPTED);
    let r = reply(&response);
    assert_eq!((r.accepted, r.rejected_total, r.rejected.len()), (1, 4, 2));
    assert_eq!(room.dead_lines(), vec![1, 2, 3, 4]);
}

#[tokio::test]
async fn oversized_bodies_get_413_whether_declared_or_streamed() {
    let room = Room::with_room(100);
    let h = Harness::start(
        IngestConfig {
            max_body_bytes: 64,
            ..config()
        },
        room.clone(),
    );

    let declared = h
        .ingest(&"{\"pad\":\"xxxxxxxxxxxxxxxxxx\"}\n".repeat(4))
        .await;
    assert_eq!(declared.status, StatusCode::PAYLOAD_TOO_LARGE);

    // Chunked: no Content-Length, the limit trips while reading.
    let chunk = "{\"pad\":\"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\"}\n";
    let request = format!(
        "POST /ingest HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n{len:x}\r\n{chunk}\r\n{len:x}\r\n{chunk}\r\n0\r\n\r\n",
        len = chunk.len()
    );
    let streamed = guard(raw_exchange(h.server.local_addr(), request.as_bytes())).await;
    assert!(streamed.starts_with("HTTP/1.1 413"), "{streamed}");
    assert!(room.taken().is_empty());
}

#[tokio::test]
async fn an_oversized_head_gets_431() {
    let mut config = config();
    config.serve.max_head_bytes = 8 << 10;
    let h = Harness::start(config, Room::with_room(1));
    let request = format!(
        "GET /health HTTP/1.1\r\nHost: t\r\nX-Pad: {}\r\n\r\n",
        "p".repeat(10 << 10)
    );
    let heard = guard(raw_exchange(h.server.local_addr(), request.as_bytes())).await;
    assert!(heard.starts_with("HTTP/1.1 431"), "{heard}");
}

#[tokio::test]
async fn bearer_token_is_required_on_ingest_but_not_on_health() {
    let room = Room::with_room(10);
    let token = BearerToken::new("let-me-in");
    let h = Harness::start(
        IngestConfig {
            auth: Some(token.clone()),
            ..config()
        },
        room.clone(),
    );
    let post = |client: HttpClient| {
        let url = h.url("/ingest");
        async move {
            answer(
                guard(client.post(
                    &url,
                    "application/x-ndjson",
                    Bytes::from_static(b"{}\n"),
                    Duration::from_secs(5),
                ))
                .await,
            )
        }
    };

    let anonymous = post(HttpClient::new(HttpClientConfig::default())).await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);
    let wrong = post(HttpClient::new(HttpClientConfig {
        bearer: Some(BearerToken::new("let-me-ix")),
        ..HttpClientConfig::default()
    }))
    .await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert!(room.taken().is_empty());
    let right = post(HttpClient::new(HttpClientConfig {
        bearer: Some(token),
        ..HttpClientConfig::default()
    }))
    .await;
    assert_eq!(right.status, StatusCode::ACCEPTED);
    assert_eq!(room.taken().len(), 1);

    let health = guard(raw_exchange(
        h.server.local_addr(),
        b"GET /health HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    ))
    .await;
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");
}

#[tokio::test]
async fn health_answers_200_json() {
    let h = Harness::start(config(), Room::with_room(0));
    let health = guard(raw_exchange(
        h.server.local_addr(),
        b"GET /health HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    ))
    .await;
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");
    assert!(
        health.contains("content-type: application/json"),
        "{health}"
    );
    assert!(health.ends_with("{\"status\":\"ok\"}"), "{health}");
}

/// Sends `bytes` one at a time, pausing `pause` after each, until the server closes the
/// connection. Returns how many bytes were sent and what the server said before closing, or
/// `None` if every byte went out without the server closing.
async fn trickle(addr: SocketAddr, bytes: &[u8], pause: Duration) -> Option<(usize, String)> {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let mut heard = Vec::new();
    for (i, byte) in bytes.iter().enumerate() {
        if stream.write_all(std::slice::from_ref(byte)).await.is_err() {
            return Some((i, String::from_utf8_lossy(&heard).into_owned()));
        }
        let mut buf = [0u8; 1024];
        // The deliberate pause of a slow client; the server closing ends it early.
        tokio::select! {
            read = stream.read(&mut buf) => match read {
                Ok(0) | Err(_) => return Some((i + 1, String::from_utf8_lossy(&heard).into_owned())),
                Ok(n) => {
                    heard.extend_from_slice(&buf[..n]);
                    // Keep reading until the close that follows the answer.
                    let _ = stream.read_to_end(&mut heard).await;
                    return Some((i + 1, String::from_utf8_lossy(&heard).into_owned()));
                }
            },
            () = tokio::time::sleep(pause) => {}
        }
    }
    None
}

#[tokio::test]
async fn a_client_trickling_its_head_is_disconnected() {
    let mut config = config();
    config.serve.header_read_timeout = Duration::from_millis(200);
    let h = Harness::start(config, Room::with_room(10));
    let head = b"GET /health HTTP/1.1\r\nHost: slow\r\n\r\n";

    let closed = guard(trickle(
        h.server.local_addr(),
        head,
        Duration::from_millis(300),
    ))
    .await;
    let (sent, heard) = closed.expect("the server must close a connection whose head trickles in");
    assert!(
        sent < head.len(),
        "closed only after the whole head ({sent} bytes)"
    );
    assert!(!heard.contains(" 200 "), "{heard}");
}

#[tokio::test]
async fn a_client_trickling_its_body_gets_408_and_is_disconnected() {
    let room = Room::with_room(10);
    let config = IngestConfig {
        body_read_timeout: Duration::from_millis(200),
        ..config()
    };
    let h = Harness::start(config, room.clone());
    let body = b"{\"slow\":\"loris\"}\n";
    let head = format!(
        "POST /ingest HTTP/1.1\r\nHost: slow\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    // The head at once, then the body a byte at a time, each pause longer than the timeout.
    let mut stream = TcpStream::connect(h.server.local_addr())
        .await
        .expect("connect");
    stream.write_all(head.as_bytes()).await.expect("send head");
    let mut heard = Vec::new();
    let mut sent = 0;
    for byte in body {
        if stream.write_all(std::slice::from_ref(byte)).await.is_err() {
            break;
        }
        sent += 1;
        let mut buf = [0u8; 1024];
        let closed = guard(async {
            tokio::select! {
                read = stream.read(&mut buf) => Some(read),
                () = tokio::time::sleep(Duration::from_millis(300)) => None,
            }
        })
        .await;
        match closed {
            None => continue,
            Some(Ok(n)) => {
                heard.extend_from_slice(&buf[..n]);
                let _ = guard(stream.read_to_end(&mut heard)).await;
                break;
            }
            Some(Err(_)) => break,
        }
    }
    let heard = String::from_utf8_lossy(&heard);
    assert!(
        sent < body.len(),
        "the server waited for the whole trickled body"
    );
    assert!(heard.starts_with("HTTP/1.1 408"), "{heard}");
    assert!(room.taken().is_empty());
}

#[tokio::test]
async fn connections_past_the_limit_wait_for_a_free_slot() {
    let mut config = config();
    config.serve.max_connections = NonZeroUsize::new(1).expect("1 is not zero");
    let h = Harness::start(config, Room::with_room(0));
    let addr = h.server.local_addr();

    // A holds the only slot with a kept-alive connection.
    let mut a = TcpStream::connect(addr).await.expect("connect A");
    a.write_all(b"GET /health HTTP/1.1\r\nHost: a\r\n\r\n")
        .await
        .expect("send A");
    let mut got = Vec::new();
    while !String::from_utf8_lossy(&got).ends_with("{\"status\":\"ok\"}") {
        let mut buf = [0u8; 512];
        let n = guard(a.read(&mut buf)).await.expect("read A");
        assert!(n > 0, "A closed early");
        got.extend_from_slice(&buf[..n]);
    }

    // B connects (the kernel completes the handshake) and asks; it is served once A leaves.
    let b = tokio::spawn(raw_exchange(
        addr,
        b"GET /health HTTP/1.1\r\nHost: b\r\nConnection: close\r\n\r\n",
    ));
    drop(a);
    let b_heard = guard(b).await.expect("B's task");
    assert!(b_heard.starts_with("HTTP/1.1 200"), "{b_heard}");
    let stats = h.server.stats();
    assert_eq!((stats.connections_accepted, stats.connections_peak), (2, 1));
}

#[tokio::test]
async fn shutdown_joins_the_server_and_frees_the_port() {
    let h = Harness::start(config(), Room::with_room(1));
    let addr = h.server.local_addr();
    assert_eq!(h.ingest("{}\n").await.status, StatusCode::ACCEPTED);
    guard(h.server.shutdown()).await.expect("clean shutdown");
    assert!(
        TcpStream::connect(addr).await.is_err(),
        "still listening after shutdown"
    );
}

#[tokio::test]
async fn dropping_the_server_closes_open_connections() {
    let h = Harness::start(config(), Room::with_room(1));
    let mut idle = TcpStream::connect(h.server.local_addr())
        .await
        .expect("connect");
    idle.write_all(b"GET /health HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .expect("send");
    let mut buf = [0u8; 512];
    assert!(guard(idle.read(&mut buf)).await.expect("answer") > 0);
    drop(h);
    // The connection task is aborted with the server: the client sees the close.
    let mut rest = Vec::new();
    let _ = guard(idle.read_to_end(&mut rest)).await;
    assert!(
        rest.is_empty(),
        "nothing more was asked, so nothing more may come"
    );
}

#[tokio::test]
async fn bind_outside_a_runtime_is_an_error() {
    let result =
        std::thread::spawn(|| IngestServer::bind(config(), Room::with_room(0)).map(|_| ()))
            .join()
            .expect("the thread ran");
    assert!(matches!(result, Err(BindError::NoRuntime)), "{result:?}");
}
