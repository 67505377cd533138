// An RFC 8693 token exchange with the unmodified `openid-client` (v6), authenticating the client
// by mutual TLS (RFC 8705 tls_client_auth): the X509-SVID and its key are the TLS client
// certificate of an undici Agent used as openid-client's customFetch, and `client_id` is the
// SPIFFE ID. The issuer is known only by URL: openid-client discovers the token endpoint
// ({issuer}/.well-known/openid-configuration), then genericGrantRequest() posts the exchange.
//
// Prints one JSON object on stdout: the token endpoint's response as received. On an OAuth error
// answer it prints {"error": ..., "error_description": ...} and exits 3; on any other failure
// (discovery, TLS, files) {"failure": "..."} and exits 1.
//
// Usage: node openid_exchange.mjs --issuer URL --ca PEM --cert PEM --key PEM --client-id SPIFFE_ID
//          --subject-token-file FILE --audience AUD [--scope S] [--requested-token-type URN]
//          [--subject-token-type URN]
import { readFileSync } from "node:fs";
import { parseArgs } from "node:util";

import * as client from "openid-client";
import { Agent, fetch } from "undici";

const TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange";
const TOKEN_TYPE_PREFIX = "urn:ietf:params:oauth:token-type:";
const TIMEOUT_MS = 10_000;
const USAGE = `usage: node openid_exchange.mjs --issuer URL --ca PEM --cert PEM --key PEM
       --client-id SPIFFE_ID --subject-token-file FILE --audience AUD [--scope S]
       [--requested-token-type TYPE] [--subject-token-type TYPE]

Token exchange (RFC 8693) with openid-client, client authentication tls_client_auth (RFC 8705).
TYPE: jwt, id_token, access_token or a token type URN. Prints the token response JSON; an OAuth
error prints {"error", "error_description"} and exits 3; other failures exit 1.`;

function tokenType(value) {
  if (["jwt", "id_token", "access_token", "refresh_token"].includes(value)) {
    return TOKEN_TYPE_PREFIX + value;
  }
  if (value.startsWith("urn:")) return value;
  throw new Error(`bad token type ${JSON.stringify(value)}: expected jwt, id_token, access_token or a URN`);
}

function readToken(path) {
  const data = readFileSync(path);
  if (data.length > 16 * 1024) throw new Error(`${path} is larger than 16 KiB`);
  const token = data.toString("utf8").trim();
  if (!token) throw new Error(`${path} is empty`);
  return token;
}

// An error's message with its cause (undici's "fetch failed" hides the reason there).
function describe(e) {
  const cause = e.cause instanceof Error ? ` (${e.cause.code ?? e.cause.message})` : "";
  return `${e.code ?? e.name}: ${e.message}${cause}`;
}

function fail(message) {
  console.log(JSON.stringify({ failure: message }));
  process.exit(1);
}

let args;
try {
  ({ values: args } = parseArgs({
    options: {
      issuer: { type: "string" },
      ca: { type: "string" },
      cert: { type: "string" },
      key: { type: "string" },
      "client-id": { type: "string" },
      "subject-token-file": { type: "string" },
      "subject-token-type": { type: "string", default: "jwt" },
      audience: { type: "string" },
      scope: { type: "string" },
      "requested-token-type": { type: "string" },
      help: { type: "boolean", short: "h" },
    },
    strict: true,
  }));
} catch (e) {
  console.error(`${e.message}\n${USAGE}`);
  process.exit(2);
}
if (args.help) {
  console.log(USAGE);
  process.exit(0);
}
const required = ["issuer", "ca", "cert", "key", "client-id", "subject-token-file", "audience"];
const missing = required.filter((name) => args[name] === undefined);
if (missing.length > 0) {
  console.error(`missing ${missing.map((m) => `--${m}`).join(", ")}\n${USAGE}`);
  process.exit(2);
}

let agent;
let config;
// The token endpoint's body exactly as received (openid-client normalises what it returns).
let lastBody;
try {
  agent = new Agent({
    connect: {
      ca: readFileSync(args.ca),
      cert: readFileSync(args.cert),
      key: readFileSync(args.key),
    },
    headersTimeout: TIMEOUT_MS,
    bodyTimeout: TIMEOUT_MS,
  });
  const mtlsFetch = async (url, options) => {
    const response = await fetch(url, {
      ...options,
      dispatcher: agent,
      signal: AbortSignal.timeout(TIMEOUT_MS),
    });
    if (options?.method === "POST") {
      lastBody = await response
        .clone()
        .json()
        .catch(() => undefined);
    }
    return response;
  };
  config = await client.discovery(
    new URL(args.issuer),
    args["client-id"],
    { use_mtls_endpoint_aliases: false },
    client.TlsClientAuth(),
    { [client.customFetch]: mtlsFetch },
  );
} catch (e) {
  await agent?.close();
  fail(`discovery: ${describe(e)}`);
}

try {
  const parameters = {
    subject_token: readToken(args["subject-token-file"]),
    subject_token_type: tokenType(args["subject-token-type"]),
    audience: args.audience,
  };
  if (args.scope) parameters.scope = args.scope;
  if (args["requested-token-type"]) {
    parameters.requested_token_type = tokenType(args["requested-token-type"]);
  }
  const response = await client.genericGrantRequest(config, TOKEN_EXCHANGE, parameters);
  console.log(JSON.stringify(lastBody ?? response));
} catch (e) {
  let error;
  if (e instanceof client.ResponseBodyError) {
    error = { error: e.error, error_description: e.error_description ?? null };
  } else if (e instanceof client.WWWAuthenticateChallengeError) {
    // A 401 with a WWW-Authenticate challenge: the body (if JSON) has the OAuth error.
    const body = lastBody ?? {};
    const challenge = e.cause?.[0]?.parameters ?? {};
    const code = body.error ?? challenge.error;
    if (code) {
      error = {
        error: code,
        error_description: body.error_description ?? challenge.error_description ?? null,
      };
    }
  }
  await agent.close();
  if (error) {
    console.log(JSON.stringify(error));
    process.exit(3);
  }
  fail(`token exchange: ${describe(e)}`);
}
await agent.close();
