//! A minimal client of triggerd's management API (`/api/v1`), for setting up scenarios and
//! reading runs: one keep-alive HTTP/1.1 connection, JSON in and out.

use std::net::SocketAddr;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, header};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::net::TcpStream;

use crate::Error;

/// One connection to the management API with the admin token.
#[derive(Debug)]
pub struct ApiClient {
    sender: SendRequest<Full<Bytes>>,
    host: HeaderValue,
    auth: HeaderValue,
}

impl ApiClient {
    /// Connects to `addr`.
    pub async fn connect(addr: SocketAddr, admin_token: &str) -> Result<ApiClient, Error> {
        let stream = TcpStream::connect(addr)
            .await
            .map_err(|e| Error::new(format!("cannot connect to {addr}: {e}")))?;
        let _ = stream.set_nodelay(true);
        let (sender, conn) = http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| Error::new(format!("HTTP handshake with {addr}: {e}")))?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(ApiClient {
            sender,
            host: HeaderValue::from_str(&addr.to_string())
                .map_err(|e| Error::new(format!("bad host header: {e}")))?,
            auth: HeaderValue::from_str(&format!("Bearer {admin_token}"))
                .map_err(|e| Error::new(format!("bad admin token: {e}")))?,
        })
    }

    /// `method /api/v1{path}` with an optional JSON body; returns the status and the parsed body
    /// (`Null` when it is not JSON).
    pub async fn call(
        &mut self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<(u16, Value), Error> {
        let (status, bytes) = self.send(method, &format!("/api/v1{path}"), body).await?;
        let value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Ok((status, value))
    }

    /// `GET {path}` outside `/api/v1` (e.g. `/metrics`): the status and the body as text.
    pub async fn get_text(&mut self, path: &str) -> Result<(u16, String), Error> {
        let (status, bytes) = self.send(Method::GET, path, None).await?;
        Ok((status, String::from_utf8_lossy(&bytes).into_owned()))
    }

    async fn send(
        &mut self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<(u16, Bytes), Error> {
        let body = body.map(|b| Bytes::from(b.to_string()));
        let mut out = Vec::new();
        let (status, _) = self
            .stream(method, path, body, |chunk| out.extend_from_slice(chunk))
            .await?;
        Ok((status, Bytes::from(out)))
    }

    /// `method path` (the whole path: `/api/v1/...` or a webhook's `/api/webhooks/...`) with an
    /// optional JSON `body`, handing each chunk of the answer's body to `on_chunk` as it arrives
    /// instead of keeping it (answers too large to hold, in the `memory` scenario). Returns the
    /// status and the body's length in bytes.
    pub async fn stream(
        &mut self,
        method: Method,
        path: &str,
        body: Option<Bytes>,
        mut on_chunk: impl FnMut(&[u8]),
    ) -> Result<(u16, u64), Error> {
        let json = body.is_some();
        let mut req = Request::new(Full::new(body.unwrap_or_default()));
        *req.method_mut() = method.clone();
        *req.uri_mut() = path
            .parse()
            .map_err(|e| Error::new(format!("bad API path {path:?}: {e}")))?;
        let headers = req.headers_mut();
        headers.insert(header::HOST, self.host.clone());
        headers.insert(header::AUTHORIZATION, self.auth.clone());
        if json {
            headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
        }
        let what = |e: hyper::Error| Error::new(format!("{method} {path}: {e}"));
        self.sender.ready().await.map_err(what)?;
        let response = self.sender.send_request(req).await.map_err(what)?;
        let status = response.status().as_u16();
        let mut body = response.into_body();
        let mut len = 0u64;
        while let Some(frame) = body.frame().await {
            if let Ok(data) = frame.map_err(what)?.into_data() {
                len += data.len() as u64;
                on_chunk(&data);
            }
        }
        Ok((status, len))
    }

    /// Like [`ApiClient::call`], but any status other than `expected` is an error.
    pub async fn expect(
        &mut self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        expected: u16,
    ) -> Result<Value, Error> {
        let (status, value) = self.call(method.clone(), path, body).await?;
        if status != expected {
            return Err(Error::new(format!(
                "{method} /api/v1{path}: expected {expected}, got {status}: {value}"
            )));
        }
        Ok(value)
    }
}
