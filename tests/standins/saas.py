#!/usr/bin/env python3
"""Stand-ins of four SaaS sign-in endpoints, verifying as each vendor documents it, with
libraries independent of the gateway's (PyJWT; Python's hmac and base64 for Discourse).

Started by tests/gateway/saas.rs on a free loopback port (port 0: the port is printed as
"listening PORT" on stdout). Every answer is JSON: 200 {"app", "claims" | "payload", ...} when
the sign-in is accepted, 401/400 {"error": why} when it is refused.

Environment:
  ZENDESK_SECRET, METABASE_SECRET, CANNY_SECRET, DISCOURSE_SECRET  the shared secrets
  CANNY_COMPANY_ID       the companyID Canny expects
  RSA_PUBLIC_KEY, EC_PUBLIC_KEY  PEM files for /generic/RS256 and /generic/ES256
  GENERIC_KID            the kid /generic/* expects in the header
"""

import base64
import hashlib
import hmac
import json
import os
import secrets
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlencode, urlsplit

import jwt

SETTINGS = {}  # discourse_connect_url: where the forum sends people (the gateway's route)
SEEN_JTI = set()
NONCES = {}  # nonce -> (browser cookie, return_path)
LOCK = threading.Lock()
IAT_WINDOW = 180  # Zendesk and Metabase: iat within 3 minutes


def env(name):
    return os.environ.get(name, "")


class Refused(Exception):
    def __init__(self, status, why):
        super().__init__(why)
        self.status = status
        self.why = why


def verify_jwt(token, key, algorithms, require, audience=None):
    try:
        return jwt.decode(
            token,
            key,
            algorithms=algorithms,
            options={"require": require, "verify_aud": False},
            leeway=0,
        )
    except jwt.ExpiredSignatureError:
        raise Refused(401, "expired token")
    except jwt.InvalidSignatureError:
        raise Refused(401, "bad signature")
    except jwt.InvalidAlgorithmError:
        raise Refused(401, "algorithm not allowed")
    except jwt.MissingRequiredClaimError as e:
        raise Refused(401, "missing claim: %s" % e.claim)
    except jwt.PyJWTError as e:
        raise Refused(401, "invalid token: %s" % type(e).__name__)


def fresh_iat(claims):
    if abs(time.time() - claims["iat"]) > IAT_WINDOW:
        raise Refused(401, "iat out of window")


def needs(claims, *names):
    for n in names:
        if not claims.get(n):
            raise Refused(401, "missing claim: %s" % n)


