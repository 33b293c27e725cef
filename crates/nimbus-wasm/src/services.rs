//! The `nimbus:function` imports (queue, topic, bucket, kv): each call goes to the
//! `Services` the executor was given, as the invoking function, and a refusal is also
//! written to the invocation's log.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use nimbus_core::services::{
    Access, Attribute, KvExpiration, KvPutOptions, KvQuery, ObjectInfo, ObjectQuery,
    OutgoingMessage, Publication, ServiceCaller, ServiceError, ServiceErrorKind, Services,
};
use nimbus_core::{LogLine, LogSink, LogStream};

use crate::host::Host;
use crate::world::nimbus::function::{bucket, kv, queue, topic, types};

/// What a store knows to call the services as its invocation.
pub(crate) struct ServiceContext {
    pub(crate) services: Arc<dyn Services>,
    pub(crate) function: Arc<str>,
    pub(crate) request_id: Arc<str>,
    /// The invocation's X-Ray trace header, carried into what the calls cause.
    pub(crate) trace_id: Arc<str>,
    pub(crate) log_sink: Arc<dyn LogSink>,
}

impl ServiceContext {
    fn caller(&self) -> ServiceCaller<'_> {
        ServiceCaller {
            function: &self.function,
            request_id: &self.request_id,
            trace_id: &self.trace_id,
        }
    }

    /// Hands the error to the guest, logging refusals so the invocation's log says why
    /// a call failed even when the guest ignores the error.
    fn refused(&self, import: &str, e: ServiceError) -> types::Error {
        if matches!(
            e.kind,
            ServiceErrorKind::AccessDenied | ServiceErrorKind::Internal
        ) {
            let text = format!("nimbus:function/{import} refused ({}): {e}", e.kind);
            self.log_sink.log(LogLine {
                function: &self.function,
                request_id: Some(&self.request_id),
                stream: LogStream::Stderr,
                text: &text,
            });
        }
        types::Error {
            kind: match e.kind {
                ServiceErrorKind::AccessDenied => types::ErrorKind::AccessDenied,
                ServiceErrorKind::NotFound => types::ErrorKind::NotFound,
                ServiceErrorKind::InvalidInput => types::ErrorKind::InvalidInput,
                ServiceErrorKind::TooLarge => types::ErrorKind::TooLarge,
                ServiceErrorKind::Unavailable => types::ErrorKind::Unavailable,
                ServiceErrorKind::Internal => types::ErrorKind::Internal,
            },
            action: e.action,
            resource: e.resource,
            message: e.message,
        }
    }
}

impl types::Host for Host {}

impl queue::Host for Host {
    async fn send(
        &mut self,
        queue: String,
        message: queue::Outgoing,
    ) -> Result<queue::Sent, types::Error> {
        let cx = &self.services;
        let outgoing = OutgoingMessage {
            body: message.body,
            delay: message
                .delay_seconds
                .map(|s| Duration::from_secs(u64::from(s))),
            attributes: message.attributes.into_iter().map(attribute).collect(),
            group_id: message.group_id,
            deduplication_id: message.deduplication_id,
        };
        match cx.services.queue_send(cx.caller(), &queue, outgoing).await {
            Ok(sent) => Ok(queue::Sent {
                message_id: sent.message_id,
                md5_of_body: sent.md5_of_body,
                sequence_number: sent.sequence_number,
            }),
            Err(e) => Err(cx.refused("queue.send", e)),
        }
    }

    async fn receive(
        &mut self,
        queue: String,
        max_messages: u32,
        visibility_timeout_seconds: Option<u32>,
    ) -> Result<Vec<queue::Message>, types::Error> {
        let cx = &self.services;
        let visibility = visibility_timeout_seconds.map(|s| Duration::from_secs(u64::from(s)));
        match cx
            .services
            .queue_receive(cx.caller(), &queue, max_messages, visibility)
            .await
        {
            Ok(messages) => Ok(messages
                .into_iter()
                .map(|m| queue::Message {
                    message_id: m.message_id,
                    receipt_handle: m.receipt_handle,
                    body: m.body,
                    attributes: m.attributes.into_iter().map(wit_attribute).collect(),
                    receive_count: m.receive_count,
                    sent_timestamp_ms: epoch_ms(m.sent_at),
                    group_id: m.group_id,
                })
                .collect()),
            Err(e) => Err(cx.refused("queue.receive", e)),
        }
    }

    async fn delete(&mut self, queue: String, receipt_handle: String) -> Result<(), types::Error> {
        let cx = &self.services;
        cx.services
            .queue_delete(cx.caller(), &queue, &receipt_handle)
            .await
            .map_err(|e| cx.refused("queue.delete", e))
    }
}

impl topic::Host for Host {
    async fn publish(
        &mut self,
        topic: String,
        message: String,
        subject: Option<String>,
        attributes: Vec<types::Attribute>,
    ) -> Result<String, types::Error> {
        let cx = &self.services;
        let publication = Publication {
            message,
            subject,
            attributes: attributes.into_iter().map(attribute).collect(),
        };
        cx.services
            .topic_publish(cx.caller(), &topic, publication)
            .await
            .map_err(|e| cx.refused("topic.publish", e))
    }
}

