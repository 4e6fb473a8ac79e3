//! A byte stream that is either plain TCP or TLS, so the rest of the adapter is written
//! once for both.

use tokio::io::{AsyncRead, AsyncWrite};

/// Anything the adapter can read and write bytes on.
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}

impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// A boxed connection to a client or a server.
pub type BoxIo = Box<dyn Io>;
