"""Stand-in functions for the state machine corpus: small, deterministic, no services."""

import time


def submit_job(event, context):
    return {"jobId": "job-" + event["name"], "submittedAt": time.time()}


def job_status(event, context):
    # A job runs for 1.5 s, then ends as its name says.
    if time.time() - event["submittedAt"] < 1.5:
        return {"status": "RUNNING"}
    return {"status": "FAILED" if "bad" in event["jobId"] else "SUCCEEDED"}


def copy_record(event, context):
    record = event["record"]
    return {"key": event["target"] + "/" + record["id"], "position": event["position"]}


class CardDeclined(Exception):
    pass


class Throttled(Exception):
    pass


def charge(event, context):
    card = event["card"]
    if card == "declined":
        raise CardDeclined("insufficient funds on " + card)
    if card == "throttled" and event["attempt"] == 0:
        raise Throttled("try again")
    if card == "broken":
        raise ValueError("card reader on fire")
    return {"charged": event["amount"], "card": card}


def add(event, context):
    return {"value": event["a"] + event["b"]}


def multiply(event, context):
    return {"value": event["a"] * event["b"]}


def resize(event, context):
    if event.endswith(".bad"):
        raise ValueError("cannot read " + event)
    return event.replace(".png", "-small.png")
