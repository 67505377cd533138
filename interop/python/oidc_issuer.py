"""A test OIDC issuer for the token exchange tests, built on PyJWT and cryptography: its own
RSA (RS256) and P-256 (ES256) keys, a discovery document and a JWK Set served over HTTPS, and
CI-style tokens minted with those keys.

  python oidc_issuer.py serve --issuer URL --port P --cert PEM --key PEM --keys-dir DIR
      Generates the keys into DIR (mode 0600), serves
        /.well-known/openid-configuration  {"issuer": URL, "jwks_uri": URL/jwks, ...}
        /jwks                              the public keys, kid "rsa-1" (RS256), "ec-1" (ES256)
      on 127.0.0.1:P with the given certificate, prints "ready" once listening, and serves
      until killed. Requests are counted per path in DIR/hits.json.
  python oidc_issuer.py mint --keys-dir DIR --alg RS256|ES256 --claims JSON [--kid KID]
      Prints a token signed with the key of that algorithm (kid defaults to its own).
"""

import argparse
import json
import os
import ssl
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

KEYS = {"RS256": ("rsa-1", "rsa.pem"), "ES256": ("ec-1", "ec.pem")}


def generate(keys_dir):
    os.makedirs(keys_dir, exist_ok=True)
    made = {
        "RS256": rsa.generate_private_key(public_exponent=65537, key_size=2048),
        "ES256": ec.generate_private_key(ec.SECP256R1()),
    }
    for alg, key in made.items():
        path = os.path.join(keys_dir, KEYS[alg][1])
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(
                key.private_bytes(
                    serialization.Encoding.PEM,
                    serialization.PrivateFormat.PKCS8,
                    serialization.NoEncryption(),
                )
            )
    return made


def load(keys_dir, alg):
    with open(os.path.join(keys_dir, KEYS[alg][1]), "rb") as f:
        return serialization.load_pem_private_key(f.read(), password=None)


def jwks(keys):
    out = []
    for alg, key in keys.items():
        algorithm = jwt.get_algorithm_by_name(alg)
        jwk = json.loads(algorithm.to_jwk(key.public_key()))
        jwk.update({"kid": KEYS[alg][0], "alg": alg, "use": "sig"})
        out.append(jwk)
    return {"keys": out}


def serve(args):
    keys = generate(args.keys_dir)
    documents = {
        "/.well-known/openid-configuration": {
            "issuer": args.issuer,
            "jwks_uri": args.issuer.rstrip("/") + "/jwks",
            "response_types_supported": ["id_token"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256", "ES256"],
        },
        "/jwks": jwks(keys),
    }
    hits = {}
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            with lock:
                hits[self.path] = hits.get(self.path, 0) + 1
                with open(os.path.join(args.keys_dir, "hits.json"), "w") as f:
                    json.dump(hits, f)
            document = documents.get(self.path)
            if document is None:
                self.send_response(404)
                self.end_headers()
                return
            body = json.dumps(document).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(args.cert, args.key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    print("ready", flush=True)
    server.serve_forever()


def mint(args):
    key = load(args.keys_dir, args.alg)
    kid = args.kid or KEYS[args.alg][0]
    claims = json.loads(args.claims)
    print(jwt.encode(claims, key, algorithm=args.alg, headers={"kid": kid, "typ": "JWT"}))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    s = sub.add_parser("serve")
    s.add_argument("--issuer", required=True)
    s.add_argument("--port", type=int, required=True)
    s.add_argument("--cert", required=True)
    s.add_argument("--key", required=True)
    s.add_argument("--keys-dir", required=True)
    m = sub.add_parser("mint")
    m.add_argument("--keys-dir", required=True)
    m.add_argument("--alg", choices=sorted(KEYS), required=True)
    m.add_argument("--claims", required=True)
    m.add_argument("--kid")
    args = parser.parse_args()
    if args.command == "serve":
        serve(args)
    else:
        mint(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
