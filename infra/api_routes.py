"""Prints the API Gateway routes of infra/template.yaml as `PATH FUNCTION` lines
(`/in.php captcha-submit`), read from its AWS::ApiGateway::Resource/Method pairs.
The serverless end-to-end suite serves exactly these paths over HTTP (to the
functions' binaries), so a client call the template does not route fails there
as it would on API Gateway.

  python infra/api_routes.py [TEMPLATE]        (needs PyYAML; the LocalStack venv has it)
"""
import os
import re
import sys

import yaml


class Loader(yaml.SafeLoader):
    pass


def _tag(loader, suffix, node):
    # CloudFormation short forms (!Ref, !Sub, !GetAtt, ...) as {"Fn::X": value}.
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    return {suffix: value}


Loader.add_multi_constructor("!", _tag)


def routes(template):
    res = template["Resources"]
    out = []
    for name, r in res.items():
        if r.get("Type") != "AWS::ApiGateway::Method":
            continue
        p = r["Properties"]
        resource = res[p["ResourceId"]["Ref"]]["Properties"]
        if resource["ParentId"] != {"GetAtt": "Api.RootResourceId"}:
            sys.exit(f"routes: {name}: only top-level resources are supported")
        uri = p["Integration"]["Uri"]["Sub"]
        m = re.search(r"\$\{(\w+)\.Arn\}", uri)
        if not m:
            sys.exit(f"routes: {name}: no function in {uri!r}")
        fn_name = res[m.group(1)]["Properties"]["FunctionName"]["Sub"]
        out.append(("/" + resource["PathPart"], fn_name.replace("${NamePrefix}", "captcha-")))
    return sorted(out)


if __name__ == "__main__":
    path = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(os.path.abspath(__file__)), "template.yaml")
    with open(path) as f:
        for route, fn in routes(yaml.load(f, Loader=Loader)):
            print(route, fn)