impl bucket::Host for Host {
    async fn put(
        &mut self,
        bucket: String,
        key: String,
        data: Vec<u8>,
        content_type: Option<String>,
    ) -> Result<bucket::ObjectMeta, types::Error> {
        let cx = &self.services;
        match cx
            .services
            .bucket_put(cx.caller(), &bucket, &key, data, content_type)
            .await
        {
            Ok(info) => Ok(object_meta(info)),
            Err(e) => Err(cx.refused("bucket.put", e)),
        }
    }

    async fn get(
        &mut self,
        bucket: String,
        key: String,
    ) -> Result<Option<bucket::Object>, types::Error> {
        let cx = &self.services;
        match cx.services.bucket_get(cx.caller(), &bucket, &key).await {
            Ok(object) => Ok(object.map(|object| bucket::Object {
                meta: object_meta(object.info),
                data: object.data,
            })),
            Err(e) => Err(cx.refused("bucket.get", e)),
        }
    }

    async fn delete(&mut self, bucket: String, key: String) -> Result<(), types::Error> {
        let cx = &self.services;
        cx.services
            .bucket_delete(cx.caller(), &bucket, &key)
            .await
            .map_err(|e| cx.refused("bucket.delete", e))
    }

    async fn list_objects(
        &mut self,
        bucket: String,
        options: bucket::ListOptions,
    ) -> Result<bucket::ObjectList, types::Error> {
        let cx = &self.services;
        let query = ObjectQuery {
            prefix: options.prefix,
            start_after: options.start_after,
            max_keys: options.max_keys,
        };
        match cx.services.bucket_list(cx.caller(), &bucket, query).await {
            Ok(page) => Ok(bucket::ObjectList {
                objects: page.objects.into_iter().map(object_meta).collect(),
                is_truncated: page.is_truncated,
                next_start_after: page.next_start_after,
            }),
            Err(e) => Err(cx.refused("bucket.list-objects", e)),
        }
    }
}

impl kv::Host for Host {
    async fn get(
        &mut self,
        namespace: String,
        key: String,
    ) -> Result<Option<kv::Entry>, types::Error> {
        let cx = &self.services;
        match cx.services.kv_get(cx.caller(), &namespace, &key).await {
            Ok(value) => Ok(value.map(|v| kv::Entry {
                value: v.value,
                metadata: v.metadata,
                expiration: v.expiration.map(epoch_seconds),
            })),
            Err(e) => Err(cx.refused("kv.get", e)),
        }
    }

    async fn put(
        &mut self,
        namespace: String,
        key: String,
        value: Vec<u8>,
        options: kv::PutOptions,
    ) -> Result<(), types::Error> {
        let cx = &self.services;
        let expiration = match options.expiration {
            None => None,
            Some(kv::Expiration::TtlSeconds(s)) => Some(KvExpiration::Ttl(Duration::from_secs(s))),
            Some(kv::Expiration::AtEpochSeconds(s)) => {
                match UNIX_EPOCH.checked_add(Duration::from_secs(s)) {
                    Some(at) => Some(KvExpiration::At(at)),
                    None => {
                        let e = Access::kv_put(&namespace).error(
                            ServiceErrorKind::InvalidInput,
                            format!("expiration {s} is past the end of time"),
                        );
                        return Err(cx.refused("kv.put", e));
                    }
                }
            }
        };
        let options = KvPutOptions {
            expiration,
            metadata: options.metadata,
        };
        cx.services
            .kv_put(cx.caller(), &namespace, &key, value, options)
            .await
            .map_err(|e| cx.refused("kv.put", e))
    }

    async fn delete(&mut self, namespace: String, key: String) -> Result<(), types::Error> {
        let cx = &self.services;
        cx.services
            .kv_delete(cx.caller(), &namespace, &key)
            .await
            .map_err(|e| cx.refused("kv.delete", e))
    }

    async fn list_keys(
        &mut self,
        namespace: String,
        prefix: Option<String>,
        cursor: Option<String>,
        limit: Option<u32>,
    ) -> Result<kv::KeyList, types::Error> {
        let cx = &self.services;
        let query = KvQuery {
            prefix,
            cursor,
            limit,
        };
        match cx.services.kv_list(cx.caller(), &namespace, query).await {
            Ok(page) => Ok(kv::KeyList {
                keys: page
                    .keys
                    .into_iter()
                    .map(|k| kv::KeyInfo {
                        name: k.name,
                        expiration: k.expiration.map(epoch_seconds),
                        metadata: k.metadata,
                    })
                    .collect(),
                list_complete: page.list_complete,
                cursor: page.cursor,
            }),
            Err(e) => Err(cx.refused("kv.list-keys", e)),
        }
    }
}

fn attribute(a: types::Attribute) -> Attribute {
    Attribute {
        name: a.name,
        data_type: a.data_type,
        value: a.value,
    }
}

fn wit_attribute(a: Attribute) -> types::Attribute {
    types::Attribute {
        name: a.name,
        data_type: a.data_type,
        value: a.value,
    }
}

fn object_meta(info: ObjectInfo) -> bucket::ObjectMeta {
    bucket::ObjectMeta {
        key: info.key,
        size: info.size,
        etag: info.etag,
        content_type: info.content_type,
        last_modified_ms: epoch_ms(info.last_modified),
    }
}

fn epoch_ms(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn epoch_seconds(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}
