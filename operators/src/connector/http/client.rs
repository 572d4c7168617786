//! A plain-HTTP/1.1 JSON client that reports what a sink needs to pace itself, and the naive
//! retry client the overload benchmark shows beside it.
//!
//! [`HttpClient`] sits on hyper-util's pooled client rather than `reqwest`: the server side
//! already needs hyper and hyper-util, `reqwest` would wrap the same pool in more API and
//! dependencies than a JSON POST needs, and the pool's bounds are set here directly. The pool
//! keeps at most [`HttpClientConfig::max_idle_per_host`] idle connections per host and closes
//! them after [`HttpClientConfig::idle_timeout`]; each pooled connection is driven by a task
//! hyper-util starts on the current runtime, which ends when its connection closes or the
//! client (all its clones) is dropped.
//!
//! Every answer yields the status, the parsed `Retry-After` (delta-seconds or HTTP-date) and
//! the round-trip time from sending the request to having the whole response body. Errors are
//! classified ([`ErrorClass`]): the transport failed, the server answered a non-2xx status, or
//! the request itself was unusable.
//!
//! No TLS: `https` URLs are refused with [`ClientError::InvalidUrl`].

use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use http::header::{AUTHORIZATION, CONTENT_TYPE, RETRY_AFTER};
use http::{HeaderValue, Method, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::BearerToken;
use crate::overload::retry_after::retry_after_hint;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Settings of an [`HttpClient`].
#[derive(Debug, Clone)]
pub struct HttpClientConfig {
    /// Idle connections kept per host for reuse.
    pub max_idle_per_host: usize,
    /// An idle pooled connection is closed after this long.
    pub idle_timeout: Duration,
    /// Largest response body read; a larger one is [`ClientError::ResponseTooLarge`].
    pub max_response_bytes: usize,
    /// Sent as `Authorization: Bearer <token>` when set.
    pub bearer: Option<BearerToken>,
}

impl Default for HttpClientConfig {
    fn default() -> Self {
        Self {
            max_idle_per_host: 64,
            idle_timeout: Duration::from_secs(30),
            max_response_bytes: 1 << 20,
            bearer: None,
        }
    }
}

/// A complete HTTP answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// The status code.
    pub status: StatusCode,
    /// The `Retry-After` header as a wait from when the answer arrived, if present and valid.
    pub retry_after: Option<Duration>,
    /// From sending the request to having read the whole body.
    pub rtt: Duration,
    /// The body.
    pub body: Bytes,
}

impl Response {
    /// Parses the body as JSON.
    ///
    /// # Errors
    ///
    /// The body is not JSON of type `T`.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        serde_json::from_slice(&self.body)
    }
}

/// Which side a [`ClientError`] comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// No complete answer: connect failure, reset, timeout, protocol error, oversized body.
    Transport,
    /// The server answered with a non-2xx status.
    Status,
    /// The request was unusable before anything was sent (bad URL, body not encodable).
    Request,
}

/// Error of [`HttpClient::post_json`] / [`HttpClient::post`].
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The URL does not parse or is not a plain `http://host[:port]/...` URL.
    #[error("invalid URL {url:?}: {reason}")]
    InvalidUrl {
        /// The URL given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The body could not be encoded as JSON.
    #[error("could not encode the request body as JSON: {0}")]
    Encode(#[source] serde_json::Error),
    /// No connection could be made (refused, unreachable, ...).
    #[error("could not connect to {url}: {source}")]
    Connect {
        /// The URL asked for.
        url: String,
        /// The underlying error.
        #[source]
        source: BoxError,
    },
    /// The connection failed while sending the request or reading the answer.
    #[error("request to {url} failed: {source}")]
    Transport {
        /// The URL asked for.
        url: String,
        /// The underlying error.
        #[source]
        source: BoxError,
    },
    /// No complete answer within the timeout.
    #[error("request to {url} timed out after {after:?}")]
    Timeout {
        /// The URL asked for.
        url: String,
        /// The timeout that elapsed.
        after: Duration,
    },
    /// The answer's body was larger than [`HttpClientConfig::max_response_bytes`].
    #[error("the answer from {url} is larger than {limit} bytes")]
    ResponseTooLarge {
        /// The URL asked for.
        url: String,
        /// The configured limit.
        limit: usize,
    },
    /// The server answered with a non-2xx status; the answer is kept (status, `Retry-After`).
    #[error("{url} answered {}", response.status)]
    Status {
        /// The URL asked for.
        url: String,
        /// The full answer.
        response: Box<Response>,
    },
}

impl ClientError {
    /// Whether the transport failed, the server said no, or the request was unusable.
    pub fn class(&self) -> ErrorClass {
        match self {
            Self::InvalidUrl { .. } | Self::Encode(_) => ErrorClass::Request,
            Self::Connect { .. }
            | Self::Transport { .. }
            | Self::Timeout { .. }
            | Self::ResponseTooLarge { .. } => ErrorClass::Transport,
            Self::Status { .. } => ErrorClass::Status,
        }
    }

    /// The server's answer, for [`ClientError::Status`].
    pub fn response(&self) -> Option<&Response> {
        match self {
            Self::Status { response, .. } => Some(response),
            _ => None,
        }
    }
}

/// A pooled plain-HTTP/1.1 client; cheap to clone (clones share the pool).
///
/// ```no_run
/// # async fn demo() -> Result<(), weir_operators::connector::http::ClientError> {
/// use std::time::Duration;
/// use weir_operators::connector::http::{HttpClient, HttpClientConfig};
///
/// let client = HttpClient::new(HttpClientConfig::default());
/// let answer = client.post_json("http://127.0.0.1:8080/work", &serde_json::json!({"n": 1}), Duration::from_secs(1)).await?;
/// println!("{} in {:?}", answer.status, answer.rtt);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct HttpClient {
    inner: Client<HttpConnector, Full<Bytes>>,
    max_response_bytes: usize,
    authorization: Option<HeaderValue>,
}

