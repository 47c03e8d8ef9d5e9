"""The official anticaptchaofficial (PyPI) client against captchad.

Its host is hard-coded (https://api.anti-captcha.com/); a transport adapter on
its module-level requests session sends every call to captchad instead (over
TLS, trusted via REQUESTS_CA_BUNDLE). Solves images and checks the answers,
the balance, a report, a wrong key, and an ALTCHA page of the widget site
through the client's own AltchaTaskProxyless (the token is verified by the site).
Usage: anticaptcha_client.py BASE_URL KEY IMAGE_DIR COUNT SITE_URL
"""
import json
import os
import sys
import urllib.request

import requests
from anticaptchaofficial import antinetworking
from anticaptchaofficial.altchaproxyless import altchaProxyless
from anticaptchaofficial.imagecaptcha import imagecaptcha

base, key, image_dir, count, site = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5]
HOST = "https://api.anti-captcha.com/"


class Redirect(requests.adapters.HTTPAdapter):
    def send(self, request, **kwargs):
        request.url = request.url.replace(HOST, base.rstrip("/") + "/", 1)
        return super().send(request, **kwargs)


antinetworking.session.mount(HOST, Redirect())

labels = [line.rstrip("\n").split("\t") for line in open(os.path.join(image_dir, "labels.tsv"))][:count]
solver = imagecaptcha()
solver.set_verbose(0)
solver.set_key(key)
start = solver.get_balance()
right = 0
for name, label in labels:
    text = solver.solve_and_return_solution(os.path.join(image_dir, name))
    assert text != 0, solver.err_string
    ok = text == label.lower()  # case=False: answers come lower-cased
    right += ok
    print(f"anticaptcha-python: {name} label={label!r} answer={text!r} {'ok' if ok else 'WRONG'}")
after = solver.get_balance()
print(f"anticaptcha-python: {right}/{len(labels)} right; balance {start} -> {after}")
assert after < start, "solves must be charged"
assert right >= len(labels) - 1, f"only {right}/{len(labels)} images read right"
report = solver.report_incorrect_image_captcha()
assert report["errorId"] == 0 and report["status"] == "success", report
assert solver.get_balance() > after, "a reported bad answer is refunded"

bad = imagecaptcha()
bad.set_verbose(0)
bad.set_key("0" * 32)
# (get_balance raises KeyError on any API error in this client; createTask reports the code.)
assert bad.solve_and_return_solution(os.path.join(image_dir, labels[0][0])) == 0
assert bad.error_code == "ERROR_KEY_DOES_NOT_EXIST", bad.error_code

altcha = altchaProxyless()
altcha.set_verbose(0)
altcha.set_key(key)
altcha.set_website_url(site + "/altcha-v1")
token = altcha.solve_and_return_solution()
assert token != 0, altcha.err_string
req = urllib.request.Request(site + "/altcha/verify", data=json.dumps({"payload": token}).encode(),
                             headers={"content-type": "application/json"})
verdict = json.load(urllib.request.urlopen(req))
assert verdict["ok"] is True, verdict
print("anticaptcha-python: altcha token verified by the site")
print("anticaptcha-python: ok")
