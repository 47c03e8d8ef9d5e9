"""Deploys infra/template.yaml's non-Lambda part (queues, DLQs, tables) into a running LocalStack
through CloudFormation, prints the outputs and writes them as an env file. Run via
deploy-localstack.sh (it picks the LocalStack venv's Python, which has boto3).

  deploy [--env-file PATH]   create or update the stack, print outputs
  check                      verify the deployed stack (redrive, visibility, TTL, GSIs)
  delete                     delete the stack
  selftest                   deploy, check, delete (with a throwaway name prefix)
"""
import argparse
import json
import os
import sys
import time
from urllib.parse import urlparse

import boto3
import botocore.exceptions
from botocore.config import Config

HERE = os.path.dirname(os.path.abspath(__file__))
TEMPLATE = os.path.join(HERE, "template.yaml")
ENDPOINT = os.environ.setdefault("AWS_ENDPOINT_URL", "http://127.0.0.1:4566")
for k, v in (("AWS_ACCESS_KEY_ID", "test"), ("AWS_SECRET_ACCESS_KEY", "test"), ("AWS_REGION", "us-east-1")):
    os.environ.setdefault(k, v)
os.environ.setdefault("AWS_DEFAULT_REGION", os.environ["AWS_REGION"])
if urlparse(ENDPOINT).hostname not in ("127.0.0.1", "localhost"):
    sys.exit(f"deploy: AWS_ENDPOINT_URL={ENDPOINT} is not loopback; this script only targets LocalStack")

CFG = Config(retries={"max_attempts": 3}, connect_timeout=5, read_timeout=60)
cfn = boto3.client("cloudformation", config=CFG)
sqs = boto3.client("sqs", config=CFG)
ddb = boto3.client("dynamodb", config=CFG)

# Output name -> the variable the functions (and the e2e poller) read.
ENV_NAMES = {
    "IntakeQueueUrl": "CAPTCHA_INTAKE_QUEUE_URL",
    "OcrQueueUrl": "CAPTCHA_OCR_QUEUE_URL",
    "BrowserQueueUrl": "CAPTCHA_BROWSER_QUEUE_URL",
    "CallbackQueueUrl": "CAPTCHA_CALLBACK_QUEUE_URL",
    "IntakeDlqUrl": "CAPTCHA_INTAKE_DLQ_URL",
    "OcrDlqUrl": "CAPTCHA_OCR_DLQ_URL",
    "BrowserDlqUrl": "CAPTCHA_BROWSER_DLQ_URL",
    "CallbackDlqUrl": "CAPTCHA_CALLBACK_DLQ_URL",
    "TasksTableName": "CAPTCHA_TASKS_TABLE",
    "ImagesTableName": "CAPTCHA_IMAGES_TABLE",
    "AccountsTableName": "CAPTCHA_ACCOUNTS_TABLE",
    "HoldsTableName": "CAPTCHA_HOLDS_TABLE",
    "LimitsTableName": "CAPTCHA_LIMITS_TABLE",
}


def stack_status(name):
    try:
        return cfn.describe_stacks(StackName=name)["Stacks"][0]["StackStatus"]
    except botocore.exceptions.ClientError as e:
        if "does not exist" in str(e):
            return None
        raise


def wait(name, timeout=180):
    t0 = time.time()
    while True:
        st = stack_status(name)
        if st is None or not st.endswith("_IN_PROGRESS"):
            return st
        if time.time() - t0 > timeout:
            sys.exit(f"deploy: stack {name} still {st} after {timeout}s")
        time.sleep(1)


def failure_events(name):
    try:
        evs = cfn.describe_stack_events(StackName=name)["StackEvents"]
    except botocore.exceptions.ClientError:
        return []
    return [f"  {e['LogicalResourceId']}: {e['ResourceStatus']} {e.get('ResourceStatusReason', '')}"
            for e in evs if "FAILED" in e["ResourceStatus"]]


