//! The response body shared by every tower-shield layer.
//!
//! A layer that may refuse a request answers either with the inner service's body or with the
//! bytes of a refusal. [`ShieldBody`] is that choice, so layers stay generic over the inner body
//! and work unchanged under hyper, axum and tonic.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

pin_project! {
    /// A response body that is either the inner service's body or a refusal's bytes.
    ///
    /// The refusal side never fails; the error type is the inner body's.
    #[derive(Debug)]
    pub struct ShieldBody<B> {
        #[pin]
        kind: Kind<B>,
    }
}

pin_project! {
    #[project = KindProj]
    #[derive(Debug)]
    enum Kind<B> {
        Inner { #[pin] body: B },
        Full { data: Option<Bytes> },
    }
}

impl<B> ShieldBody<B> {
    /// Wraps the inner service's body.
    pub fn inner(body: B) -> Self {
        Self {
            kind: Kind::Inner { body },
        }
    }

    /// A body made of the given bytes (a refusal).
    pub fn full(data: Bytes) -> Self {
        let data = if data.is_empty() { None } else { Some(data) };
        Self {
            kind: Kind::Full { data },
        }
    }

    /// An empty body.
    pub fn empty() -> Self {
        Self {
            kind: Kind::Full { data: None },
        }
    }

    /// Maps a response of the inner service into a response with this body.
    pub fn wrap(response: http::Response<B>) -> http::Response<Self> {
        response.map(Self::inner)
    }
}

impl<B> From<Bytes> for ShieldBody<B> {
    fn from(data: Bytes) -> Self {
        Self::full(data)
    }
}

impl<B> Default for ShieldBody<B> {
    fn default() -> Self {
        Self::empty()
    }
}

impl<B> Body for ShieldBody<B>
where
    B: Body<Data = Bytes>,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        match self.project().kind.project() {
            KindProj::Inner { body } => body.poll_frame(cx),
            KindProj::Full { data } => Poll::Ready(data.take().map(|d| Ok(Frame::data(d)))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Inner { body } => body.is_end_stream(),
            Kind::Full { data } => data.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Inner { body } => body.size_hint(),
            Kind::Full { data } => {
                SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{BodyExt, Full};

    #[tokio::test]
    async fn full_body_reports_exact_size_and_ends() {
        let body: ShieldBody<Full<Bytes>> = ShieldBody::full(Bytes::from_static(b"hello"));
        assert_eq!(body.size_hint().exact(), Some(5));
        assert!(!body.is_end_stream());
        let collected = body.collect().await.unwrap().to_bytes();
        assert_eq!(&collected[..], b"hello");
    }

    #[tokio::test]
    async fn empty_body_is_end_of_stream() {
        let body: ShieldBody<Full<Bytes>> = ShieldBody::full(Bytes::new());
        assert!(body.is_end_stream());
        assert_eq!(body.size_hint().exact(), Some(0));
        let collected = body.collect().await.unwrap().to_bytes();
        assert!(collected.is_empty());
    }

    #[tokio::test]
    async fn inner_trailers_and_end_of_stream_are_forwarded() {
        // A gRPC answer ends with trailers (`grpc-status`): they must pass through untouched.
        let mut trailers = http::HeaderMap::new();
        trailers.insert("grpc-status", http::HeaderValue::from_static("0"));
        let inner =
            Full::new(Bytes::from_static(b"msg")).with_trailers(async { Some(Ok(trailers)) });
        let body = ShieldBody::inner(inner);
        assert!(!body.is_end_stream());
        let collected = body.collect().await.unwrap();
        assert_eq!(collected.trailers().unwrap()["grpc-status"], "0");
        assert_eq!(&collected.to_bytes()[..], b"msg");

        let empty = ShieldBody::inner(http_body_util::Empty::<Bytes>::new());
        assert!(empty.is_end_stream());
        assert_eq!(empty.size_hint().exact(), Some(0));
    }

    #[tokio::test]
    async fn full_body_is_done_after_its_one_frame() {
        let mut body: ShieldBody<Full<Bytes>> = ShieldBody::full(Bytes::from_static(b"abc"));
        let frame = body.frame().await.unwrap().unwrap();
        assert_eq!(frame.into_data().unwrap(), "abc");
        assert!(body.is_end_stream());
        assert_eq!(body.size_hint().exact(), Some(0));
        assert!(body.frame().await.is_none());
    }

    #[tokio::test]
    async fn inner_body_is_forwarded() {
        let body = ShieldBody::inner(Full::new(Bytes::from_static(b"abc")));
        assert_eq!(body.size_hint().exact(), Some(3));
        let collected = body.collect().await.unwrap().to_bytes();
        assert_eq!(&collected[..], b"abc");
    }
}
