"""The official 2captcha-python client against captchad over TLS.

Solves images from a validation set and checks the answers against their
labels, the balance through the client, and a bad key's error.
Usage: python_client.py HOST:PORT KEY IMAGE_DIR COUNT
"""
import os
import sys

from twocaptcha import TwoCaptcha
from twocaptcha.api import ApiException

server, key, image_dir, count = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
labels = [line.rstrip("\n").split("\t") for line in open(os.path.join(image_dir, "labels.tsv"))][:count]

solver = TwoCaptcha(key, server=server, pollingInterval=1, defaultTimeout=60)
start_balance = solver.balance()
right = 0
for name, label in labels:
    result = solver.normal(os.path.join(image_dir, name))
    assert result["captchaId"].isdigit(), result
    ok = result["code"] == label.lower()  # regsense=0: answers come lower-cased
    right += ok
    print(f"python: {name} label={label!r} answer={result['code']!r} {'ok' if ok else 'WRONG'}")
end_balance = solver.balance()
print(f"python: {right}/{len(labels)} right; balance {start_balance} -> {end_balance}")
assert end_balance < start_balance, "solves must be charged"
assert right >= len(labels) - 1, f"only {right}/{len(labels)} images read right"

try:
    TwoCaptcha("0" * 32, server=server).balance()
    raise SystemExit("a wrong key must raise")
except ApiException as e:
    assert "ERROR_KEY_DOES_NOT_EXIST" in str(e), e
print("python: ok")