def deploy(name, prefix, max_receive):
    body = open(TEMPLATE).read()
    params = [
        {"ParameterKey": "DeployFunctions", "ParameterValue": "false"},
        {"ParameterKey": "NamePrefix", "ParameterValue": prefix},
        {"ParameterKey": "CodeBucket", "ParameterValue": "unused-without-functions"},
        {"ParameterKey": "ProtectData", "ParameterValue": "false"},
        {"ParameterKey": "MaxReceiveCount", "ParameterValue": str(max_receive)},
    ]
    st = stack_status(name)
    if st in ("ROLLBACK_COMPLETE", "ROLLBACK_FAILED", "CREATE_FAILED", "DELETE_FAILED"):
        print(f"deploy: stack {name} is {st}; deleting it first")
        delete(name)
        st = None
    t0 = time.time()
    if st is None:
        cfn.create_stack(StackName=name, TemplateBody=body, Parameters=params)
        verb = "created"
    else:
        try:
            cfn.update_stack(StackName=name, TemplateBody=body, Parameters=params)
            verb = "updated"
        except botocore.exceptions.ClientError as e:
            if "No updates are to be performed" not in str(e):
                raise
            verb = "unchanged"
    st = wait(name)
    if st not in ("CREATE_COMPLETE", "UPDATE_COMPLETE"):
        print(f"deploy: stack {name} ended {st}", file=sys.stderr)
        print("\n".join(failure_events(name)), file=sys.stderr)
        sys.exit(1)
    print(f"deploy: stack {name} {verb} ({st}, {time.time() - t0:.1f}s)")
    out = outputs(name)
    missing = sorted(set(ENV_NAMES) - set(out))
    if missing:
        print(f"deploy: stack {name} is {st} but lacks outputs {missing}", file=sys.stderr)
        print("\n".join(failure_events(name)) or "  (no failure events)", file=sys.stderr)
        print("deploy: LocalStack's v2 CloudFormation engine mishandles Conditions; localstack/start.sh "
              "sets PROVIDER_OVERRIDE_CLOUDFORMATION=engine-legacy", file=sys.stderr)
        sys.exit(1)
    return out


def outputs(name):
    st = cfn.describe_stacks(StackName=name)["Stacks"][0]
    return {o["OutputKey"]: o["OutputValue"] for o in st.get("Outputs", [])}


def delete(name):
    if stack_status(name) is None:
        print(f"deploy: stack {name} does not exist")
        return
    t0 = time.time()
    cfn.delete_stack(StackName=name)
    st = wait(name)
    if st not in (None, "DELETE_COMPLETE"):
        sys.exit(f"deploy: deleting {name} ended {st}\n" + "\n".join(failure_events(name)))
    print(f"deploy: stack {name} deleted ({time.time() - t0:.1f}s)")


def check(name, max_receive):
    """Returns a list of (description, ok, detail)."""
    out = outputs(name)
    tpl_res = _template_resources()
    results = []

    def rec(what, ok, detail=""):
        results.append((what, bool(ok), detail))

    for q in ("Intake", "Ocr", "Browser", "Callback"):
        url, dlq_url = out.get(f"{q}QueueUrl"), out.get(f"{q}DlqUrl")
        rec(f"{q} queue and DLQ in outputs", url and dlq_url, f"{url} {dlq_url}")
        if not (url and dlq_url):
            continue
        a = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
        dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        redrive = json.loads(a.get("RedrivePolicy", "{}"))
        rec(f"{q} redrives to its DLQ", redrive.get("deadLetterTargetArn") == dlq_arn, str(redrive))
        rec(f"{q} maxReceiveCount={max_receive}", int(redrive.get("maxReceiveCount", -1)) == max_receive, str(redrive))
        want_vis = int(tpl_res[f"{q}Queue"]["Properties"]["VisibilityTimeout"])
        rec(f"{q} visibility timeout {want_vis}s", int(a.get("VisibilityTimeout", -1)) == want_vis, a.get("VisibilityTimeout"))
        rec(f"{q} URL is path-style on 127.0.0.1", url.startswith("http://127.0.0.1:"), url)
    for t in ("Tasks", "Images", "Accounts", "Holds", "Limits"):
        table = out.get(f"{t}TableName")
        rec(f"{t} table in outputs", table, str(table))
        if not table:
            continue
        d = ddb.describe_table(TableName=table)["Table"]
        rec(f"{t} table PAY_PER_REQUEST", d.get("BillingModeSummary", {}).get("BillingMode") == "PAY_PER_REQUEST",
            str(d.get("BillingModeSummary")))
        want_gsi = {g["IndexName"] for g in tpl_res[f"{t}Table"]["Properties"].get("GlobalSecondaryIndexes", [])}
        have_gsi = {g["IndexName"] for g in d.get("GlobalSecondaryIndexes", [])}
        rec(f"{t} table GSIs {sorted(want_gsi)}", want_gsi == have_gsi, str(sorted(have_gsi)))
        want_ttl = tpl_res[f"{t}Table"]["Properties"].get("TimeToLiveSpecification")
        if want_ttl:
            ttl = ddb.describe_time_to_live(TableName=table)["TimeToLiveDescription"]
            rec(f"{t} table TTL on {want_ttl['AttributeName']}",
                ttl.get("TimeToLiveStatus") == "ENABLED" and ttl.get("AttributeName") == want_ttl["AttributeName"],
                str(ttl))
    return results


