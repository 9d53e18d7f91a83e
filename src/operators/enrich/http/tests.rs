use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

use super::*;
use crate::operators::enrich::config::{EnrichConfig, OriginConfig};

/// What the test origin does after reading a request for a path.
enum Answer {
    /// Write these bytes and keep the connection for the next request.
    Keep(Vec<u8>),
    /// Write these bytes and close the connection.
    Close(Vec<u8>),
    /// Write these bytes and then hold the connection open, sending nothing more.
    Stall(Vec<u8>),
}

/// A local HTTP/1.1 origin that counts the connections it accepts and the requests it reads.
struct TestOrigin {
    addr: String,
    connections: Arc<AtomicUsize>,
    requests: Arc<AtomicUsize>,
}

impl TestOrigin {
    async fn start(answer: fn(&str) -> Answer) -> TestOrigin {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let connections = Arc::new(AtomicUsize::new(0));
        let requests = Arc::new(AtomicUsize::new(0));
        let (c, r) = (Arc::clone(&connections), Arc::clone(&requests));
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                c.fetch_add(1, Ordering::SeqCst);
                let r = Arc::clone(&r);
                tokio::spawn(async move {
                    let mut stream = BufReader::new(stream);
                    loop {
                        let mut line = String::new();
                        if stream.read_line(&mut line).await.unwrap_or(0) == 0 {
                            return;
                        }
                        let path = line.split_whitespace().nth(1).unwrap_or("").to_string();
                        loop {
                            let mut h = String::new();
                            if stream.read_line(&mut h).await.unwrap_or(0) == 0 {
                                return;
                            }
                            if h.trim().is_empty() {
                                break;
                            }
                        }
                        r.fetch_add(1, Ordering::SeqCst);
                        let (bytes, then) = match answer(&path) {
                            Answer::Keep(b) => (b, 0),
                            Answer::Close(b) => (b, 1),
                            Answer::Stall(b) => (b, 2),
                        };
                        if stream.get_mut().write_all(&bytes).await.is_err() {
                            return;
                        }
                        match then {
                            0 => {}
                            1 => return,
                            _ => {
                                // Hold the connection until the client drops it.
                                let mut rest = String::new();
                                let _ = stream.read_line(&mut rest).await;
                                return;
                            }
                        }
                    }
                });
            }
        });
        TestOrigin {
            addr,
            connections,
            requests,
        }
    }

    fn client(&self, max_response_bytes: u64) -> HttpClient {
        let origin = HttpOrigin {
            url: format!("http://{}/v/{{key}}", self.addr),
            max_response_bytes,
        };
        HttpClient::new(&origin).unwrap()
    }

    fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}

