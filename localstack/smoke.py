"""Smoke checks against a stack deployed by infra/deploy-localstack.sh (run by smoke.sh).
Prints one 'ok   ...' or 'FAIL ...' line per check."""
import os
import sys
import time
import traceback
import urllib.request

import boto3
from botocore.config import Config

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "infra"))
import deploy_localstack as dl  # noqa: E402

STACK, MAX_RECEIVE = sys.argv[1], int(sys.argv[2])
CFG = Config(retries={"max_attempts": 2}, connect_timeout=5, read_timeout=30)
sqs = boto3.client("sqs", config=CFG)
ddb = boto3.client("dynamodb", config=CFG)


def result(what, ok, detail=""):
    print(f"{'ok  ' if ok else 'FAIL'} {what}" + ("" if ok else f"  ({detail})"), flush=True)


def case(what):
    def wrap(fn):
        try:
            fn()
            result(what, True)
        except Exception as e:  # report and go on
            result(what, False, f"{type(e).__name__}: {e}")
            traceback.print_exc(file=sys.stderr)
        return fn
    return wrap


for what, ok, detail in dl.check(STACK, MAX_RECEIVE):
    result(f"stack: {what}", ok, detail)
out = dl.outputs(STACK)
intake, intake_dlq = out["IntakeQueueUrl"], out["IntakeDlqUrl"]
tasks, limits, accounts = out["TasksTableName"], out["LimitsTableName"], out["AccountsTableName"]
RUN = str(time.time_ns())  # keys unique per run, so a reused stack does not matter


def drain(url):
    """Leftovers of an interrupted earlier run (the stack may be reused)."""
    while ms := sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=0).get("Messages"):
        for m in ms:
            sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])


@case("sqs: send, receive (count 1), delete")
def _():
    drain(intake)
    drain(intake_dlq)
    sqs.send_message(QueueUrl=intake, MessageBody="4503599627370495")
    ms = sqs.receive_message(QueueUrl=intake, MaxNumberOfMessages=10, WaitTimeSeconds=2,
                             AttributeNames=["ApproximateReceiveCount"])["Messages"]
    assert [m["Body"] for m in ms] == ["4503599627370495"], ms
    assert ms[0]["Attributes"]["ApproximateReceiveCount"] == "1", ms[0]["Attributes"]
    sqs.delete_message(QueueUrl=intake, ReceiptHandle=ms[0]["ReceiptHandle"])
    again = sqs.receive_message(QueueUrl=intake, VisibilityTimeout=0).get("Messages", [])
    assert again == [], again


@case("sqs: batch send; a received message stays invisible")
def _():
    sqs.send_message_batch(QueueUrl=intake, Entries=[{"Id": str(i), "MessageBody": f"b{i}"} for i in range(3)])
    got = []
    for _ in range(5):
        got += sqs.receive_message(QueueUrl=intake, MaxNumberOfMessages=10, VisibilityTimeout=30).get("Messages", [])
        if len(got) >= 3:
            break
    assert sorted(m["Body"] for m in got) == ["b0", "b1", "b2"], got
    assert sqs.receive_message(QueueUrl=intake, MaxNumberOfMessages=10).get("Messages", []) == []
    sqs.delete_message_batch(QueueUrl=intake, Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]}
                                                       for i, m in enumerate(got)])


@case(f"sqs: after {MAX_RECEIVE} receives the message moves to the DLQ")
def _():
    sqs.send_message(QueueUrl=intake, MessageBody="poison")
    for i in range(MAX_RECEIVE):
        ms = sqs.receive_message(QueueUrl=intake, VisibilityTimeout=0, WaitTimeSeconds=1).get("Messages", [])
        assert [m["Body"] for m in ms] == ["poison"], (i, ms)
    assert sqs.receive_message(QueueUrl=intake, VisibilityTimeout=0, WaitTimeSeconds=1).get("Messages", []) == []
    dead = sqs.receive_message(QueueUrl=intake_dlq, WaitTimeSeconds=2).get("Messages", [])
    assert [m["Body"] for m in dead] == ["poison"], dead
    sqs.delete_message(QueueUrl=intake_dlq, ReceiptHandle=dead[0]["ReceiptHandle"])