def _template_resources():
    sys.path.insert(0, HERE)
    import yaml  # in the LocalStack venv

    class Loader(yaml.SafeLoader):
        pass

    def any_tag(loader, suffix, node):
        if isinstance(node, yaml.ScalarNode):
            return {suffix: loader.construct_scalar(node)}
        if isinstance(node, yaml.SequenceNode):
            return {suffix: loader.construct_sequence(node)}
        return {suffix: loader.construct_mapping(node)}

    Loader.add_multi_constructor("!", any_tag)
    return yaml.load(open(TEMPLATE), Loader=Loader)["Resources"]


def print_outputs(out, env_file):
    for k in sorted(out):
        print(f"  {k} = {out[k]}")
    if env_file:
        lines = [f"export {ENV_NAMES[k]}={out[k]}" for k in sorted(out) if k in ENV_NAMES]
        with open(env_file, "w") as f:
            f.write("# written by infra/deploy-localstack.sh\n" + "\n".join(lines) + "\n")
        print(f"deploy: outputs written to {env_file} (source it)")


def report(results):
    for what, ok, detail in results:
        print(f"{'ok  ' if ok else 'FAIL'} {what}" + ("" if ok else f"  ({detail})"))
    failed = sum(1 for r in results if not r[1])
    return failed


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("command", choices=["deploy", "check", "delete", "selftest"], nargs="?", default="deploy")
    ap.add_argument("--stack", default=os.environ.get("CAPTCHA_STACK", "captcha"))
    ap.add_argument("--prefix", default=os.environ.get("CAPTCHA_NAME_PREFIX", "captcha-"))
    ap.add_argument("--max-receive-count", type=int, default=int(os.environ.get("CAPTCHA_MAX_RECEIVE_COUNT", "5")))
    ap.add_argument("--env-file", default=os.environ.get("CAPTCHA_STACK_ENV_FILE"))
    a = ap.parse_args()
    if a.command == "deploy":
        print_outputs(deploy(a.stack, a.prefix, a.max_receive_count), a.env_file)
    elif a.command == "check":
        sys.exit(1 if report(check(a.stack, a.max_receive_count)) else 0)
    elif a.command == "delete":
        delete(a.stack)
    else:
        stack, prefix = f"{a.stack}-selftest", f"selftest{os.getpid() % 10000}-"
        print_outputs(deploy(stack, prefix, a.max_receive_count), None)
        try:
            failed = report(check(stack, a.max_receive_count))
        finally:
            delete(stack)
        gone = [q for q in sqs.list_queues(QueueNamePrefix=prefix).get("QueueUrls", [])]
        gone += [t for t in ddb.list_tables()["TableNames"] if t.startswith(prefix)]
        failed += report([("stack deletion removed its queues and tables", not gone, str(gone))])
        sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
