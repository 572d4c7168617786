//! Helpers shared by this module's tests.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::{ClientError, Response};

/// Runs `fut` under a generous deadline so a bug hangs no test run; never the assertion itself.
pub(crate) async fn guard<F: Future>(fut: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(20), fut)
        .await
        .expect("test guard: the operation hung")
}

/// The answer of a request, whether 2xx or not; panics on a transport failure.
pub(crate) fn answer(result: Result<Response, ClientError>) -> Response {
    match result {
        Ok(response) => response,
        Err(ClientError::Status { response, .. }) => *response,
        Err(e) => panic!("expected an HTTP answer, got {e}"),
    }
}

/// Sends `request` on a fresh connection and reads until the server closes it.
pub(crate) async fn raw_exchange(addr: SocketAddr, request: &[u8]) -> String {
    let mut stream = TcpStream::connect(addr)
        .await
        .expect("connect to the test server");
    stream.write_all(request).await.expect("send the request");
    let mut reply = Vec::new();
    // A reset after the answer (the server closing with unread input) still leaves the answer.
    let _ = stream.read_to_end(&mut reply).await;
    String::from_utf8_lossy(&reply).into_owned()
}
