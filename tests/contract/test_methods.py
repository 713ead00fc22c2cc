"""Every path of the served document answers a method it does not have with 405, a problem,
and an Allow header naming exactly the methods the document gives it (RFC 9110 §15.5.6).

The schema fuzzer's "unexpected methods" cases are off (see test_schema_fuzz.py): they asked
the same of every path, one generated request at a time; this asks it once per path and
method, and also checks the Allow header against the document."""

from __future__ import annotations

import re

from pos_devstack.testing import Running

METHODS = ("GET", "PUT", "POST", "DELETE", "PATCH")


def test_a_method_a_path_lacks_is_a_405_naming_the_ones_it_has(platform: Running) -> None:
    http = platform.http
    document = http.get("/openapi.json").json()
    shapes = [
        (re.compile("^" + re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(t)) + "$"),
         {m.upper() for m in ops})
        for t, ops in document["paths"].items()
    ]  # fmt: skip
    asked = 0
    for template, operations in document["paths"].items():
        declared = {m.upper() for m in operations if m.upper() in METHODS}
        if not template.startswith("/v1/") or not declared:
            continue
        path = re.sub(r"\{[^}]+\}", "zz_unknown", template)
        # A method another path of the document also fits answers there (GET
        # /v1/products/batch-upsert is the product of that id): not a 405.
        elsewhere = set().union(*(m for shape, m in shapes if shape.match(path)))
        for method in sorted(set(METHODS) - elsewhere):
            answer = http.request(method, path, json={} if method != "GET" else None)
            asked += 1
            assert answer.status_code == 405, (method, template, answer.text)
            assert answer.headers["content-type"] == "application/problem+json"
            assert answer.json()["code"] == "method_not_allowed"
            allowed = {m.strip() for m in answer.headers["allow"].split(",")}
            # HEAD rides along with GET in the framework; the document does not list it.
            assert allowed - {"HEAD"} == declared, (method, template, allowed)
    assert asked > 100  # the document was read and walked
