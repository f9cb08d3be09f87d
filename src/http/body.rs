//! The body of every response: the whole of it at once, a few chunks known at once (a
//! Socket.IO poll: slices of shared frames, never copied together), or a stream of
//! chunks fed by a task through a bounded channel (`GET /sse`).

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::{Frame, SizeHint};
use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::sync::mpsc;

/// A response body.
#[derive(Debug)]
pub struct Body(Inner);

#[derive(Debug)]
enum Inner {
    Full(Full<Bytes>),
    /// Written in order; the length is known.
    Chunks(std::collections::VecDeque<Bytes>, u64),
    /// Ends when the sender is dropped; dropping the body (the client went away) makes
    /// the sender's next send fail.
    Stream(mpsc::Receiver<Bytes>),
}

impl Body {
    /// A body of these bytes.
    pub fn full(b: Bytes) -> Body {
        Body(Inner::Full(Full::new(b)))
    }

    /// An empty body.
    pub fn empty() -> Body {
        Body::full(Bytes::new())
    }

    /// A body of these chunks, in order.
    pub fn chunks(chunks: Vec<Bytes>) -> Body {
        let len = chunks.iter().map(|c| c.len() as u64).sum();
        Body(Inner::Chunks(chunks.into(), len))
    }

    /// A body streamed from `rx`, chunk by chunk.
    pub fn stream(rx: mpsc::Receiver<Bytes>) -> Body {
        Body(Inner::Stream(rx))
    }
}

impl hyper::body::Body for Body {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        match &mut self.get_mut().0 {
            Inner::Full(f) => Pin::new(f).poll_frame(cx),
            Inner::Chunks(c, len) => {
                let next = c.pop_front();
                *len -= next.as_ref().map_or(0, |b| b.len() as u64);
                Poll::Ready(next.map(|b| Ok(Frame::data(b))))
            }
            Inner::Stream(rx) => rx.poll_recv(cx).map(|c| c.map(|b| Ok(Frame::data(b)))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.0 {
            Inner::Full(f) => f.is_end_stream(),
            Inner::Chunks(c, _) => c.is_empty(),
            Inner::Stream(_) => false,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.0 {
            Inner::Full(f) => f.size_hint(),
            Inner::Chunks(_, len) => SizeHint::with_exact(*len),
            Inner::Stream(_) => SizeHint::default(),
        }
    }
}
