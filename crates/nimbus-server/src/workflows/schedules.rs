//! A state machine's `schedule` events. Each fire is a message on the machine's start queue,
//! committed together with the claim of its slot (`Events::run_schedule`, as a function's
//! schedule fires), and one execution is started per message, named by the message's id: a
//! message received again after a crash finds its execution and starts nothing twice.

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinSet;

use super::{StartRequest, Workflows};
use crate::Shutdown;
use crate::events::{Events, message_trace, start_queue};

/// Starts the schedules of every state machine of `events`' app and the consumers that
/// start their executions.
pub(crate) fn spawn(
    events: &Arc<Events>,
    workflows: &Arc<Workflows>,
    tasks: &mut JoinSet<()>,
    shutdown: &Shutdown,
) {
    for machine in &events.resources.state_machines {
        let enabled: Vec<_> = machine.schedules.iter().filter(|s| s.enabled).collect();
        if enabled.is_empty() {
            continue;
        }
        let queue = start_queue(&machine.name);
        for schedule in enabled {
            tasks.spawn(events.clone().run_schedule(
                queue.clone(),
                schedule.clone(),
                None,
                shutdown.clone(),
            ));
        }
        tasks.spawn(start_fired(
            events.clone(),
            workflows.clone(),
            machine.name.clone(),
            queue,
            shutdown.clone(),
        ));
    }
}

/// Starts one execution per fire waiting in `queue`.
async fn start_fired(
    events: Arc<Events>,
    workflows: Arc<Workflows>,
    machine: String,
    queue: String,
    mut shutdown: Shutdown,
) {
    loop {
        let Some(batch) = events
            .next_batch(&queue, 1, Duration::ZERO, None, &mut shutdown)
            .await
        else {
            return;
        };
        for message in batch {
            let served = match workflows.machine(&machine) {
                Ok(served) => served,
                Err(e) => {
                    // The definition did not check: the fire waits (and is retried after
                    // the visibility timeout) until a reload serves the machine.
                    tracing::warn!(state_machine = %machine, "a schedule fired for a state machine that is not served: {}", e.message);
                    continue;
                }
            };
            let request = StartRequest {
                name: Some(message.message_id.clone()),
                input: message.body.clone(),
                trace: Some(message_trace(&message)),
                parent: None,
            };
            match workflows.start(&served, request).await {
                Ok(_) => {}
                // Started before a crash kept the message from being deleted.
                Err(e) if e.code == "ExecutionAlreadyExists" => {}
                Err(e) => {
                    tracing::warn!(state_machine = %machine, "starting a scheduled execution: {}: {}", e.code, e.message);
                    if e.code == "InternalFailure" {
                        // Left for a retry after the visibility timeout.
                        continue;
                    }
                }
            }
            events.delete(&queue, &message).await;
        }
    }
}