def own_host(url, handler):
    """A return URL must be on this stand-in (vendors refuse to redirect elsewhere)."""
    parts = urlsplit(url)
    return parts.netloc == handler.headers.get("Host") and parts.scheme == "http"


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def params(self):
        parts = urlsplit(self.path)
        found = {k: v for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        if self.command == "POST":
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length).decode()
            ctype = self.headers.get("Content-Type", "")
            if not ctype.startswith("application/x-www-form-urlencoded"):
                raise Refused(400, "not a form post: %s" % ctype)
            for k, v in parse_qs(body, keep_blank_values=True).items():
                found.setdefault(k, []).extend(v)
        one = {}
        for k, v in found.items():
            if len(v) != 1:
                raise Refused(400, "%s given %d times" % (k, len(v)))
            one[k] = v[0]
        return urlsplit(self.path).path, one

    def answer(self, status, body, headers=()):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in headers:
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        self.route()

    def do_POST(self):
        self.route()

    def route(self):
        try:
            path, p = self.params()
            if path == "/access/jwt":
                return self.zendesk(p)
            if path == "/auth/sso":
                return self.metabase(p)
            if path == "/api/redirects/sso":
                return self.canny(p)
            if path == "/session/sso":
                return self.discourse_start(p)
            if path == "/session/sso_login":
                return self.discourse_login(p)
            if path == "/_settings" and self.command == "POST":
                SETTINGS.update(p)
                return self.answer(200, {})
            if path.startswith("/generic/"):
                return self.generic(path.rsplit("/", 1)[1], p)
            raise Refused(404, "no such endpoint")
        except Refused as r:
            self.answer(r.status, {"error": r.why})

    # Zendesk JWT SSO: HS256, iat within 3 minutes, jti never seen before, name and email.
    def zendesk(self, p):
        claims = verify_jwt(p.get("jwt", ""), env("ZENDESK_SECRET"), ["HS256"], ["iat", "jti"])
        fresh_iat(claims)
        with LOCK:
            if claims["jti"] in SEEN_JTI:
                raise Refused(401, "jti replayed")
            SEEN_JTI.add(claims["jti"])
        needs(claims, "name", "email")
        return_to = p.get("return_to")
        if return_to is not None and not own_host(return_to, self):
            raise Refused(400, "return_to not on this account")
        self.answer(200, {"app": "zendesk", "method": self.command, "claims": claims,
                          "return_to": return_to})

    # Metabase JWT SSO: HS256 only, exp required (and iat within 3 minutes), email and names.
    def metabase(self, p):
        claims = verify_jwt(p.get("jwt", ""), env("METABASE_SECRET"), ["HS256"], ["exp", "iat"])
        fresh_iat(claims)
        needs(claims, "email", "first_name", "last_name")
        return_to = p.get("return_to")
        if return_to is not None and not (return_to.startswith("/") or own_host(return_to, self)):
            raise Refused(400, "return_to not on this Metabase")
        self.answer(200, {"app": "metabase", "method": self.command, "claims": claims,
                          "return_to": return_to})

    # Canny: companyID, ssoToken (HS256 with the SSO key: email, id, name), redirect.
    def canny(self, p):
        if p.get("companyID") != env("CANNY_COMPANY_ID"):
            raise Refused(400, "unknown companyID")
        claims = verify_jwt(p.get("ssoToken", ""), env("CANNY_SECRET"), ["HS256"], [])
        needs(claims, "email", "id", "name")
        self.answer(200, {"app": "canny", "method": self.command, "claims": claims,
                          "redirect": p.get("redirect")})

    # RS256 / ES256 with a public key and a kid, for the algorithms a key file signs with.
    def generic(self, alg, p):
        keys = {"RS256": env("RSA_PUBLIC_KEY"), "ES256": env("EC_PUBLIC_KEY")}
        if alg not in keys:
            raise Refused(404, "no such algorithm")
        token = p.get("token", "")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise Refused(401, "not a JWT")
        if header.get("kid") != env("GENERIC_KID"):
            raise Refused(401, "unknown kid")
        with open(keys[alg]) as f:
            key = f.read()
        claims = verify_jwt(token, key, [alg], ["iat", "exp", "jti"])
        self.answer(200, {"app": "generic", "alg": header["alg"], "claims": claims})

    # DiscourseConnect, the forum's side.
    def sign(self, payload):
        return hmac.new(env("DISCOURSE_SECRET").encode(), payload.encode(), hashlib.sha256).hexdigest()

    def browser(self):
        for part in self.headers.get("Cookie", "").split(";"):
            k, _, v = part.strip().partition("=")
            if k == "_forum_t":
                return v
        return None

    def discourse_start(self, p):
        nonce = secrets.token_hex(16)
        browser = self.browser() or secrets.token_hex(16)
        with LOCK:
            NONCES[nonce] = (browser, p.get("return_path", "/"))
        host = self.headers.get("Host")
        raw = urlencode({"nonce": nonce, "return_sso_url": "http://%s/session/sso_login" % host})
        payload = base64.b64encode(raw.encode()).decode()
        target = "%s?%s" % (SETTINGS["discourse_connect_url"],
                            urlencode({"sso": payload, "sig": self.sign(payload)}))
        self.send_response(302)
        self.send_header("Location", target)
        self.send_header("Set-Cookie", "_forum_t=%s; Path=/; HttpOnly" % browser)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def discourse_login(self, p):
        sso, sig = p.get("sso", ""), p.get("sig", "")
        if not hmac.compare_digest(self.sign(sso), sig):
            raise Refused(401, "bad signature")
        fields = {k: v[0] for k, v in parse_qs(base64.b64decode(sso).decode()).items()}
        with LOCK:
            issued = NONCES.pop(fields.get("nonce", ""), None)
        if issued is None:
            raise Refused(401, "unknown or used nonce")
        if issued[0] != self.browser():
            raise Refused(401, "nonce issued to another browser")
        for n in ("email", "external_id"):
            if not fields.get(n):
                raise Refused(401, "missing field: %s" % n)
        self.answer(200, {"app": "discourse", "payload": fields, "return_path": issued[1]})


def main():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    print("listening %d" % server.server_address[1], flush=True)
    # Stops when the test closes stdin (or dies): no stand-in outlives its test.
    threading.Thread(target=server.serve_forever, daemon=True).start()
    sys.stdin.read()


if __name__ == "__main__":
    main()
