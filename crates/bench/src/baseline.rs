//! The baseline: a bare hyper 1 server that reads the POST body and answers a small JSON.
//!
//! It is served by this same binary in a child process (`triggerd-bench --serve-baseline`), so it
//! is started, loaded and measured (`/proc` CPU and RSS) exactly like `triggerd serve`, and it
//! never shares a runtime with the load generator. It is built the way triggerd's own listener is
//! (`hyper_util`'s auto connection builder on a multi-threaded tokio runtime, `TCP_NODELAY`), so the
//! ratio shows what triggerd's work costs on top of hyper itself.
//!
//! The `steps` scenario serves the same handler in-process as the target of its `http` steps
//! ([`serve_with`]), counting the requests it answers.

use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::Bytes;
use http::{HeaderValue, Request, Response, header};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;

use crate::Error;

/// Runs the baseline server on `listen` until the process is killed. Prints
/// `triggerd-bench baseline listening on http://ADDR` once it accepts connections.
pub fn serve_blocking(listen: SocketAddr) -> Result<(), Error> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::new(format!("cannot start the runtime: {e}")))?;
    runtime.block_on(async {
        let listener = TcpListener::bind(listen)
            .await
            .map_err(|e| Error::new(format!("cannot listen on {listen}: {e}")))?;
        let local = listener
            .local_addr()
            .map_err(|e| Error::new(format!("cannot read the listening address: {e}")))?;
        println!("triggerd-bench baseline listening on http://{local}");
        serve(listener).await;
        Ok(())
    })
}

/// Accepts connections forever.
pub async fn serve(listener: TcpListener) {
    serve_with(listener, || {}).await;
}

/// Accepts connections forever, calling `on_request` once per request after its body was read
/// (before the answer is sent).
pub async fn serve_with<F>(listener: TcpListener, on_request: F)
where
    F: Fn() + Clone + Send + Sync + 'static,
{
    let builder = auto::Builder::new(TokioExecutor::new());
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        let on_request = on_request.clone();
        let service = hyper::service::service_fn(move |req| {
            let on_request = on_request.clone();
            async move {
                let response = handle(req).await;
                on_request();
                response
            }
        });
        let conn = builder
            .serve_connection(TokioIo::new(stream), service)
            .into_owned();
        tokio::spawn(async move {
            let _ = conn.await;
        });
    }
}

async fn handle(req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let size = match req.into_body().collect().await {
        Ok(body) => body.to_bytes().len(),
        Err(_) => 0,
    };
    let mut response = Response::new(Full::new(Bytes::from(format!(
        "{{\"received\":true,\"bytes\":{size}}}"
    ))));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Ok(response)
}
