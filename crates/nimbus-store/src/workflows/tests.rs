//! Tests of the workflow journal through the `WorkflowStore` trait, on temporary state folders.

use nimbus_core::workflow::store::{
    Created, Ending, ExecutionFilter, NewExecution, WorkflowStore, WorkflowStoreError,
};

use crate::Store;

type TestResult = Result<(), Box<dyn std::error::Error>>;

fn open() -> Result<(tempfile::TempDir, Store), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let store = Store::open(dir.path())?;
    Ok((dir, store))
}

fn new(machine: &str, name: &str, start_us: i64) -> NewExecution {
    NewExecution {
        arn: format!("arn:aws:states:us-east-1:000000000000:execution:{machine}:{name}"),
        machine_arn: format!("arn:aws:states:us-east-1:000000000000:stateMachine:{machine}"),
        name: name.to_owned(),
        definition: r#"{"StartAt":"A","States":{"A":{"Type":"Pass","End":true}}}"#.to_owned(),
        input: "{}".to_owned(),
        start_us,
        trace: None,
        parent: None,
    }
}

fn events(ids: std::ops::RangeInclusive<u64>) -> Vec<(u64, String)> {
    ids.map(|id| (id, format!(r#"{{"id":{id}}}"#))).collect()
}

#[test]
fn an_execution_is_created_once_per_name_and_machine() -> TestResult {
    let (_dir, store) = open()?;
    let first = new("orders", "run-1", 10);
    assert_eq!(
        store.create_execution(&first, &events(1..=2), None)?,
        Created::New
    );
    let Created::Exists(existing) = store.create_execution(&first, &events(1..=2), None)? else {
        panic!("the second create found nothing");
    };
    assert_eq!(existing.status, "RUNNING");
    assert_eq!(existing.last_event_id, 2);
    assert_eq!(existing.definition, first.definition);
    // The same name under another state machine is another execution.
    assert_eq!(
        store.create_execution(&new("billing", "run-1", 11), &events(1..=1), None)?,
        Created::New
    );
    Ok(())
}

#[test]
fn appends_continue_the_history_and_an_ending_closes_it() -> TestResult {
    let (_dir, store) = open()?;
    let execution = new("orders", "run-1", 10);
    store.create_execution(&execution, &events(1..=2), None)?;
    store.append(&execution.arn, &events(3..=5), None)?;
    // A gap or a repeat is refused and writes nothing.
    let gap = store.append(&execution.arn, &events(7..=8), None);
    assert!(
        matches!(gap, Err(WorkflowStoreError::Conflict(..))),
        "{gap:?}"
    );
    let repeat = store.append(&execution.arn, &events(5..=6), None);
    assert!(
        matches!(repeat, Err(WorkflowStoreError::Conflict(..))),
        "{repeat:?}"
    );
    let ending = Ending {
        status: "SUCCEEDED".to_owned(),
        stop_us: 20,
        output: Some(r#"{"ok":true}"#.to_owned()),
        error: None,
        cause: None,
    };
    store.append(&execution.arn, &events(6..=6), Some(&ending))?;
    let record = store.execution(&execution.arn)?.ok_or("no execution")?;
    assert_eq!(record.status, "SUCCEEDED");
    assert_eq!(record.stop_us, Some(20));
    assert_eq!(record.output.as_deref(), Some(r#"{"ok":true}"#));
    assert_eq!(record.last_event_id, 6);
    // An ended execution takes no more events.
    let late = store.append(&execution.arn, &events(7..=7), None);
    assert!(
        matches!(late, Err(WorkflowStoreError::Conflict(..))),
        "{late:?}"
    );
    let history = store.history(&execution.arn, 0, 100, false)?;
    assert_eq!(
        history.iter().map(|(id, _)| *id).collect::<Vec<_>>(),
        vec![1, 2, 3, 4, 5, 6]
    );
    assert_eq!(
        store
            .history(&execution.arn, 2, 2, false)?
            .iter()
            .map(|(id, _)| *id)
            .collect::<Vec<_>>(),
        vec![3, 4]
    );
    assert_eq!(
        store
            .history(&execution.arn, 0, 2, true)?
            .iter()
            .map(|(id, _)| *id)
            .collect::<Vec<_>>(),
        vec![6, 5]
    );
    assert_eq!(
        store
            .history(&execution.arn, 5, 2, true)?
            .iter()
            .map(|(id, _)| *id)
            .collect::<Vec<_>>(),
        vec![4, 3]
    );
    let missing = store.append("arn:nothing", &events(1..=1), None);
    assert!(
        matches!(missing, Err(WorkflowStoreError::NotFound(_))),
        "{missing:?}"
    );
    Ok(())
}

#[test]
fn listing_pages_newest_first_and_running_ones_survive_reopening() -> TestResult {
    let (dir, store) = open()?;
    for i in 0..5 {
        store.create_execution(
            &new("orders", &format!("run-{i}"), 100 + i),
            &events(1..=1),
            None,
        )?;
    }
    store.create_execution(&new("billing", "run-x", 50), &events(1..=1), None)?;
    let done = Ending {
        status: "FAILED".to_owned(),
        stop_us: 200,
        output: None,
        error: Some("Boom".to_owned()),
        cause: Some("it broke".to_owned()),
    };
    store.append(&new("orders", "run-2", 0).arn, &events(2..=2), Some(&done))?;
    let machine_arn = new("orders", "", 0).machine_arn;
    let page = |before: Option<String>| {
        store.list_executions(&ExecutionFilter {
            machine_arn: Some(machine_arn.clone()),
            status: None,
            before,
            limit: 2,
        })
    };
    let first = page(None)?;
    assert_eq!(
        first.iter().map(|e| e.name.as_str()).collect::<Vec<_>>(),
        ["run-4", "run-3"]
    );
    let second = page(first.last().map(|e| e.arn.clone()))?;
    assert_eq!(
        second.iter().map(|e| e.name.as_str()).collect::<Vec<_>>(),
        ["run-2", "run-1"]
    );
    let failed = store.list_executions(&ExecutionFilter {
        status: Some("FAILED".to_owned()),
        limit: 10,
        ..ExecutionFilter::default()
    })?;
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].error.as_deref(), Some("Boom"));
    drop(store);
    let store = Store::open(dir.path())?;
    let running = store.running_executions()?;
    assert_eq!(
        running.iter().map(|e| e.name.as_str()).collect::<Vec<_>>(),
        ["run-x", "run-0", "run-1", "run-3", "run-4"]
    );
    Ok(())
}