fn response(status: &str, extra: &str, body: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n{extra}\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// The value served for `/v/<key>`.
fn json_for(path: &str) -> String {
    format!(r#"{{"path":"{path}"}}"#)
}

/// One lookup, which must end well before the test's patience does.
async fn get(client: &HttpClient, key: &str) -> Result<Lookup, OriginError> {
    tokio::time::timeout(Duration::from_secs(10), client.get(key))
        .await
        .expect("the lookup ends without waiting for a timeout")
}

fn found(path: &str) -> Lookup {
    Lookup::Found(Arc::new(serde_json::from_str(&json_for(path)).unwrap()))
}

#[tokio::test]
async fn answers_map_to_found_not_found_and_errors() {
    let origin = TestOrigin::start(|path| match path {
        "/v/missing" => Answer::Keep(response("404 Not Found", "", "{}")),
        "/v/down" => Answer::Keep(response("503 Service Unavailable", "", "{}")),
        "/v/teapot" => Answer::Keep(response("418 I'm a teapot", "", "")),
        "/v/text" => Answer::Keep(response("200 OK", "", "not json")),
        "/v/garbage" => Answer::Close(b"SMTP ready\r\n\r\n".to_vec()),
        p => Answer::Keep(response("200 OK", "", &json_for(p))),
    })
    .await;
    let client = origin.client(1 << 20);
    assert_eq!(get(&client, "k1").await, Ok(found("/v/k1")));
    assert_eq!(
        get(&client, "a b/c?").await,
        Ok(found("/v/a%20b%2Fc%3F")),
        "the key is percent-encoded"
    );
    assert_eq!(get(&client, "missing").await, Ok(Lookup::NotFound));
    assert_eq!(get(&client, "down").await, Err(OriginError::Status(503)));
    assert_eq!(get(&client, "teapot").await, Err(OriginError::Status(418)));
    assert_eq!(get(&client, "text").await, Err(OriginError::Malformed));
    assert_eq!(get(&client, "garbage").await, Err(OriginError::Malformed));
    assert_eq!(OriginError::Status(503).reason(), "origin_5xx");
    assert_eq!(OriginError::Status(418).reason(), "origin_status");
}

#[tokio::test]
async fn connections_are_kept_alive_and_reused() {
    let origin = TestOrigin::start(|path| match path {
        "/v/missing" => Answer::Keep(response("404 Not Found", "", "{\"no\":1}")),
        "/v/down" => Answer::Keep(response("503 Service Unavailable", "", "{}")),
        p => Answer::Keep(response("200 OK", "", &json_for(p))),
    })
    .await;
    let client = origin.client(1 << 20);
    for i in 0..30 {
        let key = match i % 3 {
            0 => format!("k{i}"),
            1 => "missing".into(),
            _ => "down".into(),
        };
        let _ = get(&client, &key).await;
    }
    assert_eq!(origin.requests(), 30);
    assert_eq!(
        origin.connections(),
        1,
        "sequential lookups share one connection, whatever the status"
    );
    // Concurrent lookups open more connections, and the pool keeps them for later ones.
    let (a, b, c, d) = tokio::join!(
        client.get("a"),
        client.get("b"),
        client.get("c"),
        client.get("d")
    );
    for r in [a, b, c, d] {
        assert!(matches!(r, Ok(Lookup::Found(_))));
    }
    let after_burst = origin.connections();
    assert!(after_burst <= 4, "{after_burst}");
    for i in 0..10 {
        get(&client, &format!("again{i}")).await.unwrap();
    }
    assert_eq!(
        origin.connections(),
        after_burst,
        "pooled connections reused"
    );
}

#[tokio::test]
async fn an_origin_that_closes_after_each_answer_costs_no_errors() {
    // No `Connection: close` header: the client learns of the close only from the socket.
    let origin = TestOrigin::start(|p| Answer::Close(response("200 OK", "", &json_for(p)))).await;
    let client = origin.client(1 << 20);
    for i in 0..10 {
        let key = format!("k{i}");
        assert_eq!(get(&client, &key).await, Ok(found(&format!("/v/{key}"))));
    }
    assert_eq!(origin.connections(), 10);
}

#[tokio::test]
async fn redirects_are_followed() {
    let origin = TestOrigin::start(|path| match path {
        // Absolute path, relative path, then an absolute URL on the same origin.
        "/v/k1" => Answer::Keep(response("301 Moved Permanently", "Location: /w/k1\r\n", "")),
        "/w/k1" => Answer::Keep(response("302 Found", "Location: x/k1#frag\r\n", "moved")),
        "/w/x/k1" => Answer::Keep(response(
            "307 Temporary Redirect",
            "Location: /z/k1\r\n",
            "",
        )),
        p => Answer::Keep(response("200 OK", "", &json_for(p))),
    })
    .await;
    let client = origin.client(1 << 20);
    assert_eq!(get(&client, "k1").await, Ok(found("/z/k1")));
    assert_eq!(origin.requests(), 4);
    assert_eq!(
        origin.connections(),
        1,
        "redirect bodies are drained, the connection kept"
    );
}

#[tokio::test]
async fn a_redirect_loop_is_stopped() {
    let origin = TestOrigin::start(|path| {
        Answer::Keep(response(
            "308 Permanent Redirect",
            &format!("Location: {path}\r\n"),
            "",
        ))
    })
    .await;
    let client = origin.client(1 << 20);
    assert_eq!(get(&client, "k").await, Err(OriginError::Status(308)));
    assert_eq!(origin.requests(), 1 + MAX_REDIRECTS);
    assert_eq!(OriginError::Status(308).reason(), "origin_status");
}

#[tokio::test]
async fn a_redirect_without_location_is_malformed() {
    let origin = TestOrigin::start(|_| Answer::Keep(response("302 Found", "", ""))).await;
    assert_eq!(
        get(&origin.client(1 << 20), "k").await,
        Err(OriginError::Malformed)
    );
}

#[tokio::test]
async fn a_huge_content_length_is_refused_without_reading_it() {
    let origin = TestOrigin::start(|_| {
        Answer::Stall(b"HTTP/1.1 200 OK\r\nContent-Length: 1000000000000\r\n\r\n{".to_vec())
    })
    .await;
    // Even with no bound worth the name the declared length is not allocated: the client
    // refuses it at once instead of waiting for bytes that never come.
    let client = origin.client(1 << 20);
    assert_eq!(get(&client, "k").await, Err(OriginError::Malformed));
    assert_eq!(OriginError::Malformed.reason(), "origin_malformed");
}

#[tokio::test]
async fn a_body_over_the_limit_is_refused() {
    let origin = TestOrigin::start(|path| {
        let big = format!(r#"{{"pad":"{}"}}"#, "x".repeat(2000));
        match path {
            "/v/length" => Answer::Keep(response("200 OK", "", &big)),
            "/v/eof" => Answer::Close(format!("HTTP/1.1 200 OK\r\n\r\n{big}").into_bytes()),
            "/v/small" => Answer::Keep(response("200 OK", "", "{\"ok\":true}")),
            _ => {
                // Chunked, and it never ends: 100-byte chunks, then the connection stalls.
                let mut b = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
                for _ in 0..30 {
                    b.extend_from_slice(format!("64\r\n{}\r\n", "y".repeat(100)).as_bytes());
                }
                Answer::Stall(b)
            }
        }
    })
    .await;
    let client = origin.client(1024);
    for key in ["length", "eof", "chunked"] {
        assert_eq!(
            get(&client, key).await,
            Err(OriginError::Malformed),
            "{key}"
        );
    }
    assert!(matches!(get(&client, "small").await, Ok(Lookup::Found(_))));
}

#[tokio::test]
async fn response_heads_are_bounded() {
    let origin = TestOrigin::start(|path| {
        let extra = match path {
            "/v/long" => format!("X-Pad: {}\r\n", "p".repeat(MAX_HEAD_BYTES * 2)),
            _ => (0..MAX_HEADERS * 2)
                .map(|i| format!("X-H{i}: v\r\n"))
                .collect(),
        };
        Answer::Close(response("200 OK", &extra, "{}"))
    })
    .await;
    let client = origin.client(1 << 20);
    assert_eq!(get(&client, "long").await, Err(OriginError::Malformed));
    assert_eq!(get(&client, "many").await, Err(OriginError::Malformed));
}

#[tokio::test]
async fn a_refused_connection_is_an_io_error() {
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let client = HttpClient::new(&HttpOrigin {
        url: format!("http://{closed}/v/{{key}}"),
        max_response_bytes: 1 << 20,
    })
    .unwrap();
    assert_eq!(get(&client, "k").await, Err(OriginError::Io));
    assert_eq!(OriginError::Io.reason(), "origin_io");
}

#[test]
fn redirect_targets_resolve_and_never_downgrade() {
    let base: Uri = "http://h:81/a/b/c?q=1".parse().unwrap();
    let target = |loc: &str| {
        let mut headers = HeaderMap::new();
        headers.insert(header::LOCATION, loc.parse().unwrap());
        redirect_target(&base, &headers).map(|u| u.to_string())
    };
    assert_eq!(target("/x?y=2").as_deref(), Some("http://h:81/x?y=2"));
    assert_eq!(target("d").as_deref(), Some("http://h:81/a/b/d"));
    assert_eq!(target("//other/p").as_deref(), Some("http://other/p"));
    assert_eq!(target("https://s/p#f").as_deref(), Some("https://s/p"));
    assert_eq!(target("http://"), None);
    assert_eq!(redirect_target(&base, &HeaderMap::new()), None);

    let uri = |s: &str| s.parse::<Uri>().unwrap();
    assert!(may_follow(&uri("http://a/"), &uri("http://b/")));
    assert!(may_follow(&uri("http://a/"), &uri("https://a/")));
    assert!(may_follow(&uri("https://a/"), &uri("https://b/")));
    assert!(!may_follow(&uri("https://a/"), &uri("http://a/")));
    assert!(!may_follow(&uri("http://a/"), &uri("ftp://a/")));
}

#[test]
fn https_urls_and_the_body_bound_are_validated() {
    let fields = |origin: &str| -> Vec<String> {
        let cfg: EnrichConfig =
            toml::from_str(&format!("[origin]\ntype = \"http\"\n{origin}")).unwrap();
        cfg.validate(&Default::default())
            .into_iter()
            .map(|e| e.field)
            .collect()
    };
    assert!(fields("url = \"https://x/{key}\"\n").is_empty());
    assert!(fields("url = \"http://x/{key}\"\nmax_response_bytes = 10\n").is_empty());
    assert_eq!(fields("url = \"ftp://x/{key}\"\n"), ["origin.url"]);
    assert_eq!(fields("url = \"https://x/\"\n"), ["origin.url"]);
    assert_eq!(
        fields("url = \"http://x/{key}\"\nmax_response_bytes = 0\n"),
        ["origin.max_response_bytes"]
    );
    let cfg: EnrichConfig =
        toml::from_str("[origin]\ntype = \"http\"\nurl = \"http://x/{key}\"\n").unwrap();
    let OriginConfig::Http(h) = cfg.origin else {
        panic!("http origin")
    };
    assert_eq!(h.max_response_bytes, 1 << 20, "default 1 MiB");
    assert!(HttpClient::new(&h).is_ok());
}
