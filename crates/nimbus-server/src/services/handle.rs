//! `ServicesHandle`: the `Services` executors hand to functions (wasm guests call it
//! through their imports), made before the server runs and bound to the app it serves
//! when it does.

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock, Weak};
use std::time::{Duration, SystemTime};

use nimbus_core::BoxFuture;
use nimbus_core::services::{
    Access, Attribute, KvExpiration, KvPage, KvPutOptions, KvQuery, KvValue, Object, ObjectInfo,
    ObjectPage, ObjectQuery, OutgoingMessage, Publication, ReceivedMessage, SentMessage,
    ServiceCaller, ServiceError, ServiceErrorKind, Services,
};
use nimbus_store::{MessageAttribute, NewMessage, ObjectMeta};

use super::Principal;
use crate::events::{Events, Publish};
use crate::generation::Current;
use crate::telemetry::TraceContext;

/// The services, as the calling function may use them. Each call uses the app
/// generation current when it is made. Holds the generations weakly: they hold the
/// functions, whose executors hold this.
pub(crate) struct ServicesHandle {
    current: OnceLock<Weak<Current>>,
}

/// What every call needs: the events, the caller's grants and its trace.
struct Call {
    events: Arc<Events>,
    function: usize,
    trace: TraceContext,
}

impl ServicesHandle {
    pub(crate) fn new() -> ServicesHandle {
        ServicesHandle {
            current: OnceLock::new(),
        }
    }

    /// Serves calls from now on with the generation current at each call.
    pub(crate) fn bind(&self, current: &Arc<Current>) {
        if self.current.set(Arc::downgrade(current)).is_err() {
            tracing::warn!("the services were bound twice; keeping the first binding");
        }
    }

    fn call(&self, caller: ServiceCaller<'_>, access: Access) -> Result<Call, ServiceError> {
        let Some(current) = self.current.get().and_then(Weak::upgrade) else {
            return Err(access.error(
                ServiceErrorKind::Unavailable,
                "the services are not running: nimbus is starting or shutting down",
            ));
        };
        let events = current.load().events.clone();
        let Some(function) = events.functions.index(caller.function) else {
            return Err(access.error(
                ServiceErrorKind::Internal,
                format!("no function named `{}` is served", caller.function),
            ));
        };
        // The invocation's own trace header, as process functions send it back in
        // `X-Amzn-Trace-Id`: what the call causes becomes a child of the function's span.
        let trace = TraceContext::from_xray(caller.trace_id).unwrap_or_else(TraceContext::new_root);
        Ok(Call {
            events,
            function,
            trace,
        })
    }
}

impl Call {
    fn principal(&self) -> Principal<'_> {
        Principal::Function(&self.events.functions.list[self.function].spec)
    }
}

