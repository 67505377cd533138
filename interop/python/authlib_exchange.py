"""An OAuth 2.0 client built on the unmodified Authlib (requests integration) that performs an
RFC 8693 token exchange against an issuer it knows only by URL, or introspects (RFC 7662) or
revokes (RFC 7009) a token there. The endpoints come from OpenID discovery
({issuer}/.well-known/openid-configuration, fetched with requests).

Client authentication (--client-auth):
  none      no client authentication
  jwt-svid  a fresh JWT-SVID per request, fetched with the unmodified py-spiffe client from
            SPIFFE_ENDPOINT_SOCKET for audience = the issuer, sent as client_assertion with
            client_assertion_type=urn:ietf:params:oauth:client-assertion-type:jwt-spiffe and
            client_id = its SPIFFE ID (draft-ietf-oauth-spiffe-client-auth). It is registered on
            the session as an Authlib client auth method, so Authlib signs every token,
            introspection and revocation request with it.

Output on stdout, one JSON object:
  exchange    the token endpoint's JSON response, as received
  introspect  the introspection endpoint's JSON response
  revoke      {"status": <HTTP status>}
On an OAuth error answer (a JSON body with "error"): {"error": ..., "error_description": ...}
and exit status 3. Any other failure (discovery, TLS, Workload API, a non-OAuth HTTP error):
{"failure": "..."} and exit status 1. Success exits 0.

Usage:
  python authlib_exchange.py --issuer URL --ca PEM --subject-token-file F --audience A
      [--subject-token-type T] [--scope S] [--requested-token-type T]
      [--actor-token-file F [--actor-token-type T]] [--client-auth jwt-svid|none]
  python authlib_exchange.py --issuer URL --ca PEM --introspect TOKEN_FILE [--client-auth ...]
  python authlib_exchange.py --issuer URL --ca PEM --revoke TOKEN_FILE [--client-auth ...]
"""

import argparse
import json
import sys

import requests
from authlib.common.urls import add_params_to_qs
from authlib.integrations.requests_client import OAuth2Session
from authlib.integrations.base_client import OAuthError
from spiffe import WorkloadApiClient

TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
JWT_SPIFFE = "urn:ietf:params:oauth:client-assertion-type:jwt-spiffe"
TOKEN_TYPE_PREFIX = "urn:ietf:params:oauth:token-type:"
TIMEOUT = 10.0
MAX_TOKEN_FILE_BYTES = 16 * 1024


class OAuthErrorAnswer(Exception):
    """The server answered with an OAuth error body."""

    def __init__(self, error, description):
        super().__init__(f"{error}: {description}")
        self.error = error
        self.description = description


class JwtSpiffeClientAuth:
    """Authlib client auth method: a JWT-SVID from the Workload API as client assertion.

    Called by Authlib with (client, method, uri, headers, body) for each request it
    authenticates, like Authlib's own PrivateKeyJWT; fetches a new JWT-SVID each time, because
    the server refuses a replayed assertion."""

    name = "jwt-spiffe"

    def __init__(self, workload, audience):
        self.workload = workload
        self.audience = audience
        self.spiffe_id = None

    def __call__(self, client, method, uri, headers, body):
        svid = self.workload.fetch_jwt_svid(audience={self.audience})
        self.spiffe_id = str(svid.spiffe_id)
        body = add_params_to_qs(
            body or "",
            [
                ("client_id", self.spiffe_id),
                ("client_assertion_type", JWT_SPIFFE),
                ("client_assertion", svid.token),
            ],
        )
        if "Content-Length" in headers:
            headers["Content-Length"] = str(len(body))
        return uri, headers, body


class NoClientAuth:
    """Authlib client auth method that adds nothing (Authlib's "none" would send client_id)."""

    name = "no-client-auth"

    def __call__(self, client, method, uri, headers, body):
        return uri, headers, body


def token_type(value):
    if value in ("jwt", "id_token", "access_token", "refresh_token"):
        return TOKEN_TYPE_PREFIX + value
    if value.startswith("urn:"):
        return value
    raise argparse.ArgumentTypeError("expected jwt, id_token, access_token or a URN")


def read_token(path):
    with open(path, "rb") as f:
        data = f.read(MAX_TOKEN_FILE_BYTES + 1)
    if len(data) > MAX_TOKEN_FILE_BYTES:
        raise ValueError(f"{path} is larger than 16 KiB")
    token = data.decode("utf-8").strip()
    if not token:
        raise ValueError(f"{path} is empty")
    return token


