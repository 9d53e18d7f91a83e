#!/usr/bin/env python3
"""Small helper for the local Kinesis server (kinesis-local, started by scripts/services.sh).

  python3 scripts/kinesis_local.py create STREAM SHARDS   # create and wait until ACTIVE
  python3 scripts/kinesis_local.py read STREAM [N]        # print up to N records' data (all shards)
  python3 scripts/kinesis_local.py delete STREAM

Talks plain JSON to $OSPREY_KINESIS_ENDPOINT (default http://127.0.0.1:4568); the local server
accepts any credentials, so requests carry a dummy signature. Standard library only.
"""
import base64
import json
import os
import sys
import time
import urllib.error
import urllib.request

ENDPOINT = os.environ.get("OSPREY_KINESIS_ENDPOINT", "http://127.0.0.1:4568")


def call(action, body):
    req = urllib.request.Request(
        ENDPOINT,
        data=json.dumps(body).encode(),
        headers={
            "Content-Type": "application/x-amz-json-1.1",
            "X-Amz-Target": "Kinesis_20131202." + action,
            "X-Amz-Date": time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()),
            "Authorization": "AWS4-HMAC-SHA256 Credential=local/20240101/us-east-1/kinesis/"
            "aws4_request, SignedHeaders=host, Signature=0",
        },
    )
    try:
        with urllib.request.urlopen(req) as r:
            text = r.read()
            return json.loads(text) if text else {}
    except urllib.error.HTTPError as e:
        sys.exit(f"{action}: {e.code} {e.read().decode()}")


def create(stream, shards):
    call("CreateStream", {"StreamName": stream, "ShardCount": int(shards)})
    for _ in range(300):
        s = call("DescribeStreamSummary", {"StreamName": stream})
        if s["StreamDescriptionSummary"]["StreamStatus"] == "ACTIVE":
            print(f"{stream}: ACTIVE, {shards} shards")
            return
        time.sleep(0.1)
    sys.exit(f"{stream} did not become ACTIVE")


def read(stream, limit):
    shards = call("ListShards", {"StreamName": stream})["Shards"]
    n = 0
    for shard in shards:
        it = call(
            "GetShardIterator",
            {"StreamName": stream, "ShardId": shard["ShardId"], "ShardIteratorType": "TRIM_HORIZON"},
        )["ShardIterator"]
        while it and n < limit:
            r = call("GetRecords", {"ShardIterator": it, "Limit": 1000})
            for rec in r["Records"]:
                print(base64.b64decode(rec["Data"]).decode(errors="replace"))
                n += 1
                if n >= limit:
                    return
            if not r["Records"] and r.get("MillisBehindLatest", 0) == 0:
                break
            it = r.get("NextShardIterator")


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    cmd, stream = sys.argv[1], sys.argv[2]
    if cmd == "create":
        create(stream, sys.argv[3] if len(sys.argv) > 3 else 1)
    elif cmd == "read":
        read(stream, int(sys.argv[3]) if len(sys.argv) > 3 else 10**12)
    elif cmd == "delete":
        call("DeleteStream", {"StreamName": stream})
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
