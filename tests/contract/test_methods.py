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
    # The platform's paths are asked with its credential: without it, they answer 401 before
    # anything else (the edge reads nothing of a request to them first).
    admin = {"Authorization": f"Bearer {platform.platform._secrets()['platform_admin_token']}"}
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
            headers = admin if path.startswith("/v1/admin/") else None
            body = {} if method != "GET" else None
            answer = http.request(method, path, json=body, headers=headers)
            asked += 1
            assert answer.status_code == 405, (method, template, answer.text)
            assert answer.headers["content-type"] == "application/problem+json"
            assert answer.json()["code"] == "method_not_allowed"
            allowed = {m.strip() for m in answer.headers["allow"].split(",")}
            assert allowed == declared, (method, template, allowed)
    assert asked > 100  # the document was read and walked
    # HEAD is not served (the routes answer GET alone), so no Allow names it.
    head = http.request("HEAD", "/v1/locations")
    assert head.status_code == 405 and "HEAD" not in head.headers["allow"], head.headers