def discover(issuer, ca):
    url = issuer.rstrip("/") + "/.well-known/openid-configuration"
    response = requests.get(url, verify=ca, timeout=TIMEOUT, allow_redirects=False)
    response.raise_for_status()
    document = response.json()
    if not isinstance(document, dict):
        raise ValueError("the discovery document is not a JSON object")
    if str(document.get("issuer", "")).rstrip("/") != issuer.rstrip("/"):
        raise ValueError(f"the discovery document names issuer {document.get('issuer')!r}")
    return document


def oauth_answer(response):
    """The JSON object of an endpoint's answer; raises OAuthErrorAnswer for an OAuth error."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and "error" in body:
        raise OAuthErrorAnswer(body["error"], body.get("error_description"))
    response.raise_for_status()
    if not isinstance(body, dict):
        raise ValueError(f"the endpoint answered {response.status_code} without a JSON object")
    return body


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--issuer", required=True, help="issuer URL (discovery base)")
    parser.add_argument("--ca", required=True, help="PEM roots for the server's TLS")
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--subject-token-file", help="exchange this token (RFC 8693)")
    mode.add_argument("--introspect", metavar="TOKEN_FILE", help="introspect this token")
    mode.add_argument("--revoke", metavar="TOKEN_FILE", help="revoke this token")
    parser.add_argument("--subject-token-type", type=token_type, default=token_type("jwt"))
    parser.add_argument("--audience", help="audience of the issued token (exchange)")
    parser.add_argument("--scope")
    parser.add_argument("--requested-token-type", type=token_type)
    parser.add_argument("--actor-token-file")
    parser.add_argument("--actor-token-type", type=token_type, default=token_type("jwt"))
    parser.add_argument("--client-auth", choices=["jwt-svid", "none"], default="none")
    args = parser.parse_args()
    if args.subject_token_file and not args.audience:
        parser.error("--audience is required with --subject-token-file")

    try:
        document = discover(args.issuer, args.ca)
        workload = None
        if args.client_auth == "jwt-svid":
            workload = WorkloadApiClient(default_timeout=TIMEOUT)
            auth = JwtSpiffeClientAuth(workload, document["issuer"])
        else:
            auth = NoClientAuth()
        session = OAuth2Session(
            token_endpoint_auth_method=auth.name,
            revocation_endpoint_auth_method=auth.name,
            default_timeout=TIMEOUT,
        )
        session.register_client_auth_method((auth.name, auth))
        try:
            result = run(session, document, args)
        finally:
            session.close()
            if workload is not None:
                workload.close()
    except OAuthErrorAnswer as e:
        print(json.dumps({"error": e.error, "error_description": e.description}), flush=True)
        return 3
    except OAuthError as e:
        print(json.dumps({"error": e.error, "error_description": e.description}), flush=True)
        return 3
    except Exception as e:  # report whatever went wrong on one line
        print(json.dumps({"failure": f"{type(e).__name__}: {e}"}), flush=True)
        return 1
    print(json.dumps(result, sort_keys=True), flush=True)
    return 0


def run(session, document, args):
    # verify on every request: requests prefers REQUESTS_CA_BUNDLE to a session's own verify.
    options = {"verify": args.ca, "allow_redirects": False}
    if args.introspect:
        response = session.introspect_token(
            document["introspection_endpoint"],
            token=read_token(args.introspect),
            **options,
        )
        return oauth_answer(response)
    if args.revoke:
        response = session.revoke_token(
            document["revocation_endpoint"],
            token=read_token(args.revoke),
            **options,
        )
        if response.status_code != 200:
            oauth_answer(response)
            raise ValueError(f"the revocation endpoint answered {response.status_code}")
        return {"status": response.status_code}

    # The token endpoint's JSON exactly as received (Authlib's token object adds expires_at).
    received = {}

    def keep_response(response):
        try:
            received["body"] = response.json()
        except ValueError:
            pass
        return response

    session.register_compliance_hook("access_token_response", keep_response)
    params = {
        "subject_token": read_token(args.subject_token_file),
        "subject_token_type": args.subject_token_type,
        "audience": args.audience,
    }
    if args.scope:
        params["scope"] = args.scope
    if args.requested_token_type:
        params["requested_token_type"] = args.requested_token_type
    if args.actor_token_file:
        params["actor_token"] = read_token(args.actor_token_file)
        params["actor_token_type"] = args.actor_token_type
    session.fetch_token(
        document["token_endpoint"],
        grant_type=TOKEN_EXCHANGE,
        **options,
        **params,
    )
    return received["body"]


if __name__ == "__main__":
    sys.exit(main())