@case("dynamodb: conditional put (first wins, second refused)")
def _():
    item = {"task_id": {"S": RUN}, "state": {"S": "queued"}, "open_state": {"S": "queued"},
            "created_ms": {"N": "1"}, "updated_ms": {"N": "1"}}
    ddb.put_item(TableName=tasks, Item=item, ConditionExpression="attribute_not_exists(task_id)")
    try:
        ddb.put_item(TableName=tasks, Item=item, ConditionExpression="attribute_not_exists(task_id)")
        raise AssertionError("second conditional put succeeded")
    except ddb.exceptions.ConditionalCheckFailedException:
        pass
    # a guarded transition queued -> routed, then the same guard fails
    upd = dict(TableName=tasks, Key={"task_id": item["task_id"]},
               UpdateExpression="SET #s = :to, open_state = :to", ConditionExpression="#s = :from",
               ExpressionAttributeNames={"#s": "state"},
               ExpressionAttributeValues={":from": {"S": "queued"}, ":to": {"S": "routed"}})
    ddb.update_item(**upd)
    try:
        ddb.update_item(**upd)
        raise AssertionError("stale transition succeeded")
    except ddb.exceptions.ConditionalCheckFailedException:
        pass
    q = ddb.query(TableName=tasks, IndexName="open_by_updated", KeyConditionExpression="open_state = :s",
                  ExpressionAttributeValues={":s": {"S": "routed"}})
    assert RUN in [i["task_id"]["S"] for i in q["Items"]], q["Items"]


@case("dynamodb: ADD counter stops at its limit")
def _():
    key = {"pk": {"S": f"rps#{RUN}#1700000000"}}
    for _ in range(3):
        ddb.update_item(TableName=limits, Key=key, UpdateExpression="ADD n :one SET expires_at = :exp",
                        ConditionExpression="attribute_not_exists(n) OR n < :max",
                        ExpressionAttributeValues={":one": {"N": "1"}, ":max": {"N": "3"}, ":exp": {"N": "1"}})
    try:
        ddb.update_item(TableName=limits, Key=key, UpdateExpression="ADD n :one",
                        ConditionExpression="attribute_not_exists(n) OR n < :max",
                        ExpressionAttributeValues={":one": {"N": "1"}, ":max": {"N": "3"}})
        raise AssertionError("4th increment allowed")
    except ddb.exceptions.ConditionalCheckFailedException:
        pass


@case("dynamodb: TTL expiry (forced) removes an expired item")
def _():
    ddb.put_item(TableName=limits, Item={"pk": {"S": f"ttl-probe-{RUN}"}, "expires_at": {"N": str(int(time.time()) - 60)}})
    ddb.put_item(TableName=limits, Item={"pk": {"S": f"ttl-keep-{RUN}"}, "expires_at": {"N": str(int(time.time()) + 3600)}})
    endpoint = os.environ["AWS_ENDPOINT_URL"].rstrip("/")
    urllib.request.urlopen(urllib.request.Request(f"{endpoint}/_aws/dynamodb/expired", method="DELETE"), timeout=30).read()
    assert "Item" not in ddb.get_item(TableName=limits, Key={"pk": {"S": f"ttl-probe-{RUN}"}}, ConsistentRead=True)
    assert "Item" in ddb.get_item(TableName=limits, Key={"pk": {"S": f"ttl-keep-{RUN}"}}, ConsistentRead=True)


@case("dynamodb: account found through the key-hash GSI")
def _():
    acct = RUN.rjust(64, "a")
    ddb.put_item(TableName=accounts, Item={"account_id": {"S": acct}, "key_hash": {"S": acct},
                                           "balance_micros": {"N": "10000000"}},
                 ConditionExpression="attribute_not_exists(account_id)")
    q = ddb.query(TableName=accounts, IndexName="by_key_hash", KeyConditionExpression="key_hash = :h",
                  ExpressionAttributeValues={":h": {"S": acct}})
    assert [i["account_id"]["S"] for i in q["Items"]] == [acct], q["Items"]