impl HttpClient {
    /// A client with `config`. Requests must be made from within a tokio runtime.
    pub fn new(config: HttpClientConfig) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        let inner = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(config.max_idle_per_host)
            .pool_idle_timeout(config.idle_timeout)
            .pool_timer(TokioTimer::new())
            .timer(TokioTimer::new())
            .build(connector);
        let authorization = config.bearer.and_then(|t| {
            let mut value = HeaderValue::from_str(&format!("Bearer {}", t.expose())).ok()?;
            value.set_sensitive(true);
            Some(value)
        });
        Self {
            inner,
            max_response_bytes: config.max_response_bytes,
            authorization,
        }
    }

    /// POSTs `body` as `application/json` to `url` and waits at most `timeout` for the whole
    /// answer.
    ///
    /// # Errors
    ///
    /// See [`ClientError`]; a non-2xx answer is [`ClientError::Status`] and keeps the answer.
    pub async fn post_json<T: Serialize + ?Sized>(
        &self,
        url: &str,
        body: &T,
        timeout: Duration,
    ) -> Result<Response, ClientError> {
        let body = serde_json::to_vec(body).map_err(ClientError::Encode)?;
        self.post(url, "application/json", Bytes::from(body), timeout)
            .await
    }

    /// POSTs `body` with `content_type` to `url` and waits at most `timeout` for the whole
    /// answer.
    ///
    /// # Errors
    ///
    /// See [`ClientError`]; a non-2xx answer is [`ClientError::Status`] and keeps the answer.
    pub async fn post(
        &self,
        url: &str,
        content_type: &'static str,
        body: Bytes,
        timeout: Duration,
    ) -> Result<Response, ClientError> {
        let uri = plain_http_uri(url)?;
        let mut request = Request::builder()
            .method(Method::POST)
            .uri(uri)
            .header(CONTENT_TYPE, content_type)
            .body(Full::new(body))
            .map_err(|e| ClientError::InvalidUrl {
                url: url.to_owned(),
                reason: e.to_string(),
            })?;
        if let Some(auth) = &self.authorization {
            request.headers_mut().insert(AUTHORIZATION, auth.clone());
        }

        let started = Instant::now();
        let exchange = async {
            let answer = self.inner.request(request).await.map_err(|e| {
                if e.is_connect() {
                    ClientError::Connect {
                        url: url.to_owned(),
                        source: Box::new(e),
                    }
                } else {
                    ClientError::Transport {
                        url: url.to_owned(),
                        source: Box::new(e),
                    }
                }
            })?;
            let (head, body) = answer.into_parts();
            let body = Limited::new(body, self.max_response_bytes)
                .collect()
                .await
                .map_err(|e| {
                    if e.downcast_ref::<LengthLimitError>().is_some() {
                        ClientError::ResponseTooLarge {
                            url: url.to_owned(),
                            limit: self.max_response_bytes,
                        }
                    } else {
                        ClientError::Transport {
                            url: url.to_owned(),
                            source: e,
                        }
                    }
                })?;
            let retry_after = head
                .headers
                .get(RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| retry_after_hint(v, SystemTime::now()));
            Ok(Response {
                status: head.status,
                retry_after,
                rtt: started.elapsed(),
                body: body.to_bytes(),
            })
        };
        let response = tokio::time::timeout(timeout, exchange)
            .await
            .map_err(|_| ClientError::Timeout {
                url: url.to_owned(),
                after: timeout,
            })??;
        if response.status.is_success() {
            Ok(response)
        } else {
            Err(ClientError::Status {
                url: url.to_owned(),
                response: Box::new(response),
            })
        }
    }
}

fn plain_http_uri(url: &str) -> Result<Uri, ClientError> {
    let invalid = |reason: &str| ClientError::InvalidUrl {
        url: url.to_owned(),
        reason: reason.to_owned(),
    };
    let uri: Uri = url
        .parse()
        .map_err(|e: http::uri::InvalidUri| invalid(&e.to_string()))?;
    match uri.scheme_str() {
        Some("http") => {}
        Some("https") => {
            return Err(invalid(
                "https is not supported (this client speaks plain HTTP only)",
            ))
        }
        _ => return Err(invalid("expected an http:// URL")),
    }
    if uri.authority().is_none() {
        return Err(invalid("missing host"));
    }
    Ok(uri)
}

#[cfg(test)]
mod tests;
