//! Amazon S3 (and S3-compatible servers): the client ([`client`]), the `type = "s3"` source
//! (new objects in a bucket, [`source`]) and the `type = "s3"` sink (JSON lines under
//! `dt=…/hour=…` partitions, uploaded per checkpoint, [`sink`]).

pub mod client;
pub mod sink;
pub mod source;

pub use client::{S3Connection, get_object, get_object_blocking, sdk_error};
pub use sink::{S3Sink, S3SinkConfig};
pub use source::{S3Lister, S3SourceConfig};
