"""A small OpenAPI 3.0/3.1 request validator, for the subset the trimmed
provider documents of tests/conformance/provider-api/ use (source:
tests/conformance/README.md §9): path templates ({Name} segments with
string schemas), the method, query parameters, and form-encoded
(application/x-www-form-urlencoded) request bodies: property names,
types (string, integer, boolean), enums, minLength/maxLength, pattern,
minimum/maximum, formats uri, http-method and phone-number, and required.

Strict on requests, as a client must be: a query parameter or form field
the operation does not list is an error (a misspelt name), as is a value
of the wrong type, outside its enum, or not of its format. Headers and
JSON bodies are not checked (connect sends none but Authorization).

    spec = sb_openapi.Spec("tests/conformance/provider-api/twilio-oai-incoming-phone-numbers.json")
    errors = spec.validate("POST", "/2010-04-01/Accounts/AC.../IncomingPhoneNumbers/PN....json",
                           query="", body="SmsUrl=https%3A%2F%2F...", content_type="application/x-www-form-urlencoded")
    assert not errors, errors

Python 3 standard library only.
"""

import json
import re
import urllib.parse

FORM = "application/x-www-form-urlencoded"


class Spec:
    def __init__(self, path):
        with open(path, encoding="utf-8") as f:
            self.doc = json.load(f)
        self.routes = []
        for template, item in self.doc["paths"].items():
            names = re.findall(r"\{([^}]+)\}", template)
            regex = "^" + "".join(
                "(?P<p%d>[^/]+)" % names.index(part[1:-1]) if part.startswith("{") else re.escape(part)
                for part in re.split(r"(\{[^}]+\})", template) if part) + "$"
            self.routes.append((re.compile(regex), names, template, item))

    def resolve(self, node):
        """Follow a local $ref ("#/components/...") to its target."""
        while isinstance(node, dict) and "$ref" in node:
            ref = node["$ref"]
            assert ref.startswith("#/"), ref
            target = self.doc
            for part in ref[2:].split("/"):
                target = target[part.replace("~1", "/").replace("~0", "~")]
            node = target
        return node

    def operation(self, method, path):
        """(template, operation, path parameters) of a request, or None."""
        for regex, names, template, item in self.routes:
            m = regex.match(path)
            if m and method.lower() in item:
                params = {names[i]: urllib.parse.unquote(m.group("p%d" % i)) for i in range(len(names))}
                return template, item, item[method.lower()], params
        return None

    def validate(self, method, path, query="", body=None, content_type=None):
        """The list of what is wrong with the request (empty: valid)."""
        found = self.operation(method, path)
        if not found:
            return ["%s %s: no such operation in %s" % (method, path, self.doc["info"]["title"])]
        template, item, op, path_values = found
        errors = []
        params = [self.resolve(p) for p in item.get("parameters", []) + op.get("parameters", [])]
        for p in params:
            if p["in"] == "path":
                errors += check_value(self, "path " + p["name"], path_values.get(p["name"]),
                                      self.resolve(p.get("schema", {})))
        query_pairs = urllib.parse.parse_qsl(query or "", keep_blank_values=True, strict_parsing=False)
        declared = {p["name"]: p for p in params if p["in"] == "query"}
        for name, value in query_pairs:
            if name not in declared:
                errors.append("query parameter %r is not a parameter of %s %s" % (name, method, template))
            else:
                errors += check_value(self, "query " + name, value, self.resolve(declared[name].get("schema", {})))
        given = {name for name, _ in query_pairs}
        for name, p in declared.items():
            if p.get("required") and name not in given:
                errors.append("query parameter %r is required" % name)
        rb = self.resolve(op.get("requestBody")) if op.get("requestBody") else None
        has_body = body not in (None, "")
        if not rb:
            if has_body:
                errors.append("%s %s takes no request body" % (method, template))
            return errors
        if not has_body:
            if rb.get("required"):
                errors.append("%s %s: request body required" % (method, template))
            return errors
        media = (content_type or "").split(";")[0].strip().lower()
        if media not in rb.get("content", {}):
            return errors + ["content type %r is not one of %s" % (media, sorted(rb["content"]))]
        if media != FORM:
            return errors  # JSON bodies: not this validator's subset
        schema = self.resolve(rb["content"][media].get("schema", {}))
        props = schema.get("properties", {})
        pairs = urllib.parse.parse_qsl(body, keep_blank_values=True)
        for name, value in pairs:
            if name not in props:
                errors.append("form field %r is not a property of %s" % (name, schema.get("title", template)))
            else:
                errors += check_value(self, "form " + name, value, self.resolve(props[name]))
        for name in schema.get("required", []):
            if name not in {n for n, _ in pairs}:
                errors.append("form field %r is required" % name)
        return errors


URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://[^\s/?#]+[^\s]*$")
PHONE = re.compile(r"^\+?[0-9*]{1,16}$")


def check_value(spec, where, value, schema):
    """What is wrong with one text value (a path segment, query or form
    value) against its schema."""
    if value is None:
        return ["%s: missing" % where]
    errors = []
    kind = schema.get("type", "string")
    if isinstance(kind, list):  # 3.1: ["string", "null"]
        kind = [k for k in kind if k != "null"][0]
    if kind == "integer":
        if not re.fullmatch(r"-?[0-9]+", value):
            return ["%s: %r is not an integer" % (where, value)]
        n = int(value)
        if "minimum" in schema and n < schema["minimum"]:
            errors.append("%s: %d below minimum %s" % (where, n, schema["minimum"]))
        if "maximum" in schema and n > schema["maximum"]:
            errors.append("%s: %d above maximum %s" % (where, n, schema["maximum"]))
    elif kind == "boolean":
        if value not in ("true", "false"):
            errors.append("%s: %r is not true or false" % (where, value))
    elif kind == "string":
        if "minLength" in schema and len(value) < schema["minLength"]:
            errors.append("%s: shorter than %d" % (where, schema["minLength"]))
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            errors.append("%s: longer than %d" % (where, schema["maxLength"]))
        if "pattern" in schema and not re.search(schema["pattern"], value):
            errors.append("%s: %r does not match %s" % (where, value, schema["pattern"]))
        fmt = schema.get("format")
        if fmt == "uri" and not URI.match(value):
            errors.append("%s: %r is not a URI" % (where, value))
        if fmt == "phone-number" and not PHONE.match(value):
            errors.append("%s: %r is not a phone number" % (where, value))
    else:
        errors.append("%s: schema type %r is outside this validator's subset" % (where, kind))
    if "enum" in schema and value not in [str(e).lower() if isinstance(e, bool) else str(e) for e in schema["enum"]]:
        errors.append("%s: %r is not one of %s" % (where, value, schema["enum"]))
    return errors


def self_test():
    """The validator refuses what it must (run: python3 sb_openapi.py)."""
    import os
    here = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "conformance", "provider-api")
    tw = Spec(os.path.join(here, "twilio-oai-incoming-phone-numbers.json"))
    path = "/2010-04-01/Accounts/AC" + "a" * 32 + "/IncomingPhoneNumbers/PN" + "b" * 32 + ".json"
    good = urllib.parse.urlencode({"SmsUrl": "https://h.example/twilio/messages", "SmsMethod": "POST"})
    assert tw.validate("POST", path, "", good, FORM) == []
    bad = tw.validate("POST", path, "", good.replace("SmsUrl", "SmsURL"), FORM)
    assert any("SmsURL" in e for e in bad), bad
    bad = tw.validate("POST", path, "", good.replace("POST", "PUT"), FORM)
    assert any("not one of" in e for e in bad), bad
    bad = tw.validate("POST", path, "", "SmsUrl=not+a+url", FORM)
    assert any("not a URI" in e for e in bad), bad
    bad = tw.validate("GET", path.replace("/PN" + "b" * 32, "").replace(".json", "") + ".json",
                      "PhoneNumbr=%2B1415", None)
    assert any("PhoneNumbr" in e for e in bad), bad
    bad = tw.validate("POST", path.replace("PN", "XX"), "", good, FORM)
    assert any("path Sid" in e for e in bad), bad
    meta = Spec(os.path.join(here, "meta-graph-app-subscriptions.json"))
    form = {"object": "whatsapp_business_account", "callback_url": "https://h.example/meta/whatsapp",
            "verify_token": "t", "fields": "messages"}
    assert meta.validate("POST", "/v23.0/123/subscriptions", "", urllib.parse.urlencode(form), FORM) == []
    bad = meta.validate("POST", "/v23.0/123/subscriptions", "",
                        urllib.parse.urlencode(dict(form, object="whatsapp")), FORM)
    assert any("not one of" in e for e in bad), bad
    del form["verify_token"]
    bad = meta.validate("POST", "/v23.0/123/subscriptions", "", urllib.parse.urlencode(form), FORM)
    assert any("verify_token" in e and "required" in e for e in bad), bad
    bad = meta.validate("POST", "/v23.0/abc/subscriptions", "", urllib.parse.urlencode(form), FORM)
    assert bad, bad
    print("sb_openapi self-test passed")


if __name__ == "__main__":
    self_test()
