import json
from datetime import datetime, timezone


def handler(event, context):
    name = (event.get("queryStringParameters") or {}).get("name") or "World"
    return {
        "statusCode": 200,
        "headers": {"Content-Type": "application/json", "Access-Control-Allow-Origin": "*"},
        "body": json.dumps({
            "message": f"Hello, {name}!",
            "timestamp": datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        }),
    }
