//! [`Objects`] on S3 (or an S3-compatible server): the client is built like every other S3
//! user's (`connectors::s3::client`), credentials from the standard AWS chain.

use std::path::Path;

use async_trait::async_trait;
use aws_sdk_s3::error::ProvideErrorMetadata;
use aws_sdk_s3::primitives::ByteStream;
use tokio::io::AsyncWriteExt;

use super::StoreSpec;
use super::remote::{ObjectError, Objects, hex};
use crate::connectors::s3::client::{S3Connection, sdk_error};

/// A bucket and a key prefix (empty or ending with `/`).
pub struct S3Objects {
    client: aws_sdk_s3::Client,
    bucket: String,
    prefix: String,
}

impl S3Objects {
    /// The objects under `s3://bucket/prefix`, reached as `spec` says.
    pub async fn new(spec: &StoreSpec, bucket: String, prefix: String) -> Self {
        let conn = S3Connection {
            endpoint_url: spec.endpoint_url.clone(),
            region: spec.region.clone(),
        };
        S3Objects {
            client: conn.client().await,
            bucket,
            prefix,
        }
    }

    fn key(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }
}

/// The service's code and message when it answered, else the transport error's chain.
fn other<E, R>(e: aws_sdk_s3::error::SdkError<E, R>) -> ObjectError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug + 'static,
{
    match e.code() {
        Some(code) => ObjectError::Other(format!("{code}: {}", e.message().unwrap_or(""))),
        None => ObjectError::Other(sdk_error(&e)),
    }
}

#[async_trait]
impl Objects for S3Objects {
    async fn put_file(&self, key: &str, path: &Path) -> Result<(), ObjectError> {
        let body = ByteStream::from_path(path)
            .await
            .map_err(|e| ObjectError::Other(format!("reading {}: {e}", path.display())))?;
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(self.key(key))
            .body(body)
            .send()
            .await
            .map_err(other)?;
        Ok(())
    }

    async fn put_bytes(&self, key: &str, bytes: Vec<u8>) -> Result<(), ObjectError> {
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(self.key(key))
            .body(bytes.into())
            .send()
            .await
            .map_err(other)?;
        Ok(())
    }

    async fn get_bytes(&self, key: &str) -> Result<Vec<u8>, ObjectError> {
        let obj = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(self.key(key))
            .send()
            .await
            .map_err(|e| {
                if e.as_service_error().is_some_and(|s| s.is_no_such_key()) {
                    ObjectError::NotFound
                } else {
                    other(e)
                }
            })?;
        let body = obj
            .body
            .collect()
            .await
            .map_err(|e| ObjectError::Other(format!("reading {key}: {e}")))?;
        Ok(body.into_bytes().to_vec())
    }

    async fn get_to_file(&self, key: &str, path: &Path) -> Result<(u64, String), ObjectError> {
        use md5::{Digest, Md5};
        let obj = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(self.key(key))
            .send()
            .await
            .map_err(|e| {
                if e.as_service_error().is_some_and(|s| s.is_no_such_key()) {
                    ObjectError::NotFound
                } else {
                    other(e)
                }
            })?;
        let io = |e: std::io::Error| ObjectError::Other(format!("writing {}: {e}", path.display()));
        let mut f = tokio::io::BufWriter::new(tokio::fs::File::create(path).await.map_err(io)?);
        let mut body = obj.body;
        let mut h = Md5::new();
        let mut n = 0u64;
        while let Some(chunk) = body
            .try_next()
            .await
            .map_err(|e| ObjectError::Other(format!("reading {key}: {e}")))?
        {
            h.update(&chunk);
            n += chunk.len() as u64;
            f.write_all(&chunk).await.map_err(io)?;
        }
        f.flush().await.map_err(io)?;
        Ok((n, hex(&h.finalize())))
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>, ObjectError> {
        let mut out = Vec::new();
        let mut token = None;
        loop {
            let page = self
                .client
                .list_objects_v2()
                .bucket(&self.bucket)
                .prefix(self.key(prefix))
                .set_continuation_token(token)
                .send()
                .await
                .map_err(other)?;
            for o in page.contents() {
                if let Some(k) = o.key().and_then(|k| k.strip_prefix(&self.prefix)) {
                    out.push(k.to_string());
                }
            }
            token = page.next_continuation_token().map(str::to_string);
            if token.is_none() {
                return Ok(out);
            }
        }
    }

    async fn delete(&self, key: &str) -> Result<(), ObjectError> {
        self.client
            .delete_object()
            .bucket(&self.bucket)
            .key(self.key(key))
            .send()
            .await
            .map_err(other)?;
        Ok(())
    }
}
