//! The writer task of a connection: the only code that writes to its socket.

use std::collections::VecDeque;
use std::sync::Arc;

use futures_util::stream::SplitSink;
use futures_util::SinkExt;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use crate::conn::Conn;
use crate::outbox::Outbound;
use crate::ws::Io;

/// Drains the connection's outbox into the socket, one flush per batch, until the close
/// frame is sent.
pub(crate) async fn write_loop(mut sink: SplitSink<WebSocketStream<Io>, Message>, conn: Arc<Conn>) {
    let mut batch = VecDeque::new();
    loop {
        let close = conn.outbox.take(&mut batch).await;
        for item in batch.drain(..) {
            let msg = match item {
                Outbound::Text(text) => Message::Text(text),
                Outbound::Ping => Message::Ping(Default::default()),
            };
            if sink.feed(msg).await.is_err() {
                return;
            }
        }
        if batch.capacity() > 64 {
            batch = VecDeque::new();
        }
        if sink.flush().await.is_err() {
            return;
        }
        if let Some(signal) = close {
            let frame = CloseFrame {
                code: CloseCode::from(signal.code),
                reason: signal.reason.into(),
            };
            let _ = sink.send(Message::Close(Some(frame))).await;
            let _ = sink.close().await;
            return;
        }
    }
}