impl Services for ServicesHandle {
    fn queue_send<'a>(
        &'a self,
        caller: ServiceCaller<'a>,
        queue: &'a str,
        message: OutgoingMessage,
    ) -> BoxFuture<'a, Result<SentMessage, ServiceError>> {
        Box::pin(async move {
            let call = self.call(caller, Access::queue_send(queue))?;
            let new = NewMessage {
                body: message.body,
                delay: message.delay,
                attributes: store_attributes(message.attributes),
                group_id: message.group_id,
                deduplication_id: message.deduplication_id,
            };
            let sent = super::send_message(&call.events, call.principal(), queue, new, &call.trace)
                .await?;
            Ok(SentMessage {
                message_id: sent.message_id,
                md5_of_body: sent.md5_of_body,
                sequence_number: sent.sequence_number,
            })
        })
    }

    fn queue_receive<'a>(
        &'a self,
        caller: ServiceCaller<'a>,
        queue: &'a str,
        max_messages: u32,
        visibility_timeout: Option<Duration>,
    ) -> BoxFuture<'a, Result<Vec<ReceivedMessage>, ServiceError>> {
        Box::pin(async move {
            let call = self.call(caller, Access::queue_receive(queue))?;
            let messages = super::receive_messages(
                &call.events,
                call.principal(),
                queue,
                u64::from(max_messages),
                visibility_timeout,
            )
            .await?;
            Ok(messages
                .into_iter()
                .map(|m| ReceivedMessage {
                    message_id: m.message_id,
                    receipt_handle: m.receipt_handle,
                    body: m.body,
                    attributes: public_attributes(m.attributes),
                    receive_count: m.receive_count,
                    sent_at: m.sent_at,
                    group_id: m.group_id,
                })
                .collect())
        })
    }

    fn queue_delete<'a>(
        &'a self,
        caller: ServiceCaller<'a>,
        queue: &'a str,
        receipt_handle: &'a str,
    ) -> BoxFuture<'a, Result<(), ServiceError>> {
        Box::pin(async move {
            let call = self.call(caller, Access::queue_delete(queue))?;
            super::delete_message(
                &call.events,
                call.principal(),
                queue,
                receipt_handle.to_owned(),
            )
            .await?;
            Ok(())
        })
    }

    fn topic_publish<'a>(
        &'a self,
        caller: ServiceCaller<'a>,
        topic: &'a str,
        publication: Publication,
    ) -> BoxFuture<'a, Result<String, ServiceError>> {
        Box::pin(async move {
            let call = self.call(caller, Access::topic_publish(topic))?;
            let publish = Publish {
                message: publication.message,
                protocol_messages: std::collections::BTreeMap::new(),
                group_id: None,
                deduplication_id: None,
                subject: publication.subject,
                attributes: store_attributes(publication.attributes),
            };
            Ok(super::publish(&call.events, call.principal(), topic, publish, &call.trace).await?)
        })
    }

    fn bucket_put<'a>(
        &'a self,
        caller: ServiceCaller<'a>,
        bucket: &'a str,
        key: &'a str,
        data: Vec<u8>,
        content_type: Option<String>,
    ) -> BoxFuture<'a, Result<ObjectInfo, ServiceError>> {
        Box::pin(async move {
            let call = self.call(caller, Access::bucket_put(bucket, key))?;
            let meta = super::put_object(
                &call.events,
                call.principal(),
                bucket,
                key,
                data,
                content_type,
                &call.trace,
            )
            .await?;
            Ok(object_info(meta))
        })
    }

    fn bucket_get<'a>(
        &'a self,
        caller: ServiceCaller<'a>,
        bucket: &'a str,
        key: &'a str,
    ) -> BoxFuture<'a, Result<Option<Object>, ServiceError>> {
        Box::pin(async move {
            let call = self.call(caller, Access::bucket_get(bucket, key))?;
            let object = super::get_object(&call.events, call.principal(), bucket, key).await?;
            Ok(object.map(|(meta, data)| Object {
                info: object_info(meta),
                data,
            }))
        })
    }

    fn bucket_delete<'a>(
        &'a self,
        caller: ServiceCaller<'a>,
        bucket: &'a str,
        key: &'a str,
    ) -> BoxFuture<'a, Result<(), ServiceError>> {
        Box::pin(async move {
            let call = self.call(caller, Access::bucket_delete(bucket, key))?;
            super::delete_object(&call.events, call.principal(), bucket, key, &call.trace).await?;
            Ok(())
        })
    }

    fn bucket_list<'a>(
        &'a self,
        caller: ServiceCaller<'a>,
        bucket: &'a str,
        query: ObjectQuery,
    ) -> BoxFuture<'a, Result<ObjectPage, ServiceError>> {
        Box::pin(async move {
            let call = self.call(caller, Access::bucket_list(bucket))?;
            let list = super::list_objects(
                &call.events,
                call.principal(),
                bucket,
                query.prefix,
                query.start_after,
                super::page_size(query.max_keys.map(|n| n as usize)),
            )
            .await?;
            Ok(ObjectPage {
                objects: list.objects.into_iter().map(object_info).collect(),
                is_truncated: list.is_truncated,
                next_start_after: list.next_start_after,
            })
        })
    }

    fn kv_get<'a>(
        &'a self,
        caller: ServiceCaller<'a>,
        namespace: &'a str,
        key: &'a str,
    ) -> BoxFuture<'a, Result<Option<KvValue>, ServiceError>> {
        Box::pin(async move {
            let call = self.call(caller, Access::kv_get(namespace))?;
            Ok(super::kv_get(&call.events, call.principal(), namespace, key).await?)
        })
    }

    fn kv_put<'a>(
        &'a self,
        caller: ServiceCaller<'a>,
        namespace: &'a str,
        key: &'a str,
        value: Vec<u8>,
        options: KvPutOptions,
    ) -> BoxFuture<'a, Result<(), ServiceError>> {
        Box::pin(async move {
            let access = Access::kv_put(namespace);
            let expiration = match options.expiration {
                None => None,
                Some(KvExpiration::At(at)) => Some(at),
                Some(KvExpiration::Ttl(ttl)) => {
                    let Some(at) = SystemTime::now().checked_add(ttl) else {
                        return Err(access.error(
                            ServiceErrorKind::InvalidInput,
                            "the expiration TTL is too far in the future",
                        ));
                    };
                    Some(at)
                }
            };
            let call = self.call(caller, access)?;
            let put = nimbus_core::kv::KvPut {
                value,
                expiration,
                metadata: options.metadata,
            };
            super::kv_put(&call.events, call.principal(), namespace, key, put).await?;
            Ok(())
        })
    }

    fn kv_delete<'a>(
        &'a self,
        caller: ServiceCaller<'a>,
        namespace: &'a str,
        key: &'a str,
    ) -> BoxFuture<'a, Result<(), ServiceError>> {
        Box::pin(async move {
            let call = self.call(caller, Access::kv_delete(namespace))?;
            super::kv_delete(&call.events, call.principal(), namespace, key).await?;
            Ok(())
        })
    }

    fn kv_list<'a>(
        &'a self,
        caller: ServiceCaller<'a>,
        namespace: &'a str,
        query: KvQuery,
    ) -> BoxFuture<'a, Result<KvPage, ServiceError>> {
        Box::pin(async move {
            let call = self.call(caller, Access::kv_list(namespace))?;
            let query = nimbus_core::kv::KvListQuery {
                prefix: query.prefix,
                cursor: query.cursor,
                limit: super::page_size(query.limit.map(|n| n as usize)),
            };
            Ok(super::kv_list(&call.events, call.principal(), namespace, query).await?)
        })
    }
}

fn store_attributes(attributes: Vec<Attribute>) -> BTreeMap<String, MessageAttribute> {
    attributes
        .into_iter()
        .map(|a| {
            let attribute = MessageAttribute {
                data_type: a.data_type,
                value: a.value,
            };
            (a.name, attribute)
        })
        .collect()
}

/// A received message's attributes without nimbus's own, as the HTTP API shows them.
fn public_attributes(attributes: BTreeMap<String, MessageAttribute>) -> Vec<Attribute> {
    attributes
        .into_iter()
        .filter(|(name, _)| !name.starts_with("nimbus."))
        .map(|(name, a)| Attribute {
            name,
            data_type: a.data_type,
            value: a.value,
        })
        .collect()
}

fn object_info(meta: ObjectMeta) -> ObjectInfo {
    ObjectInfo {
        key: meta.key,
        size: meta.size,
        etag: meta.etag,
        content_type: meta.content_type,
        last_modified: meta.last_modified,
    }
}
