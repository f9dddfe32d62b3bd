//! etcd watches over the JSON gateway: `POST /v3/watch` with a create request answers a chunked
//! stream that never ends, one JSON object per line (`{"result":{...}}` or `{"error":{...}}`).
//!
//! A watch starts at a known revision, so no change between a read and the watch is missed. It
//! ends (and the caller re-reads and re-watches) when etcd cancels it, typically because the start
//! revision was compacted away, or when the stream breaks.

use super::client::{int, kv, message_of, prefix_end, Etcd, Kv};
use super::EtcdError;
use crate::base64;
use crate::http::client::BodyStream;
use crate::json;
use crate::jsonread::{self, Value};

/// One change to a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The key was created or changed.
    Put(Kv),
    /// The key was deleted (or its lease expired); only `key` and `mod_revision` are set.
    Delete(Kv),
}

/// What one line of the watch stream said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// The watch is established (the first message).
    Created,
    /// Changes, in revision order; `revision` is the store's revision when they were sent.
    Events {
        /// The header revision of the message.
        revision: i64,
        /// The changes.
        events: Vec<Event>,
    },
    /// A progress notification or other message without events.
    Progress,
}

/// An open watch on every key under a prefix.
#[derive(Debug)]
pub struct Watch {
    stream: BodyStream,
}

impl Watch {
    /// Watches every key under `prefix` from `start_revision` on, and waits for etcd to confirm.
    pub async fn open(etcd: &Etcd, prefix: &[u8], start_revision: i64) -> Result<Watch, EtcdError> {
        let create = json::Object::new()
            .str("key", &base64::encode(prefix))
            .str("range_end", &base64::encode(&prefix_end(prefix)))
            .str("start_revision", &start_revision.to_string())
            .finish();
        let body = json::Object::new().raw("create_request", &create).finish();
        let mut watch = Watch {
            stream: etcd.stream("/v3/watch", &body).await?,
        };
        match watch.next().await? {
            Message::Created => Ok(watch),
            other => Err(EtcdError::BadReply(format!(
                "watch did not start: {other:?}"
            ))),
        }
    }

    /// The next message. Waits as long as nothing changes; a broken stream, a cancelled watch
    /// (compaction) or an error message is an `Err` and ends the watch.
    pub async fn next(&mut self) -> Result<Message, EtcdError> {
        loop {
            let line = self
                .stream
                .next_line()
                .await
                .map_err(|e| EtcdError::Unreachable(format!("watch stream: {e}")))?
                .ok_or_else(|| EtcdError::Unreachable("watch stream ended".into()))?;
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            return parse_message(&line);
        }
    }
}

/// Parses one line of a watch stream.
pub fn parse_message(line: &[u8]) -> Result<Message, EtcdError> {
    let v = jsonread::parse(line).map_err(|e| EtcdError::BadReply(format!("watch: {e}")))?;
    if let Some(err) = v.get("error") {
        return Err(EtcdError::Status {
            status: 200,
            message: message_of(err),
        });
    }
    let r = v
        .get("result")
        .ok_or_else(|| EtcdError::BadReply("watch message without result".into()))?;
    let flag = |name: &str| r.get(name).and_then(Value::as_bool).unwrap_or(false);
    if flag("canceled") {
        let compacted = int(r, &["compact_revision"]);
        let reason = r.get("cancel_reason").and_then(Value::as_str).unwrap_or("");
        return Err(if compacted > 0 {
            EtcdError::Compacted(compacted)
        } else {
            EtcdError::Status {
                status: 200,
                message: format!("watch canceled: {reason}"),
            }
        });
    }
    if flag("created") {
        return Ok(Message::Created);
    }
    let Some(list) = r.get("events") else {
        return Ok(Message::Progress);
    };
    let list = list
        .as_array()
        .ok_or_else(|| EtcdError::BadReply("events is not an array".into()))?;
    let mut events = Vec::with_capacity(list.len());
    for e in list {
        let pair = kv(e.get("kv").unwrap_or(&Value::Null))?;
        events.push(match e.get("type").and_then(Value::as_str) {
            Some("DELETE") => Event::Delete(pair),
            None | Some("PUT") => Event::Put(pair),
            Some(other) => return Err(EtcdError::BadReply(format!("event type {other:?}"))),
        });
    }
    Ok(Message::Events {
        revision: int(r, &["header", "revision"]),
        events,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_gateway_stream() {
        let created = br#"{"result":{"header":{"revision":"4"},"created":true}}"#;
        assert_eq!(parse_message(created).unwrap(), Message::Created);
        let put = br#"{"result":{"header":{"revision":"5"},"events":[{"kv":{"key":"L21pbmkvYQ==","create_revision":"5","mod_revision":"5","version":"1","value":"YmFy","lease":"26"}}]}}"#;
        let Message::Events { revision, events } = parse_message(put).unwrap() else {
            panic!("not events")
        };
        assert_eq!(revision, 5);
        assert_eq!(
            events,
            [Event::Put(Kv {
                key: b"/mini/a".to_vec(),
                value: b"bar".to_vec(),
                lease: 26,
                mod_revision: 5
            })]
        );
        let del = br#"{"result":{"header":{"revision":"6"},"events":[{"type":"DELETE","kv":{"key":"L21pbmkvYQ==","mod_revision":"6"}}]}}"#;
        assert!(matches!(
            parse_message(del).unwrap(),
            Message::Events { events, .. } if matches!(&events[..], [Event::Delete(k)] if k.mod_revision == 6)
        ));
        let compacted =
            br#"{"result":{"header":{"raft_term":"2"},"canceled":true,"compact_revision":"6"}}"#;
        assert!(matches!(
            parse_message(compacted),
            Err(EtcdError::Compacted(6))
        ));
        let error = br#"{"error":{"grpc_code":14,"message":"etcdserver: no leader"}}"#;
        assert!(
            matches!(parse_message(error), Err(EtcdError::Status { message, .. }) if message.contains("no leader"))
        );
        assert_eq!(
            parse_message(br#"{"result":{"header":{}}}"#).unwrap(),
            Message::Progress
        );
    }

    #[test]
    fn refuses_hostile_lines() {
        for line in [
            &b"{"[..],
            b"[]",
            b"{\"result\":{\"events\":{}}}",
            b"{\"result\":{\"events\":[{\"type\":\"X\",\"kv\":{}}]}}",
            b"{\"result\":{\"events\":[{\"kv\":{\"key\":\"!\"}}]}}",
        ] {
            assert!(
                parse_message(line).is_err(),
                "{}",
                String::from_utf8_lossy(line)
            );
        }
    }
}
