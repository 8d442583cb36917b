"""Regenerate tokentrail's sample logs: `python3 sample-logs/generate.py` (`--ids` prints the
join keys as a Markdown table instead).

One synthetic morning at Acme (2026-11-02, 09:00-10:00 UTC) told in six log formats, each
written to its vendor's documented shape (see README.md in this folder for the story and
/work/shared/reference/log-formats.md style notes for the fields). Everything is fixed: a
seeded random generator, fixed times and a dummy HS256 key, so running this script twice
writes byte-identical files.

The benign morning (with the look-alikes a responder must not mistake for theft) is generated
first; a separate INCIDENTS section then adds forwarding, passthrough and theft into the same
files and timeline from its own seeded generator, so the benign records never change. The
script also writes EXPECTED.json: what a careful responder concludes about every (token,
holder) pair and which findings a correct tool reports, from the story's own definitions.

No raw JWT appears in the output except one `authorization` value in the gateway log (a
deployment that logs the header; tokentrail must fingerprint it and drop it). Every other
token appears only as its id, its claims or its fingerprint.
"""

from __future__ import annotations

import base64
import hashlib
import json
import random
import string
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jwt

OUT = Path(__file__).resolve().parent
SEED = 20261102
DUMMY_KEY = "tokentrail-sample-logs-dummy-hs256-key-not-a-secret"
DAY = datetime(2026, 11, 2, tzinfo=UTC)

rng = random.Random(SEED)

# ---------------------------------------------------------------------------------------
# small deterministic helpers


def at(hms: str) -> datetime:
    """'09:00:04.112' -> that instant on the sample day (UTC)."""
    h, m, s = hms.split(":")
    return DAY + timedelta(hours=int(h), minutes=int(m), seconds=float(s))


def uid() -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def hexs(n: int) -> str:
    return "".join(rng.choice("0123456789abcdef") for _ in range(n))


def alnum(n: int, alphabet: str = string.ascii_letters + string.digits) -> str:
    return "".join(rng.choice(alphabet) for _ in range(n))


def upper_alnum(n: int) -> str:
    return alnum(n, string.ascii_uppercase + string.digits)


def b64u(nbytes: int) -> str:
    return base64.urlsafe_b64encode(rng.randbytes(nbytes)).rstrip(b"=").decode()


def fingerprint(raw: str) -> str:
    """tokentrail's token_fp: base64url(SHA-256(token)) without padding (= DPoP ath)."""
    return base64.urlsafe_b64encode(hashlib.sha256(raw.encode()).digest()).rstrip(b"=").decode()


def iso_ms(dt: datetime) -> str:
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


def iso_us(dt: datetime) -> str:
    return dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def iso_s(dt: datetime) -> str:
    return dt.strftime("%Y-%m-%dT%H:%M:%SZ")


def epoch(dt: datetime) -> int:
    return int(dt.timestamp())


def epoch_ms(dt: datetime) -> int:
    return int(round(dt.timestamp() * 1000))


def aws_expiration(dt: datetime) -> str:
    """CloudTrail's credentials.expiration style: 'Nov 2, 2026, 10:15:00 AM'."""
    hour = dt.hour % 12 or 12
    return f"{dt:%b} {dt.day}, {dt.year}, {hour}:{dt:%M:%S} {'AM' if dt.hour < 12 else 'PM'}"


def dumps(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


def traceparent(trace_id: str) -> str:
    return f"00-{trace_id}-{hexs(16)}-01"


# ---------------------------------------------------------------------------------------
# the cast

TRUST_DOMAIN = "spiffe://acme.example"
KC_ISSUER = "https://sso.acme.example/realms/acme"
K8S_ISSUER = "https://kubernetes.default.svc.cluster.local"
OKTA_ORG = "https://acme.okta.com"
ACCOUNT = "111122223333"
REGION = "us-east-1"


@dataclass
class Pod:
    name: str
    namespace: str
    sa: str
    ip: str
    node: str
    uid: str = field(default_factory=uid)
    svid_fp: str = field(default_factory=lambda: hexs(64))  # SHA-256 of its X.509-SVID

    @property
    def spiffe(self) -> str:
        return f"{TRUST_DOMAIN}/ns/{self.namespace}/sa/{self.sa}"

    def addr(self) -> str:
        return f"{self.ip}:{rng.randint(32768, 60999)}"


NODES = {"worker-1": ("10.20.1.12", uid()), "worker-2": ("10.20.1.13", uid())}
ORCH = Pod("orchestrator-5d6f", "agents", "orchestrator", "10.42.1.15", "worker-1")
CODER_A = Pod("coder-7d9f", "agents", "coder", "10.42.2.17", "worker-1")
CODER_B = Pod("coder-4x2q", "agents", "coder", "10.42.3.21", "worker-2")
RESEARCHER = Pod("researcher-6c4b", "agents", "researcher", "10.42.1.33", "worker-2")
MCP = Pod("mcp-files-7b8c", "tools", "mcp-files", "10.42.4.12", "worker-2")
GATEWAY = Pod("acme-gateway-6f7d9", "istio-system", "acme-gateway", "10.42.0.8", "worker-1")
CODE_API = Pod("code-api-58b6", "apps", "code-api", "10.42.5.20", "worker-2")
CODER_SA_UID = uid()

ALICE = {"id": uid(), "username": "alice"}
MCP_SA_USER = uid()  # Keycloak service-account user of the mcp-files client
SESSION = uid()  # alice's Keycloak session (the sid claim of every token in her chain)
BROWSER_IP = "198.51.100.23"  # Acme office egress
BROWSER_UA = ("Mozilla/5.0 (Macintosh; Intel Mac OS X 14_6) AppleWebKit/605.1.15 "
              "(KHTML, like Gecko) Version/18.1 Safari/605.1.15")
PARTNER_IP = "198.51.100.77"  # Globex egress NAT
UA = {
    "orchestrator": "acme-orchestrator/2.3.0 python-httpx/0.27.2",
    "coder": "acme-coder/1.4.2 python-httpx/0.27.2",
    "researcher": "acme-researcher/1.1.0 aiohttp/3.10.5",
    "mcp-files": "mcp-files/0.9.1 undici/6.19.8",
    "partner": "globex-sync/3.4.1 okhttp/4.12.0",
}
JKT_MCP = b64u(32)  # thumbprint of mcp-files' DPoP key

OKTA_AS = "aus" + alnum(17)
OKTA_CLIENT = "0oa" + alnum(17)
OKTA_ISSUER = f"{OKTA_ORG}/oauth2/{OKTA_AS}"


@dataclass
class Token:
    name: str
    claims: dict[str, Any]
    raw: str = ""
    fp: str = ""

    def __post_init__(self) -> None:
        self.raw = jwt.encode(self.claims, DUMMY_KEY, algorithm="HS256",
                              headers={"kid": "sample-hs256"})
        self.fp = fingerprint(self.raw)

    @property
    def jti(self) -> str:
        return str(self.claims["jti"])

    @property
    def exp(self) -> datetime:
        return datetime.fromtimestamp(self.claims["exp"], UTC)


def kc_token(name: str, issued: datetime, *, sub: str, azp: str, aud: list[str], scope: str,
             lifetime_min: int = 30, act: dict[str, Any] | None = None,
             jkt: str | None = None, sid: str | None = SESSION) -> Token:
    claims: dict[str, Any] = {
        "exp": epoch(issued + timedelta(minutes=lifetime_min)),
        "iat": epoch(issued),
        "jti": uid(),
        "iss": KC_ISSUER,
        "aud": aud if len(aud) > 1 else aud[0],
        "sub": sub,
        "typ": "DPoP" if jkt else "Bearer",
        "azp": azp,
    }
    if sid:
        claims["sid"] = sid
    claims["scope"] = scope
    if act:
        claims["act"] = act
    if jkt:
        claims["cnf"] = {"jkt": jkt}
    return Token(name, claims)


def k8s_token(name: str, issued: datetime, pod: Pod, audience: str, seconds: int) -> Token:
    return Token(name, {
        "aud": [audience],
        "exp": epoch(issued) + seconds,
        "iat": epoch(issued),
        "iss": K8S_ISSUER,
        "jti": uid(),
        "kubernetes.io": {
            "namespace": pod.namespace,
            "node": {"name": pod.node, "uid": NODES[pod.node][1]},
            "pod": {"name": pod.name, "uid": pod.uid},
            "serviceaccount": {"name": pod.sa, "uid": CODER_SA_UID},
            "warnafter": epoch(issued) + int(seconds * 0.8),
        },
        "nbf": epoch(issued),
        "sub": f"system:serviceaccount:{pod.namespace}:{pod.sa}",
    })


def okta_token(name: str, issued: datetime) -> Token:
    return Token(name, {
        "ver": 1,
        "jti": "AT." + b64u(32),
        "iss": OKTA_ISSUER,
        "aud": "api://partner",
        "iat": epoch(issued),
        "exp": epoch(issued + timedelta(hours=1)),
        "cid": OKTA_CLIENT,
        "scp": ["partner.orders.read", "partner.orders.write"],
        "sub": OKTA_CLIENT,
    })


ACT_CODER = {"sub": CODER_A.spiffe, "act": {"sub": ORCH.spiffe}}
ACT_RESEARCHER = {"sub": RESEARCHER.spiffe, "act": {"sub": ORCH.spiffe}}
ORCH_SCOPE = "openid profile email agents:delegate"
CODER_SCOPE = "repo:read repo:write files:read"
RESEARCHER_SCOPE = "docs:read search files:read"
MCP_SCOPE = "files:read storage:read"

# Keycloak tokens (realm acme), in issue order.
A0 = kc_token("A0", at("09:00:04.389"), sub=ALICE["id"], azp="orchestrator",
              aud=["orchestrator", "tasks-api"], scope=ORCH_SCOPE)
RT0, RT1 = uid(), uid()  # alice's refresh tokens (ids only; RT1 replaces RT0 at refresh)
C1 = kc_token("C1", at("09:00:09.501"), sub=ALICE["id"], azp="orchestrator",
              aud=["code-api", "mcp-files"], scope=CODER_SCOPE, act=ACT_CODER)
R1 = kc_token("R1", at("09:00:09.724"), sub=ALICE["id"], azp="orchestrator",
              aud=["research-api", "mcp-files"], scope=RESEARCHER_SCOPE, act=ACT_RESEARCHER)
M1 = kc_token("M1", at("09:00:30.208"), sub=MCP_SA_USER, azp="mcp-files", aud=["files-api"],
              scope=MCP_SCOPE, jkt=JKT_MCP, sid=None)
M2 = kc_token("M2", at("09:28:30.377"), sub=MCP_SA_USER, azp="mcp-files", aud=["files-api"],
              scope=MCP_SCOPE, jkt=JKT_MCP, sid=None)
A1 = kc_token("A1", at("09:29:40.052"), sub=ALICE["id"], azp="orchestrator",
              aud=["orchestrator", "tasks-api"], scope=ORCH_SCOPE)
C2 = kc_token("C2", at("09:29:45.310"), sub=ALICE["id"], azp="orchestrator",
              aud=["code-api", "mcp-files"], scope=CODER_SCOPE, act=ACT_CODER)
R2 = kc_token("R2", at("09:29:45.533"), sub=ALICE["id"], azp="orchestrator",
              aud=["research-api", "mcp-files"], scope=RESEARCHER_SCOPE, act=ACT_RESEARCHER)

# Kubernetes bound service-account tokens (kubelet TokenRequests at pod start).
K0 = k8s_token("K0", at("09:00:01.204"), CODER_A, K8S_ISSUER, 3607)  # kube-api-access
K1 = k8s_token("K1", at("09:00:01.311"), CODER_A, "artifacts.acme.example", 3600)
K2 = k8s_token("K2", at("09:00:02.078"), CODER_B, K8S_ISSUER, 3607)

# Okta access tokens for the Globex partner integration.
P1 = okta_token("P1", at("09:05:02.417"))
P2 = okta_token("P2", at("09:40:01.236"))

# AWS temporary credentials.
KEY_CI = "ASIA" + upper_alnum(16)  # acme-ci role session (GitHub Actions OIDC)
KEY_DEPLOY = "ASIA" + upper_alnum(16)  # acme-deploy role session (AssumeRole by acme-ci)
KEY_EC2 = "ASIA" + upper_alnum(16)  # instance role of artifacts-api (delivered by IMDSv2)
EC2_INSTANCE = "i-0c7e5a1f3b9d24e68"
EC2_IP = "10.20.3.44"

# ---------------------------------------------------------------------------------------
# Envoy: the acme-gateway (Istio ingress for internal and partner APIs) and the code-api
# sidecar. Istio's default JSON keys, plus the token-provenance keys tokentrail documents.

ROUTES = {
    "tasks-api.acme.example": ("tasks-api", "outbound|8080||tasks-api.apps.svc.cluster.local",
                               ["10.42.8.50:8080"]),
    "code-api.acme.example": ("code-api", "outbound|8080||code-api.apps.svc.cluster.local",
                              [f"{CODE_API.ip}:8080"]),
    "research-api.acme.example": ("research-api",
                                  "outbound|8080||research-api.apps.svc.cluster.local",
                                  ["10.42.6.30:8080", "10.42.6.31:8080"]),
    "files-api.acme.example": ("files-api", "outbound|8080||files-api.apps.svc.cluster.local",
                               ["10.42.7.40:8080"]),
    "artifacts.acme.example": ("artifacts", "outbound|8443||artifacts-api.ec2.acme.internal",
                               [f"{EC2_IP}:8443"]),
    "partner-api.acme.example": ("partner-api",
                                 "outbound|8080||partner-api.apps.svc.cluster.local",
                                 ["10.42.9.60:8080"]),
    # staff-facing APIs (look-alikes section)
    "orders-api.acme.example": ("orders-api", "outbound|8080||orders-api.apps.svc.cluster.local",
                                ["10.42.11.70:8080", "10.42.11.71:8080"]),
    "reports-api.acme.example": ("reports-api",
                                 "outbound|8080||reports-api.apps.svc.cluster.local",
                                 ["10.42.12.80:8080"]),
}

gateway_lines: list[dict[str, Any]] = []
sidecar_lines: list[dict[str, Any]] = []


def envoy_record(start: datetime, *, authority: str, method: str, path: str, status: int,
                 details: str, flags: str, remote: str, xff: str | None, ua: str | None,
                 rid: str, trace: str, cluster: str, upstream: str | None, route: str,
                 peer: Pod | None, claims: dict[str, Any] | None, token_fp: str | None,
                 dpop_jkt: str | None, authorization: str | None, duration: int
                 ) -> dict[str, Any]:
    """One access-log line: a trimmed Istio JSON format plus tokentrail's provenance keys."""
    return {
        "authority": authority,
        "authorization": authorization,
        "downstream_peer_fingerprint_256": peer.svid_fp if peer else None,
        "downstream_peer_uri_san": peer.spiffe if peer else None,
        "downstream_remote_address": remote,
        "dpop_jkt": dpop_jkt,
        "dpop_proof_jti": uid() if dpop_jkt else None,
        "duration": duration,
        "jwt_payload": claims,
        "method": method,
        "path": path,
        "protocol": "HTTP/2" if peer else "HTTP/1.1",
        "request_id": rid,
        "response_code": status,
        "response_code_details": details,
        "response_flags": flags,
        "route_name": route,
        "start_time": iso_ms(start),
        "token_fp": token_fp,
        "traceparent": traceparent(trace),
        "upstream_cluster": cluster,
        "upstream_host": upstream,
        "user_agent": ua,
        "x_forwarded_for": xff,
    }


def gw(hms: str, who: Pod | str, authority: str, method: str, path: str, status: int = 200,
       *, token: Token | None = None, rid: str | None = None, trace: str | None = None,
       details: str = "via_upstream", flags: str = "-", upstream: str | None = None,
       verified: bool = True, raw_auth: bool = False, hop: bool = False,
       ua: str | None = None) -> dict[str, Any]:
    """One request through acme-gateway; `hop` also logs it at the code-api sidecar."""
    start = at(hms)
    route, cluster, hosts = ROUTES[authority]
    rid = rid or uid()
    trace = trace or hexs(32)
    peer = who if isinstance(who, Pod) else None
    if peer is not None:
        remote, xff = peer.addr(), None
        agent_ua = ua or UA.get(peer.sa, UA["coder"])
    else:
        port = rng.randint(32768, 60999)
        # Envoy writes an IPv6 peer as [address]:port
        remote = f"[{who}]:{port}" if ":" in str(who) else f"{who}:{port}"
        xff = str(who) if token is not None else None  # the LB's health checks carry no XFF
        agent_ua = ua or UA["partner"]
    refused = status == 401 or details.startswith("rbac_access_denied")
    if refused:
        upstream = None  # jwt_authn / RBAC answered at the gateway
    elif upstream is None:
        upstream = rng.choice(hosts)
    claims = token.claims if token is not None and verified else None
    jkt = token.claims.get("cnf", {}).get("jkt") if token is not None else None
    duration = rng.randint(4, 60) if upstream else rng.randint(0, 2)
    rec = envoy_record(
        start, authority=authority, method=method, path=path, status=status, details=details,
        flags=flags, remote=remote, xff=xff, ua=agent_ua, rid=rid, trace=trace,
        cluster=cluster, upstream=upstream, route=route, peer=peer, claims=claims,
        token_fp=token.fp if token else None,
        dpop_jkt=jkt if token is not None and verified else None,
        authorization=f"Bearer {token.raw}" if raw_auth and token else None,
        duration=duration)
    gateway_lines.append(rec)
    if hop and peer is not None and upstream is not None:
        side_start = start + timedelta(milliseconds=rng.randint(2, 4))
        side = envoy_record(
            side_start, authority=authority, method=method, path=path, status=status,
            details=details, flags=flags, remote=f"{GATEWAY.ip}:{rng.randint(32768, 60999)}",
            xff=peer.ip, ua=agent_ua, rid=rid, trace=trace, cluster="inbound|8080||",
            upstream=f"{CODE_API.ip}:8080", route="default", peer=GATEWAY, claims=claims,
            token_fp=None, dpop_jkt=None, authorization=None,
            duration=max(1, duration - rng.randint(2, 4)))
        sidecar_lines.append(side)
    return rec


# ---------------------------------------------------------------------------------------
# tokentrail JSON Lines written by the mcp-files MCP server about the tokens it handles.

mcp_lines: list[dict[str, Any]] = []
MCP_SESSIONS = {"coder": uid(), "researcher": uid()}


def mcp_inbound(hms: str, caller: Pod, token: Token, tool: str, trace: str, *,
                status: int = 200, error: str | None = None) -> None:
    c = token.claims
    rec: dict[str, Any] = {
        "ts": iso_ms(at(hms)), "kind": "use",
        "outcome": "success" if status < 400 else "failure",
        "token_id": token.jti, "token_fp": token.fp, "subject": c["sub"],
        "client_id": c["azp"], "audience": c["aud"], "scopes": c["scope"].split(),
        "act_chain": [c["act"]["sub"], c["act"]["act"]["sub"]], "exp": iso_s(token.exp),
        "claims_verified": True, "auth_scheme": "Bearer", "peer_spiffe": caller.spiffe,
        "src_ip": caller.ip,
        "resource": "mcp-files", "method": "POST", "path": "/mcp", "status": status,
        "request_id": uid(), "trace_id": trace,
        "extra": {"mcp.method.name": "tools/call", "gen_ai.tool.name": tool,
                  "mcp.session.id": MCP_SESSIONS[caller.sa],
                  "jsonrpc.request.id": str(rng.randint(2, 400))},
    }
    if error:
        rec["error"] = error
    mcp_lines.append(rec)


def mcp_outbound(hms: str, token: Token, path: str, trace: str, *, status: int = 200) -> str:
    """mcp-files calls files-api through the gateway with its own DPoP-bound token."""
    rid = uid()
    c = token.claims
    mcp_lines.append({
        "ts": iso_ms(at(hms)), "kind": "use",
        "outcome": "success" if status < 400 else "failure",
        "token_id": token.jti, "token_fp": token.fp, "subject": c["sub"],
        "client_id": c["azp"], "audience": [c["aud"]], "scopes": c["scope"].split(),
        "cnf_jkt": c["cnf"]["jkt"], "auth_scheme": "DPoP", "proof_jkt": c["cnf"]["jkt"],
        "holder_id": MCP.spiffe, "holder_tier": "spiffe", "exp": iso_s(token.exp),
        "resource": "files-api.acme.example", "method": "GET", "path": path, "status": status,
        "request_id": rid, "trace_id": trace,
        "extra": {"direction": "outbound", "pod": f"{MCP.namespace}/{MCP.name}"},
    })
    gw(hms_plus(hms, 0.004), MCP, "files-api.acme.example", "GET", path, status, token=token,
       rid=rid, trace=trace)
    return rid


def hms_plus(hms: str, seconds: float) -> str:
    t = at(hms) + timedelta(seconds=seconds)
    return t.strftime("%H:%M:%S.") + f"{t.microsecond // 1000:03d}"


def tool_call(hms: str, caller: Pod, token: Token, tool: str, path: str,
              mcp_token: Token) -> None:
    trace = hexs(32)
    mcp_inbound(hms, caller, token, tool, trace)
    mcp_outbound(hms_plus(hms, 0.021), mcp_token, path, trace)


# ---------------------------------------------------------------------------------------
# the gateway timeline

TASK = "tsk_" + alnum(12, string.ascii_lowercase + string.digits)
REPO = "/v1/repos/acme/agents"


def build_gateway_and_mcp() -> None:
    # 09:00 alice starts a task; the orchestrator (A0) plans it and delegates.
    gw("09:00:05.018", ORCH, "tasks-api.acme.example", "POST", "/v1/tasks", 201, token=A0)
    gw("09:00:06.240", ORCH, "tasks-api.acme.example", "GET", f"/v1/tasks/{TASK}/plan",
       token=A0)
    # Two coder replicas share one SPIFFE ID and one delegated token (C1).
    gw("09:00:12.377", CODER_B, "code-api.acme.example", "GET", f"{REPO}/tree/main",
       token=C1, hop=True)
    gw("09:00:14.902", RESEARCHER, "research-api.acme.example", "GET",
       "/v1/search?q=agent+delegation+rfc8693&limit=20", token=R1)
    # A client retry: same x-request-id twice within a second (503 UF, then 200).
    retry = uid()
    retry_trace = hexs(32)
    gw("09:00:15.131", RESEARCHER, "research-api.acme.example", "POST",
       "/v1/documents:fetch", 503, token=R1, rid=retry, trace=retry_trace, flags="UF",
       details="upstream_reset_before_response_started{connection_failure}",
       upstream="10.42.6.31:8080")
    gw("09:00:15.562", RESEARCHER, "research-api.acme.example", "POST",
       "/v1/documents:fetch", 200, token=R1, rid=retry, trace=retry_trace,
       upstream="10.42.6.30:8080")
    tool_call("09:00:39.507", RESEARCHER, R1, "read_file", "/v1/objects/specs/agent-protocol.md",
              M1)
    gw("09:01:30.664", CODER_B, "code-api.acme.example", "GET",
       f"{REPO}/contents/src/main.py?ref=main", token=C1)
    gw("09:02:05.119", CODER_A, "code-api.acme.example", "GET",
       f"{REPO}/contents/src/tools.py?ref=main", token=C1, hop=True)
    tool_call("09:02:39.850", CODER_A, C1, "read_file", "/v1/objects/specs/tool-schema.json", M1)
    gw("09:04:10.406", CODER_A, "code-api.acme.example", "POST", f"{REPO}/git/commits", 201,
       token=C1, hop=True)
    gw("09:04:50.733", CODER_B, "code-api.acme.example", "PUT",
       f"{REPO}/branches/main/protection", 403, token=C1,
       details="rbac_access_denied_matched_policy[ns[apps]-policy[code-api-admin]-rule[0]]")
    gw("09:05:12.958", PARTNER_IP, "partner-api.acme.example", "GET",
       "/v1/orders?since=2026-11-02T00:00:00Z", token=P1)
    gw("09:06:02.291", CODER_B, "code-api.acme.example", "POST", f"{REPO}/pulls", 201,
       token=C1, hop=True)
    gw("09:06:30.845", ORCH, "tasks-api.acme.example", "PATCH", f"/v1/tasks/{TASK}", token=A0)
    # The bound service-account token of coder-7d9f (K1) uploads a build artifact.
    gw("09:12:10.120", CODER_A, "artifacts.acme.example", "PUT",
       "/v1/artifacts/agents/build-20261102-0912.tar.gz", 201, token=K1)
    gw("09:14:21.570", RESEARCHER, "research-api.acme.example", "GET",
       "/v1/documents/doc_8f3k2m/summary", token=R1)
    gw("09:15:40.032", PARTNER_IP, "partner-api.acme.example", "GET", "/v1/orders/ORD-1001",
       token=P1)
    # This route logs the Authorization header (a misconfiguration tokentrail must survive).
    gw("09:18:03.496", PARTNER_IP, "partner-api.acme.example", "POST",
       "/v1/orders/ORD-1001/shipments", 201, token=P1, raw_auth=True)
    tool_call("09:20:11.274", CODER_B, C1, "list_directory", "/v1/objects/?prefix=specs/", M1)
    gw("09:22:47.615", CODER_B, "code-api.acme.example", "GET", f"{REPO}/pulls/412/checks",
       token=C1)
    gw("09:25:00.004", "10.20.0.5", "partner-api.acme.example", "GET", "/healthz/ready",
       ua="ELB-HealthChecker/2.0")
    gw("09:29:20.388", ORCH, "tasks-api.acme.example", "GET", f"/v1/tasks/{TASK}", token=A0)
    # 09:29:40 the orchestrator refreshes (A1) and re-delegates (C2, R2).
    gw("09:29:41.117", ORCH, "tasks-api.acme.example", "GET", f"/v1/tasks/{TASK}/plan",
       token=A1)
    # The researcher still had R1 cached: the gateway refuses the expired token, the
    # researcher picks up R2 from the orchestrator and retries.
    gw("09:30:12.640", RESEARCHER, "research-api.acme.example", "GET",
       "/v1/documents/doc_8f3k2m", 401, token=R1, verified=False,
       details="jwt_authn_access_denied{Jwt_is_expired}")
    gw("09:30:13.082", RESEARCHER, "research-api.acme.example", "GET",
       "/v1/documents/doc_8f3k2m", token=R2)
    gw("09:31:05.913", CODER_A, "code-api.acme.example", "GET", f"{REPO}/pulls/412", token=C2,
       hop=True)
    gw("09:33:26.457", CODER_B, "code-api.acme.example", "POST", f"{REPO}/pulls/412/comments",
       201, token=C2)
    tool_call("09:36:52.019", CODER_A, C2, "read_file", "/v1/objects/specs/agent-protocol.md",
              M2)
    gw("09:40:30.701", PARTNER_IP, "partner-api.acme.example", "GET",
       "/v1/orders?since=2026-11-02T09:15:00Z", token=P2)
    gw("09:41:18.336", CODER_A, "artifacts.acme.example", "PUT",
       "/v1/artifacts/agents/build-20261102-0941.tar.gz", 201, token=K1)
    tool_call("09:45:03.662", RESEARCHER, R2, "search_files", "/v1/objects/?q=token+exchange",
              M2)
    # A tool the researcher's token has no scope for: the MCP server refuses it.
    mcp_inbound("09:45:40.118", RESEARCHER, R2, "write_file", hexs(32), status=403,
                error="insufficient_scope")
    gw("09:48:09.925", CODER_B, "code-api.acme.example", "GET", f"{REPO}/pulls/412/checks",
       token=C2)
    gw("09:50:31.208", RESEARCHER, "research-api.acme.example", "GET",
       "/v1/search?q=dpop+proof+replay&limit=20", token=R2)
    gw("09:51:44.590", PARTNER_IP, "partner-api.acme.example", "GET", "/v1/orders/ORD-1002",
       token=P2)
    gw("09:55:02.774", ORCH, "tasks-api.acme.example", "PATCH", f"/v1/tasks/{TASK}", token=A1)


# ---------------------------------------------------------------------------------------
# Keycloak realm `acme`: admin REST events API (GET /admin/realms/acme/events), newest first.

def kc_event(hms: str, etype: str, client: str, user: str, ip: str, session: str | None,
             details: dict[str, str], error: str | None = None) -> dict[str, Any]:
    ev: dict[str, Any] = {"id": uid(), "time": epoch_ms(at(hms)), "type": etype,
                          "realmId": "acme", "clientId": client, "userId": user,
                          "ipAddress": ip}
    if session:
        ev["sessionId"] = session
    if error:
        ev["error"] = error
    ev["details"] = details
    return ev


def build_keycloak() -> list[dict[str, Any]]:
    redirect = "https://agents.acme.example/oauth/callback"
    exchange = "urn:ietf:params:oauth:grant-type:token-exchange"
    access = "urn:ietf:params:oauth:token-type:access_token"

    def xchg(hms: str, tok: Token, audience: str) -> dict[str, Any]:
        return kc_event(hms, "TOKEN_EXCHANGE", "orchestrator", ALICE["id"], ORCH.ip, SESSION, {
            "token_id": tok.jti, "grant_type": exchange, "audience": audience,
            "scope": tok.claims["scope"], "subject_token_client_id": "orchestrator",
            "requested_token_type": access, "client_auth_method": "client-jwt"})

    def client_login(hms: str, tok: Token) -> dict[str, Any]:
        return kc_event(hms, "CLIENT_LOGIN", "mcp-files", MCP_SA_USER, MCP.ip, uid(), {
            "token_id": tok.jti, "grant_type": "client_credentials", "scope": MCP_SCOPE,
            "client_auth_method": "client-jwt", "username": "service-account-mcp-files"})

    events = [
        kc_event("09:00:01.870", "LOGIN_ERROR", "orchestrator", ALICE["id"], BROWSER_IP, None, {
            "auth_method": "openid-connect", "auth_type": "code", "redirect_uri": redirect,
            "code_id": SESSION, "username": "alice"}, error="invalid_user_credentials"),
        kc_event("09:00:04.112", "LOGIN", "orchestrator", ALICE["id"], BROWSER_IP, SESSION, {
            "auth_method": "openid-connect", "auth_type": "code", "redirect_uri": redirect,
            "consent": "no_consent_required", "code_id": SESSION, "username": "alice"}),
        kc_event("09:00:04.389", "CODE_TO_TOKEN", "orchestrator", ALICE["id"], ORCH.ip, SESSION, {
            "token_id": A0.jti, "grant_type": "authorization_code",
            "refresh_token_type": "Refresh", "scope": ORCH_SCOPE, "refresh_token_id": RT0,
            "code_id": SESSION, "client_auth_method": "client-jwt"}),
        xchg("09:00:09.501", C1, "code-api"),
        xchg("09:00:09.724", R1, "research-api"),
        client_login("09:00:30.208", M1),
        client_login("09:28:30.377", M2),
        kc_event("09:29:40.052", "REFRESH_TOKEN", "orchestrator", ALICE["id"], ORCH.ip, SESSION, {
            "token_id": A1.jti, "grant_type": "refresh_token", "refresh_token_type": "Refresh",
            "scope": ORCH_SCOPE, "refresh_token_id": RT0, "updated_refresh_token_id": RT1,
            "client_auth_method": "client-jwt"}),
        xchg("09:29:45.310", C2, "code-api"),
        xchg("09:29:45.533", R2, "research-api"),
        kc_event("09:57:12.481", "LOGOUT", "orchestrator", ALICE["id"], BROWSER_IP, SESSION, {
            "redirect_uri": "https://agents.acme.example/"}),
    ]
    return sorted(events, key=lambda e: e["time"], reverse=True)


# ---------------------------------------------------------------------------------------
# Okta System Log (GET /api/v1/logs), oldest first.

def okta_client(ip: str, ua: str, os_name: str, browser: str, city: str) -> dict[str, Any]:
    return {
        "userAgent": {"rawUserAgent": ua, "os": os_name, "browser": browser},
        "zone": "null", "device": "Unknown" if browser == "UNKNOWN" else "Computer",
        "id": None, "ipAddress": ip,
        "geographicalContext": {"city": city, "state": None, "country": "United States",
                                "postalCode": None, "geolocation": {"lat": 0.0, "lon": 0.0}},
    }


def okta_event(hms: str, etype: str, legacy: str, message: str, actor: dict[str, Any],
               client: dict[str, Any], outcome: tuple[str, str | None],
               debug: dict[str, Any], target: list[dict[str, Any]] | None,
               session: str = "unknown", asn: tuple[int, str] = (64500, "globex")
               ) -> dict[str, Any]:
    txn = alnum(27)
    debug = {"requestId": txn, **debug}
    return {
        "actor": actor,
        "client": client,
        "device": None,
        "authenticationContext": {
            "authenticationProvider": None, "credentialProvider": None,
            "credentialType": None, "issuer": None, "interface": None,
            "authenticationStep": 0, "externalSessionId": session},
        "displayMessage": message,
        "eventType": etype,
        "outcome": {"result": outcome[0], "reason": outcome[1]},
        "published": iso_ms(at(hms)),
        "securityContext": {"asNumber": asn[0], "asOrg": asn[1], "isp": asn[1],
                            "domain": f"{asn[1]}.example", "isProxy": False},
        "severity": "INFO" if outcome[0] == "SUCCESS" else "WARN",
        "debugContext": {"debugData": debug},
        "legacyEventType": legacy,
        "transaction": {"type": "WEB", "id": txn, "detail": {}},
        "uuid": uid(),
        "version": "0",
        "request": {"ipChain": [{
            "ip": client["ipAddress"],
            "geographicalContext": client["geographicalContext"],
            "version": "V4", "source": None}]},
        "target": target,
    }


def build_okta() -> list[dict[str, Any]]:
    app_actor = {"id": OKTA_CLIENT, "type": "PublicClientApp", "alternateId": OKTA_CLIENT,
                 "displayName": "Globex Partner Sync", "detailEntry": None}
    carol = {"id": "00u" + alnum(17), "type": "User", "alternateId": "carol@acme.example",
             "displayName": "Carol Diaz", "detailEntry": None}
    partner_client = okta_client(PARTNER_IP, UA["partner"], "Unknown", "UNKNOWN", "Chicago")
    partner_client["id"] = OKTA_CLIENT
    office = okta_client(BROWSER_IP, BROWSER_UA, "Mac OS X", "SAFARI", "Boston")
    token_uri = f"/oauth2/{OKTA_AS}/v1/token"

    def grant_debug() -> dict[str, Any]:
        return {
            "clientAuthType": "private_key_jwt", "grantType": "client_credentials",
            "requestedScopes": "partner.orders.read, partner.orders.write",
            "grantedScopes": "partner.orders.read, partner.orders.write",
            "requestUri": token_uri, "url": token_uri + "?", "authorizationServer": OKTA_AS,
            "authorizationServerName": "Partner API", "threatSuspected": "false",
            "responseTime": str(rng.randint(80, 260)), "dtHash": hexs(64)}

    def at_target(tok: Token) -> list[dict[str, Any]]:
        return [{"id": tok.jti, "type": "access_token", "alternateId": None,
                 "displayName": "Access Token",
                 "detailEntry": {"expires": iso_ms(tok.exp), "subject": OKTA_CLIENT,
                                 "hash": b64u(16)}}]

    portal = [{"id": "0oa" + alnum(17), "type": "AppInstance",
               "alternateId": "Globex Partner Portal", "displayName": "Globex Partner Portal",
               "detailEntry": {"signOnModeType": "SAML_2_0"}}]
    office_session = "102" + alnum(22)
    failed = grant_debug()
    del failed["grantedScopes"]
    return [
        okta_event("09:03:40.281", "user.session.start", "core.user_auth.login_success",
                   "User login to Okta", carol, office, ("SUCCESS", None),
                   {"behaviors": "{New Geo-Location=NEGATIVE, New Device=NEGATIVE}"},
                   None, session=office_session, asn=(64501, "acme")),
        okta_event("09:03:52.907", "user.authentication.sso", "app.auth.sso",
                   "User single sign on to app", carol, office, ("SUCCESS", None),
                   {"initiationType": "IDP_INITIATED", "signOnMode": "SAML 2.0"}, portal,
                   session=office_session, asn=(64501, "acme")),
        okta_event("09:05:02.417", "app.oauth2.as.token.grant.access_token",
                   "app.oauth2.as.token.grant.access_token_success",
                   "OAuth2 access token is granted", app_actor, partner_client,
                   ("SUCCESS", None), grant_debug(), at_target(P1)),
        # Globex rotated its signing key; one worker still signed with the old one.
        okta_event("09:39:58.604", "app.oauth2.as.token.grant",
                   "app.oauth2.as.token.grant_failure",
                   "OAuth2 token request failed", app_actor, partner_client,
                   ("FAILURE", "invalid_client"), failed, None),
        okta_event("09:40:01.236", "app.oauth2.as.token.grant.access_token",
                   "app.oauth2.as.token.grant.access_token_success",
                   "OAuth2 access token is granted", app_actor, partner_client,
                   ("SUCCESS", None), grant_debug(), at_target(P2)),
        okta_event("09:52:10.045", "app.oauth2.as.token.revoke",
                   "app.oauth2.as.token.revoke_success", "OAuth2 token revocation request",
                   app_actor, partner_client, ("SUCCESS", None),
                   {"clientAuthType": "private_key_jwt", "requestUri":
                    f"/oauth2/{OKTA_AS}/v1/revoke", "url": f"/oauth2/{OKTA_AS}/v1/revoke?",
                    "authorizationServer": OKTA_AS, "authorizationServerName": "Partner API",
                    "threatSuspected": "false"}, at_target(P1)),
    ]


# ---------------------------------------------------------------------------------------
# AWS CloudTrail, as delivered to S3: {"Records": [...]}.

ROLE_IDS = {"acme-ci": "AROA" + upper_alnum(17), "acme-deploy": "AROA" + upper_alnum(17),
            "acme-artifacts-api": "AROA" + upper_alnum(17)}
GITHUB_IP = "192.0.2.44"
GITHUB_UA = ("aws-sdk-nodejs/3.658.1 linux/v20.17.0 configure-aws-credentials-for-github-actions"
             " api/sts/3.658.1")
CLI_UA = "aws-cli/2.18.4 md/awscrt#0.22.0 ua/2.0 os/linux#6.5.0-1025-azure md/arch#x86_64 " \
         "lang/python#3.12.6 md/pyimpl#CPython exec-env/GitHubActions cfg/retry-mode#standard " \
         "md/installer#exe sid/{} md/prompt#off md/command#{}"
EC2_UA = "aws-sdk-go-v2/1.32.2 os/linux lang/go#1.23.2 md/GOOS#linux md/GOARCH#amd64 " \
         "api/{}#{}"
OIDC = f"arn:aws:iam::{ACCOUNT}:oidc-provider/token.actions.githubusercontent.com"
GH_SUBJECT = "repo:acme/agents:ref:refs/heads/main"


def role_arn(role: str) -> str:
    return f"arn:aws:iam::{ACCOUNT}:role/{role}"


def session_identity(role: str, session: str, key: str, created: datetime,
                     ec2: bool = False) -> dict[str, Any]:
    ctx: dict[str, Any] = {
        "sessionIssuer": {"type": "Role", "principalId": ROLE_IDS[role], "arn": role_arn(role),
                          "accountId": ACCOUNT, "userName": role},
        "attributes": {"creationDate": iso_s(created), "mfaAuthenticated": "false"},
    }
    if ec2:
        ctx["ec2RoleDelivery"] = "2.0"
    return {
        "type": "AssumedRole",
        "principalId": f"{ROLE_IDS[role]}:{session}",
        "arn": f"arn:aws:sts::{ACCOUNT}:assumed-role/{role}/{session}",
        "accountId": ACCOUNT,
        "accessKeyId": key,
        "sessionContext": ctx,
    }


def ct_event(hms: str, source: str, name: str, identity: dict[str, Any], ip: str, ua: str,
             request: dict[str, Any] | None, response: dict[str, Any] | None, *,
             read_only: bool, category: str = "Management", host: str | None = None,
             extra: dict[str, Any] | None = None, s3: bool = False) -> dict[str, Any]:
    ev: dict[str, Any] = {
        "eventVersion": "1.10" if s3 else "1.08",
        "userIdentity": identity,
        "eventTime": iso_s(at(hms)),
        "eventSource": source,
        "eventName": name,
        "awsRegion": REGION,
        "sourceIPAddress": ip,
        "userAgent": ua,
        "requestParameters": request,
        "responseElements": response,
    }
    if extra:
        ev.update(extra)
    ev.update({
        "requestID": upper_alnum(16) if s3 else uid(),
        "eventID": uid(),
        "readOnly": read_only,
        "eventType": "AwsApiCall",
        "managementEvent": category == "Management",
        "recipientAccountId": ACCOUNT,
        "eventCategory": category,
        "tlsDetails": {"tlsVersion": "TLSv1.3", "cipherSuite": "TLS_AES_128_GCM_SHA256",
                       "clientProvidedHostHeader": host or f"{source.split('.')[0]}.{REGION}"
                       ".amazonaws.com"},
    })
    return ev


def session_token() -> str:
    """A fake STS session token: base64 with the usual IQoJb3JpZ2luX2Vj prefix."""
    return "IQoJb3JpZ2luX2Vj" + base64.b64encode(rng.randbytes(300)).decode()


def build_cloudtrail() -> dict[str, Any]:
    ci_session = "GitHubActions"
    deploy_session = "ci-deploy-8812345"
    issued_ci = at("09:14:58")
    issued_deploy = at("09:15:00")
    ec2_created = at("08:47:21")
    ci_id = session_identity("acme-ci", ci_session, KEY_CI, issued_ci)
    deploy_id = session_identity("acme-deploy", deploy_session, KEY_DEPLOY, issued_deploy)
    ec2_id = session_identity("acme-artifacts-api", EC2_INSTANCE, KEY_EC2, ec2_created,
                              ec2=True)
    cli = "".join(rng.choice("0123456789abcdef") for _ in range(8))
    sts_resources = [{"accountId": ACCOUNT, "type": "AWS::IAM::Role", "ARN": role_arn(r)}
                     for r in ("acme-ci",)]
    vpce = "vpce-0a1b2c3d4e5f60718"

    def s3_put(hms: str, key: str, size: int) -> dict[str, Any]:
        bucket = "acme-artifacts"
        return ct_event(
            hms, "s3.amazonaws.com", "PutObject", ec2_id, EC2_IP, EC2_UA.format("s3", "1.66.0"),
            {"bucketName": bucket, "Host": f"{bucket}.s3.{REGION}.amazonaws.com", "key": key},
            {"x-amz-server-side-encryption": "aws:kms",
             "x-amz-server-side-encryption-aws-kms-key-id":
             f"arn:aws:kms:{REGION}:{ACCOUNT}:key/{uid()}"},
            read_only=False, category="Data", s3=True,
            host=f"{bucket}.s3.{REGION}.amazonaws.com",
            extra={"additionalEventData": {
                "SignatureVersion": "SigV4", "CipherSuite": "TLS_AES_128_GCM_SHA256",
                "bytesTransferredIn": size, "SSEApplied": "SSE_KMS",
                "AuthenticationMethod": "AuthHeader",
                "x-amz-id-2": base64.b64encode(rng.randbytes(57)).decode(),
                "bytesTransferredOut": 0},
                "resources": [{"type": "AWS::S3::Object",
                               "ARN": f"arn:aws:s3:::{bucket}/{key}"},
                              {"accountId": ACCOUNT, "type": "AWS::S3::Bucket",
                               "ARN": f"arn:aws:s3:::{bucket}"}],
                "vpcEndpointId": vpce,
                "vpcEndpointAccountId": ACCOUNT})

    def ecs_describe(hms: str) -> dict[str, Any]:
        return ct_event(hms, "ecs.amazonaws.com", "DescribeServices", deploy_id, GITHUB_IP,
                        CLI_UA.format(cli, "ecs.wait.services-stable"),
                        {"cluster": "acme-web", "services": ["agents-console"]}, None,
                        read_only=True)

    records = [
        ct_event("09:14:58", "sts.amazonaws.com", "AssumeRoleWithWebIdentity", {
            "type": "WebIdentityUser", "principalId": f"{OIDC}:sts.amazonaws.com:{GH_SUBJECT}",
            "userName": GH_SUBJECT, "identityProvider": OIDC}, GITHUB_IP, GITHUB_UA,
            {"roleArn": role_arn("acme-ci"), "roleSessionName": ci_session,
             "durationSeconds": 3600},
            {"credentials": {"accessKeyId": KEY_CI, "sessionToken": session_token(),
                             "expiration": aws_expiration(issued_ci + timedelta(hours=1))},
             "subjectFromWebIdentityToken": GH_SUBJECT,
             "assumedRoleUser": {"assumedRoleId": f"{ROLE_IDS['acme-ci']}:{ci_session}",
                                 "arn": f"arn:aws:sts::{ACCOUNT}:assumed-role/acme-ci/"
                                        f"{ci_session}"},
             "provider": OIDC, "audience": "sts.amazonaws.com"},
            read_only=True, extra={"additionalEventData": {
                "identityProviderConnectionVerificationMethod": "IAMTrustStore"},
                "resources": sts_resources}),
        ct_event("09:14:59", "sts.amazonaws.com", "GetCallerIdentity", ci_id, GITHUB_IP,
                 GITHUB_UA, None, None, read_only=True),
        # Role chaining: the CI role assumes the deploy role (chained sessions: 1 h at most).
        ct_event("09:15:00", "sts.amazonaws.com", "AssumeRole", ci_id, GITHUB_IP, GITHUB_UA,
                 {"roleArn": role_arn("acme-deploy"), "roleSessionName": deploy_session,
                  "durationSeconds": 3600},
                 {"credentials": {"accessKeyId": KEY_DEPLOY, "sessionToken": session_token(),
                                  "expiration": aws_expiration(at("10:15:00"))},
                  "assumedRoleUser": {
                      "assumedRoleId": f"{ROLE_IDS['acme-deploy']}:{deploy_session}",
                      "arn": f"arn:aws:sts::{ACCOUNT}:assumed-role/acme-deploy/"
                             f"{deploy_session}"}},
                 read_only=True, extra={"resources": [
                     {"accountId": ACCOUNT, "type": "AWS::IAM::Role",
                      "ARN": role_arn("acme-deploy")}]}),
        ct_event("09:15:03", "sts.amazonaws.com", "GetCallerIdentity", deploy_id, GITHUB_IP,
                 CLI_UA.format(cli, "sts.get-caller-identity"), None, None, read_only=True),
        ct_event("09:15:05", "ecr.amazonaws.com", "GetAuthorizationToken", deploy_id, GITHUB_IP,
                 CLI_UA.format(cli, "ecr.get-login-password"), None, None, read_only=True,
                 host=f"api.ecr.{REGION}.amazonaws.com"),
        ct_event("09:15:41", "ecr.amazonaws.com", "PutImage", deploy_id, GITHUB_IP,
                 "docker/27.3.1 go/go1.22.7 git-commit/41ca978 kernel/6.5.0-1025-azure "
                 "os/linux arch/amd64",
                 {"repositoryName": "agents-console", "imageTag": "sha-3f9c2e1",
                  "registryId": ACCOUNT},
                 {"image": {"registryId": ACCOUNT, "repositoryName": "agents-console",
                            "imageId": {"imageDigest": "sha256:" + hexs(64),
                                        "imageTag": "sha-3f9c2e1"}}},
                 read_only=False, host=f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com"),
        ct_event("09:15:52", "ecs.amazonaws.com", "UpdateService", deploy_id, GITHUB_IP,
                 CLI_UA.format(cli, "ecs.update-service"),
                 {"cluster": "acme-web", "service": "agents-console",
                  "taskDefinition": "agents-console:57", "forceNewDeployment": False},
                 {"service": {"serviceName": "agents-console", "status": "ACTIVE",
                              "serviceArn": f"arn:aws:ecs:{REGION}:{ACCOUNT}:service/acme-web/"
                                            "agents-console",
                              "taskDefinition": f"arn:aws:ecs:{REGION}:{ACCOUNT}:"
                                                "task-definition/agents-console:57",
                              "desiredCount": 2}},
                 read_only=False),
        ecs_describe("09:16:08"),
        ecs_describe("09:16:23"),
        # The artifacts-api instance writes what coder-7d9f uploaded through the gateway.
        ct_event("09:11:59", "ssm.amazonaws.com", "GetParameter", ec2_id, EC2_IP,
                 EC2_UA.format("ssm", "1.55.3"),
                 {"name": "/artifacts-api/bucket", "withDecryption": False}, None,
                 read_only=True, extra={"vpcEndpointId": "vpce-0f1e2d3c4b5a69788",
                                        "vpcEndpointAccountId": ACCOUNT}),
        s3_put("09:12:11", "agents/build-20261102-0912.tar.gz", 18_734_592),
        s3_put("09:41:19", "agents/build-20261102-0941.tar.gz", 18_802_176),
    ]
    records.sort(key=lambda r: r["eventTime"])
    return {"Records": records}


# ---------------------------------------------------------------------------------------
# Kubernetes audit log (audit.k8s.io/v1 Event, JSON Lines), cluster agents-prod.

KUBELET_UA = "kubelet/v1.31.2 (linux/amd64) kubernetes/5864a46"
CODER_UA = "OpenAPI-Generator/31.0.0/python"
NODE_CERT = {n: hexs(64) for n in NODES}


def sa_user(pod: Pod, token: Token) -> dict[str, Any]:
    node_name = pod.node
    return {
        "username": f"system:serviceaccount:{pod.namespace}:{pod.sa}",
        "uid": CODER_SA_UID,
        "groups": ["system:serviceaccounts", f"system:serviceaccounts:{pod.namespace}",
                   "system:authenticated"],
        "extra": {
            "authentication.kubernetes.io/credential-id": [f"JTI={token.jti}"],
            "authentication.kubernetes.io/node-name": [node_name],
            "authentication.kubernetes.io/node-uid": [NODES[node_name][1]],
            "authentication.kubernetes.io/pod-name": [pod.name],
            "authentication.kubernetes.io/pod-uid": [pod.uid],
        },
    }


def node_user(node: str) -> dict[str, Any]:
    return {"username": f"system:node:{node}", "groups": ["system:nodes", "system:authenticated"],
            "extra": {"authentication.kubernetes.io/credential-id":
                      [f"X509SHA256={NODE_CERT[node]}"]}}


def audit(hms: str, user: dict[str, Any], ip: str, ua: str, verb: str, uri: str,
          obj: dict[str, Any], code: int, *, reason: str = "", level: str = "Metadata",
          decision: str = "allow", annotations: dict[str, str] | None = None,
          request_object: dict[str, Any] | None = None, received: bool = False
          ) -> list[dict[str, Any]]:
    start = at(hms)
    done = start + timedelta(microseconds=rng.randint(900, 9000))
    audit_id = uid()
    base: dict[str, Any] = {
        "kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": level, "auditID": audit_id,
        "stage": "ResponseComplete", "requestURI": uri, "verb": verb, "user": user,
        "sourceIPs": [ip], "userAgent": ua, "objectRef": obj,
    }
    out = []
    if received:
        first = dict(base, stage="RequestReceived")  # no body, status or annotations yet
        first["requestReceivedTimestamp"] = iso_us(start)
        first["stageTimestamp"] = iso_us(start)
        out.append(first)
    rec = dict(base)
    rec["responseStatus"] = {"metadata": {}, "code": code}
    if code >= 400:
        rec["responseStatus"].update({"status": "Failure", "reason": "Forbidden"})
    if request_object is not None:
        rec["requestObject"] = request_object
    rec["requestReceivedTimestamp"] = iso_us(start)
    rec["stageTimestamp"] = iso_us(done)
    ann = dict(annotations or {})
    ann["authorization.k8s.io/decision"] = decision
    ann["authorization.k8s.io/reason"] = reason
    rec["annotations"] = ann
    out.append(rec)
    return out


def token_request(hms: str, pod: Pod, token: Token, *, received: bool = False
                  ) -> list[dict[str, Any]]:
    aud = token.claims["aud"]
    seconds = token.claims["exp"] - token.claims["iat"]
    return audit(
        hms, node_user(pod.node), NODES[pod.node][0], KUBELET_UA, "create",
        f"/api/v1/namespaces/{pod.namespace}/serviceaccounts/{pod.sa}/token",
        {"resource": "serviceaccounts", "namespace": pod.namespace, "name": pod.sa,
         "apiVersion": "v1", "subresource": "token"}, 201, level="Request",
        annotations={"authentication.kubernetes.io/issued-credential-id": f"JTI={token.jti}"},
        request_object={
            "kind": "TokenRequest", "apiVersion": "authentication.k8s.io/v1",
            "metadata": {"name": pod.sa, "namespace": pod.namespace,
                         "creationTimestamp": None},
            "spec": {"audiences": aud, "expirationSeconds": seconds,
                     "boundObjectRef": {"kind": "Pod", "apiVersion": "v1", "name": pod.name,
                                        "uid": pod.uid}},
            "status": {"token": "", "expirationTimestamp": None}},
        received=received)


def build_k8s() -> list[dict[str, Any]]:
    ns = "agents"
    lease_uri = f"/apis/coordination.k8s.io/v1/namespaces/{ns}/leases/coder-leader"
    lease_obj = {"resource": "leases", "namespace": ns, "name": "coder-leader",
                 "apiGroup": "coordination.k8s.io", "apiVersion": "v1"}
    cm_obj = {"resource": "configmaps", "namespace": ns, "name": "coder-config",
              "apiVersion": "v1"}
    rbac_cm = ('RBAC: allowed by RoleBinding "coder-config-reader/agents" of Role '
               '"coder-config-reader" to ServiceAccount "coder/agents"')
    rbac_lease = ('RBAC: allowed by RoleBinding "coder-leader-election/agents" of Role '
                  '"coder-leader-election" to ServiceAccount "coder/agents"')

    def pod_status(hms: str, pod: Pod) -> list[dict[str, Any]]:
        return audit(hms, node_user(pod.node), NODES[pod.node][0], KUBELET_UA, "patch",
                     f"/api/v1/namespaces/{ns}/pods/{pod.name}/status",
                     {"resource": "pods", "namespace": ns, "name": pod.name, "apiVersion": "v1",
                      "subresource": "status"}, 200)

    def coder(hms: str, pod: Pod, token: Token, verb: str, uri: str, obj: dict[str, Any],
              code: int = 200, reason: str = "", decision: str = "allow",
              received: bool = False) -> list[dict[str, Any]]:
        return audit(hms, sa_user(pod, token), pod.ip, CODER_UA, verb, uri, obj, code,
                     reason=reason, decision=decision, received=received)

    lines: list[dict[str, Any]] = []
    lines += token_request("09:00:01.204", CODER_A, K0, received=True)
    lines += token_request("09:00:01.311", CODER_A, K1)
    lines += token_request("09:00:02.078", CODER_B, K2)
    lines += pod_status("09:00:03.502", CODER_A)
    lines += pod_status("09:00:04.119", CODER_B)
    lines += coder("09:00:05.733", CODER_A, K0, "get",
                   f"/api/v1/namespaces/{ns}/configmaps/coder-config", cm_obj, reason=rbac_cm)
    lines += coder("09:00:06.250", CODER_B, K2, "get",
                   f"/api/v1/namespaces/{ns}/configmaps/coder-config", cm_obj, reason=rbac_cm)
    lines += coder("09:00:06.915", CODER_A, K0, "get", lease_uri, lease_obj, reason=rbac_lease)
    lines += coder("09:00:07.020", CODER_A, K0, "update", lease_uri, lease_obj,
                   reason=rbac_lease, received=True)
    lines += coder("09:00:07.488", CODER_B, K2, "get", lease_uri, lease_obj, reason=rbac_lease)
    # coder-4x2q's client library probes for secrets it is not allowed to list.
    lines += coder("09:00:08.061", CODER_B, K2, "list", f"/api/v1/namespaces/{ns}/secrets",
                   {"resource": "secrets", "namespace": ns, "apiVersion": "v1"}, 403,
                   decision="forbid")
    for hms in ("09:15:07.402", "09:45:07.155"):
        lines += coder(hms, CODER_A, K0, "update", lease_uri, lease_obj, reason=rbac_lease)
    lines += coder("09:31:40.027", CODER_B, K2, "get", lease_uri, lease_obj, reason=rbac_lease)
    return lines


# =======================================================================================
# INCIDENTS
#
# Everything above is the benign morning and is generated first, unchanged. Everything
# below adds the incidents into the same files and timeline. It draws from its own seeded
# generator (INCIDENT_SEED), so the benign records stay byte for byte what they were.
# README.md ("Incidents") tells the story; EXPECTED.json (written by `expected()` from the
# same definitions) says what a careful responder concludes about every pair and finding.
#
#   a  09:38:12  coder-7d9f re-presents the orchestrator's own A1 at tasks-api     forwarded, TT001
#   b  09:42:30  mcp-files passes the coder's C2 through to files-api             forwarded, TT002
#   c  09:38:05  M2 (DPoP-bound) replayed from 203.0.113.45 without a proof       stolen, TT005
#   d  09:56:31  P1 used 4 min after Globex revoked it, from 203.0.113.45         stolen, TT007
#   e  09:52:40  expired C1 presented to mcp-files by a sandbox notebook pod      stolen, TT008
#   f  09:44:18  alice's rotated CLI refresh token redeemed again (Keycloak)      TT009
#   g  09:41:47  exchange drops M2's DPoP binding (X1); 09:46:05 exchange widens
#                the researcher's scope to files:write (X2)                        TT006, TT010
#   h  09:18:03  P1's raw Authorization header in the gateway log (benign part)  TT013
#   i  09:47:12  the EC2 instance key used from 203.0.113.45                     stolen, TT016
#   j  09:37:21  mcp-files' DPoP proof for M2 replayed in a second request       stolen, TT017
#   k  09:50:12  coder-7d9f's service-account token K0 used from 203.0.113.45    stolen, TT004

INCIDENT_SEED = SEED + 1
INTRUDER_IP = "203.0.113.45"  # the intruder's VPS (every theft but the refresh-token one)
STEALER_IP = "203.0.113.200"  # whoever took alice's CLI token cache
CURL_UA = "curl/8.5.0"
REQUESTS_UA = "python-requests/2.32.3"
KUBECTL_UA = "kubectl/v1.31.1 (linux/amd64) kubernetes/948afe5"
INTRUDER_AWS_UA = ("aws-cli/2.17.50 md/awscrt#0.21.5 ua/2.0 os/linux#6.8.0-45-generic "
                   "md/arch#x86_64 lang/python#3.12.6 md/pyimpl#CPython cfg/retry-mode#standard "
                   "md/installer#exe md/distrib#ubuntu.24 sid/{} md/prompt#off md/command#{}")
CLI_CLIENT = "agents-cli"  # Keycloak public client (PKCE) of alice's command-line tool
AGENTS_CLI_UA = "acme-agents-cli/0.7.2 python-httpx/0.27.2"
CLI_SCOPE = "openid profile tasks:read"
TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
ACCESS_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:access_token"


@contextmanager
def seeded_rng(seed: int) -> Iterator[None]:
    """Draw from a generator of its own (the incidents', the look-alikes'), leaving the
    others untouched: each part of the sample stays the same when another one changes."""
    global rng
    saved, rng = rng, random.Random(seed)
    try:
        yield
    finally:
        rng = saved


@dataclass
class IncidentCast:
    notebook: Pod  # a data-science notebook in the sandbox namespace (incident e)
    cli0: Token  # alice's CLI access token (code flow) and the refresh token minted with it
    rtc0: str
    cli1: Token  # ... and after the CLI's refresh (RTC0 rotated to RTC1)
    rtc1: str
    x1: Token  # mcp-files' exchange of its DPoP-bound M2 for artifacts: no cnf (g, TT006)
    x2: Token  # mcp-files' exchange of the researcher's R2 for files-api: files:write (TT010)


def incident_cast() -> IncidentCast:
    """The incidents' people and tokens; call inside `seeded_rng(INCIDENT_SEED)` (first draws)."""
    notebook = Pod("notebook-bob-0", "sandbox", "notebook", "10.42.10.23", "worker-1")
    cli0 = kc_token("CLI0", at("09:05:41.206"), sub=ALICE["id"], azp=CLI_CLIENT,
                    aud=["tasks-api"], scope=CLI_SCOPE)
    rtc0, rtc1 = uid(), uid()
    cli1 = kc_token("CLI1", at("09:33:02.518"), sub=ALICE["id"], azp=CLI_CLIENT,
                    aud=["tasks-api"], scope=CLI_SCOPE)
    # Keycloak's legacy (V1) token exchange mints an unbound Bearer token from a DPoP-bound
    # subject token (keycloak/keycloak#50963): no cnf in X1.
    x1 = kc_token("X1", at("09:41:47.262"), sub=MCP_SA_USER, azp="mcp-files",
                  aud=["artifacts"], scope="storage:read", sid=None)
    # The exchange grants what mcp-files asked for from its own client scopes, not the
    # intersection with the subject token's scope: files:write was never delegated.
    x2 = kc_token("X2", at("09:46:05.436"), sub=ALICE["id"], azp="mcp-files",
                  aud=["files-api"], scope="files:read files:write",
                  act={"sub": MCP.spiffe, "act": ACT_RESEARCHER})
    return IncidentCast(notebook, cli0, rtc0, cli1, rtc1, x1, x2)


def _aud_list(claims: dict[str, Any]) -> list[str]:
    aud = claims["aud"]
    return list(aud) if isinstance(aud, list) else [aud]


def _act_chain(act: dict[str, Any] | None) -> list[str]:
    chain = []
    while act:
        chain.append(act["sub"])
        act = act.get("act")
    return chain


def mcp_outbound_bearer(hms: str, token: Token, authority: str, method: str, path: str,
                        trace: str, *, status: int = 200) -> None:
    """mcp-files calls an API through the gateway with an unbound token (Bearer)."""
    rid = uid()
    c = token.claims
    rec: dict[str, Any] = {
        "ts": iso_ms(at(hms)), "kind": "use",
        "outcome": "success" if status < 400 else "failure",
        "token_id": token.jti, "token_fp": token.fp, "subject": c["sub"],
        "client_id": c["azp"], "audience": _aud_list(c), "scopes": c["scope"].split()}
    if "act" in c:
        rec["act_chain"] = _act_chain(c["act"])
    rec.update({
        "auth_scheme": "Bearer", "holder_id": MCP.spiffe, "holder_tier": "spiffe",
        "exp": iso_s(token.exp), "resource": authority, "method": method, "path": path,
        "status": status, "request_id": rid, "trace_id": trace,
        "extra": {"direction": "outbound", "pod": f"{MCP.namespace}/{MCP.name}"}})
    mcp_lines.append(rec)
    gw(hms_plus(hms, 0.004), MCP, authority, method, path, status, token=token, rid=rid,
       trace=trace)


def mcp_exchange(hms: str, subject: Token, issued: Token, trace: str,
                 requested_scope: str) -> None:
    """mcp-files logs the RFC 8693 exchange it made: subject token in, new token out."""
    c = issued.claims
    rec: dict[str, Any] = {
        "ts": iso_ms(at(hms)), "kind": "exchange", "outcome": "success",
        "token_id": issued.jti, "token_fp": issued.fp, "parent_token_key": subject.jti,
        "issuer": c["iss"], "subject": c["sub"], "client_id": c["azp"],
        "audience": _aud_list(c), "scopes": c["scope"].split()}
    if "act" in c:
        rec["act_chain"] = _act_chain(c["act"])
    rec.update({
        "holder_id": MCP.spiffe, "holder_tier": "spiffe", "iat": iso_s(
            datetime.fromtimestamp(c["iat"], UTC)), "exp": iso_s(issued.exp),
        "request_id": uid(), "trace_id": trace,
        "extra": {"direction": "token-exchange", "grant_type": TOKEN_EXCHANGE,
                  "subject_token_type": ACCESS_TOKEN_TYPE,
                  "requested_token_type": ACCESS_TOKEN_TYPE,
                  "issued_token_type": ACCESS_TOKEN_TYPE,
                  "token_type": c["typ"], "requested_scope": requested_scope,
                  "pod": f"{MCP.namespace}/{MCP.name}"}})
    mcp_lines.append(rec)


def kc_mcp_exchange(hms: str, issued: Token, user: str, session: str | None,
                    subject_client: str) -> dict[str, Any]:
    c = issued.claims
    return kc_event(hms, "TOKEN_EXCHANGE", "mcp-files", user, MCP.ip, session, {
        "token_id": issued.jti, "grant_type": TOKEN_EXCHANGE,
        "audience": " ".join(_aud_list(c)), "scope": c["scope"],
        "subject_token_client_id": subject_client,
        "requested_token_type": ACCESS_TOKEN_TYPE, "client_auth_method": "client-jwt"})


def build_incidents(keycloak: list[dict[str, Any]], cloudtrail: dict[str, Any],
                    k8s: list[dict[str, Any]]) -> IncidentCast:
    """Add every incident to the benign records (gateway and mcp-files lines go to their
    module lists); returns the cast for EXPECTED.json."""
    with seeded_rng(INCIDENT_SEED):
        cast = incident_cast()
        files_api = "files-api.acme.example"

        # f (setup) 09:05 alice also follows the task from her laptop with the agents CLI, a
        # public client: SSO login, code -> CLI0 + refresh token RTC0; 09:33 the CLI
        # refreshes (RTC0 rotated to RTC1).
        keycloak += [
            kc_event("09:05:40.874", "LOGIN", CLI_CLIENT, ALICE["id"], BROWSER_IP, SESSION, {
                "auth_method": "openid-connect", "auth_type": "code",
                "redirect_uri": "http://127.0.0.1:53682/callback",
                "consent": "no_consent_required", "code_id": SESSION, "username": "alice"}),
            kc_event("09:05:41.206", "CODE_TO_TOKEN", CLI_CLIENT, ALICE["id"], BROWSER_IP,
                     SESSION, {
                         "token_id": cast.cli0.jti, "grant_type": "authorization_code",
                         "refresh_token_type": "Refresh", "scope": CLI_SCOPE,
                         "refresh_token_id": cast.rtc0, "code_id": SESSION,
                         "client_auth_method": "client-secret"}),
            kc_event("09:33:02.518", "REFRESH_TOKEN", CLI_CLIENT, ALICE["id"], BROWSER_IP,
                     SESSION, {
                         "token_id": cast.cli1.jti, "grant_type": "refresh_token",
                         "refresh_token_type": "Refresh", "scope": CLI_SCOPE,
                         "refresh_token_id": cast.rtc0,
                         "updated_refresh_token_id": cast.rtc1,
                         "client_auth_method": "client-secret"}),
        ]
        for hms, tok, path in (("09:05:43.517", cast.cli0, f"/v1/tasks/{TASK}"),
                               ("09:17:12.804", cast.cli0, f"/v1/tasks/{TASK}/plan"),
                               ("09:33:02.911", cast.cli1, f"/v1/tasks/{TASK}")):
            gw(hms, BROWSER_IP, "tasks-api.acme.example", "GET", path, token=tok, ua=AGENTS_CLI_UA)

        # j 09:37:21 the intruder replays mcp-files' 09:36:52 request to files-api, captured
        # with its headers (token M2 and its DPoP proof) from mcp-files' HTTP trace log:
        # same method and URL, the same proof (same proof jti, signed by mcp-files' key, still
        # inside the verifier's iat window), mcp-files' own user agent, another address.
        captured_path = "/v1/objects/specs/agent-protocol.md"
        captured = next(r for r in gateway_lines
                        if r["token_fp"] == M2.fp and r["path"] == captured_path)
        replay = gw("09:37:21.406", INTRUDER_IP, files_api, "GET", captured_path, token=M2,
                    ua=UA["mcp-files"])
        replay["dpop_proof_jti"] = captured["dpop_proof_jti"]

        # c 09:38 then M2 alone, with the Bearer scheme and no DPoP proof: the files-api
        # route validates the JWT (jwt_authn) and runs the DPoP check only when a DPoP header
        # is sent, so it accepts a DPoP-bound token as a bearer token.
        for hms, path in (("09:38:05.117", "/v1/objects/?prefix=&limit=1000"),
                          ("09:38:44.590", "/v1/objects/ops/runbooks/partner-integration.md")):
            rec = gw(hms, INTRUDER_IP, files_api, "GET", path, token=M2, ua=REQUESTS_UA)
            rec["dpop_jkt"] = None
            rec["dpop_proof_jti"] = None

        # a 09:38:12 the orchestrator hands its own task context to the coder, bearer token
        # included; coder-7d9f uses A1 (issued to the orchestrator, no exchange) to update the
        # task itself.
        gw("09:38:12.334", CODER_A, "tasks-api.acme.example", "PATCH",
           f"/v1/tasks/{TASK}/steps/3", token=A1)

        # g (TT006) 09:41:47 coder-7d9f asks mcp-files to read the artifact it just
        # uploaded; mcp-files exchanges its DPoP-bound M2 for an `artifacts` token (Keycloak
        # token exchange V1) and gets X1 back as a plain Bearer token, which it uses.
        trace = hexs(32)
        mcp_inbound("09:41:47.231", CODER_A, C2, "read_artifact", trace)
        keycloak.append(kc_mcp_exchange("09:41:47.262", cast.x1, MCP_SA_USER, None,
                                        "mcp-files"))
        mcp_exchange("09:41:47.279", M2, cast.x1, trace, "storage:read")
        mcp_outbound_bearer("09:41:47.301", cast.x1, "artifacts.acme.example", "GET",
                            "/v1/artifacts/agents/build-20261102-0941.tar.gz", trace)

        # b 09:42:30 mcp-files 0.9.1's new export_file tool passes the caller's token
        # through: coder-4x2q's C2 (audience code-api, mcp-files) presented to files-api,
        # whose route does not restrict the audience.
        trace = hexs(32)
        mcp_inbound("09:42:30.655", CODER_B, C2, "export_file", trace)
        mcp_outbound_bearer("09:42:30.679", C2, files_api, "GET",
                            "/v1/objects/specs/tool-schema.json?download=1", trace)

        # f 09:44:18 someone replays alice's CLI refresh token RTC0 (already redeemed at
        # 09:33) from an unknown address: Keycloak refuses it for reuse (Revoke Refresh Token
        # on, max reuse 0) and detaches the CLI's client session.
        keycloak.append(kc_event(
            "09:44:18.730", "REFRESH_TOKEN_ERROR", CLI_CLIENT, ALICE["id"], STEALER_IP,
            SESSION, {"grant_type": "refresh_token", "client_auth_method": "client-secret",
                      "refresh_token_id": cast.rtc0, "refresh_token_type": "Refresh",
                      "reason": "Maximum allowed refresh token reuse exceeded"},
            error="invalid_token"))

        # g (TT010) 09:46:05 refused write_file at 09:45:40, the researcher tries
        # propose_edit, which mcp-files implements by exchanging the caller's R2 for a
        # files-api token with files:read files:write, granted: R2 never carried files:write.
        trace = hexs(32)
        mcp_inbound("09:46:05.412", RESEARCHER, R2, "propose_edit", trace)
        keycloak.append(kc_mcp_exchange("09:46:05.436", cast.x2, ALICE["id"], SESSION,
                                        "orchestrator"))
        mcp_exchange("09:46:05.455", R2, cast.x2, trace, "files:read files:write")
        mcp_outbound_bearer("09:46:05.478", cast.x2, files_api, "PUT", captured_path, trace)

        # i 09:47-09:49 the artifacts-api instance role credentials (delivered by IMDSv2 to
        # i-0c7e5a1f3b9d24e68) used from the intruder's address, not through the VPC
        # endpoints: identity check, bucket listing, an artifact download, a refused read of
        # SSM parameters.
        ec2_id = session_identity("acme-artifacts-api", EC2_INSTANCE, KEY_EC2, at("08:47:21"),
                                  ec2=True)
        sid = hexs(8)
        bucket, key = "acme-artifacts", "agents/build-20261102-0941.tar.gz"
        s3_host = f"{bucket}.s3.{REGION}.amazonaws.com"
        cloudtrail["Records"] += [
            ct_event("09:47:12", "sts.amazonaws.com", "GetCallerIdentity", ec2_id, INTRUDER_IP,
                     INTRUDER_AWS_UA.format(sid, "sts.get-caller-identity"), None, None,
                     read_only=True),
            ct_event("09:47:40", "s3.amazonaws.com", "ListBuckets", ec2_id, INTRUDER_IP,
                     INTRUDER_AWS_UA.format(sid, "s3.ls"),
                     {"Host": f"s3.{REGION}.amazonaws.com"}, None, read_only=True, s3=True,
                     host=f"s3.{REGION}.amazonaws.com"),
            ct_event("09:48:15", "s3.amazonaws.com", "GetObject", ec2_id, INTRUDER_IP,
                     INTRUDER_AWS_UA.format(sid, "s3.cp"),
                     {"bucketName": bucket, "Host": s3_host, "key": key}, None,
                     read_only=True, category="Data", s3=True, host=s3_host,
                     extra={"additionalEventData": {
                         "SignatureVersion": "SigV4", "CipherSuite": "TLS_AES_128_GCM_SHA256",
                         "bytesTransferredIn": 0, "AuthenticationMethod": "AuthHeader",
                         "x-amz-id-2": base64.b64encode(rng.randbytes(57)).decode(),
                         "bytesTransferredOut": 18_802_176},
                         "resources": [{"type": "AWS::S3::Object",
                                        "ARN": f"arn:aws:s3:::{bucket}/{key}"},
                                       {"accountId": ACCOUNT, "type": "AWS::S3::Bucket",
                                        "ARN": f"arn:aws:s3:::{bucket}"}]}),
            ct_event("09:48:51", "ssm.amazonaws.com", "GetParametersByPath", ec2_id,
                     INTRUDER_IP, INTRUDER_AWS_UA.format(sid, "ssm.get-parameters-by-path"),
                     None, None, read_only=True, extra={
                         "errorCode": "AccessDenied",
                         "errorMessage": (
                             f"User: arn:aws:sts::{ACCOUNT}:assumed-role/acme-artifacts-api/"
                             f"{EC2_INSTANCE} is not authorized to perform: "
                             "ssm:GetParametersByPath on resource: "
                             f"arn:aws:ssm:{REGION}:{ACCOUNT}:parameter/ because no "
                             "identity-based policy allows the ssm:GetParametersByPath "
                             "action")}),
        ]
        cloudtrail["Records"].sort(key=lambda r: r["eventTime"])

        # k 09:50 coder-7d9f's projected service-account token K0 presented to the API server
        # from the intruder's address with kubectl: the API server accepts it (the pod still
        # exists) and RBAC answers. user.extra still names the pod: it comes from the token.
        ns = "agents"
        k0_user = sa_user(CODER_A, K0)
        rbac_cm = ('RBAC: allowed by RoleBinding "coder-config-reader/agents" of Role '
                   '"coder-config-reader" to ServiceAccount "coder/agents"')
        k8s += audit("09:50:12.318", k0_user, INTRUDER_IP, KUBECTL_UA, "get",
                     f"/api/v1/namespaces/{ns}/configmaps/coder-config",
                     {"resource": "configmaps", "namespace": ns, "name": "coder-config",
                      "apiVersion": "v1"}, 200, reason=rbac_cm)
        k8s += audit("09:50:31.904", k0_user, INTRUDER_IP, KUBECTL_UA, "list",
                     f"/api/v1/namespaces/{ns}/secrets?limit=500",
                     {"resource": "secrets", "namespace": ns, "apiVersion": "v1"}, 403,
                     decision="forbid")
        k8s += audit("09:50:58.447", k0_user, INTRUDER_IP, KUBECTL_UA, "list",
                     f"/api/v1/namespaces/{ns}/pods?limit=500",
                     {"resource": "pods", "namespace": ns, "apiVersion": "v1"}, 403,
                     decision="forbid")

        # e 09:52:40 a notebook in the sandbox namespace presents C1 (the coder's delegated
        # token, expired at 09:30:09) to mcp-files; mcp-files accepts it (its validator allows
        # a day of leeway) and fetches the file with its own M2.
        MCP_SESSIONS["notebook"] = uid()
        tool_call("09:52:40.193", cast.notebook, C1, "read_file",
                  "/v1/objects/specs/tool-schema.json", M2)

        # d 09:56 P1, revoked by Globex at 09:52:10 (Okta), used from the intruder's address:
        # partner-api validates JWTs locally and never introspects, so it still accepts P1
        # until exp (10:05:02). The intruder read P1 from the 09:18:03 gateway line (h).
        gw("09:56:31.118", INTRUDER_IP, "partner-api.acme.example", "GET",
           "/v1/orders?since=2026-10-01T00:00:00Z&limit=500", token=P1, ua=CURL_UA)
        gw("09:57:02.640", INTRUDER_IP, "partner-api.acme.example", "GET",
           "/v1/orders/ORD-1002/invoice", token=P1, ua=CURL_UA)

    keycloak.sort(key=lambda e: e["time"], reverse=True)
    return cast


def expected(cast: IncidentCast, looks: Lookalikes) -> dict[str, Any]:
    """What a careful responder concludes from the story (not from tokentrail's output).

    Pairs: every (token, holder) that presented a token to a resource (a use or a refused
    use), holder ids as DESIGN.md derives them from transport evidence. Token-endpoint
    grants (code, refresh, exchange) say who received a token; they are not presentations.
    """
    orch, coder, researcher = ORCH.spiffe, CODER_A.spiffe, RESEARCHER.spiffe
    mcp, gateway, notebook = MCP.spiffe, GATEWAY.spiffe, cast.notebook.spiffe
    office_cli = f"ip:{BROWSER_IP}/acme-agents-cli"
    partner = f"ip:{PARTNER_IP}/globex-sync"
    pairs = [
        # the benign morning
        (A0.jti, orch, "owner", "A0 was issued to client orchestrator (CODE_TO_TOKEN); the "
         "orchestrator's SPIFFE ID presents it"),
        (A1.jti, orch, "owner", "A1 is the orchestrator's refreshed token (REFRESH_TOKEN), "
         "presented by the orchestrator"),
        (C1.jti, coder, "delegate", "C1 minted by a logged TOKEN_EXCHANGE with act.sub = the "
         "coder's SPIFFE ID; both replicas share that ID"),
        (C1.jti, gateway, "transport", "the code-api sidecar logs the gateway relaying the "
         "coder's requests (same request id, x_forwarded_for = coder pod)"),
        (C2.jti, coder, "delegate", "C2 minted by a logged TOKEN_EXCHANGE with act.sub = the "
         "coder's SPIFFE ID"),
        (C2.jti, gateway, "transport", "gateway hop logged by the code-api sidecar"),
        (R1.jti, researcher, "delegate", "R1 minted by a logged TOKEN_EXCHANGE for the "
         "researcher; includes its retry and the 09:30:12 401 logged with only token_fp, which "
         "the mcp-files log ties to R1's jti (same fingerprint): one token, no separate pair"),
        (R2.jti, researcher, "delegate", "R2 minted by a logged TOKEN_EXCHANGE for the "
         "researcher"),
        (M1.jti, mcp, "owner", "M1 is mcp-files' own DPoP-bound token, every use proven with "
         "the bound key"),
        (M2.jti, mcp, "owner", "M2 is mcp-files' own DPoP-bound token, every use by mcp-files "
         "proven with the bound key"),
        (K0.jti, f"ip:{CODER_A.ip}/openapi-generator", "owner", "K0 is bound to pod "
         "coder-7d9f; these calls come from that pod's address; the intruder's use does not "
         "change who owns it"),
        (K1.jti, coder, "owner", "K1 is bound to pod coder-7d9f and presented by the coder "
         "service account's SPIFFE ID"),
        (K2.jti, f"ip:{CODER_B.ip}/openapi-generator", "owner", "K2 is bound to pod "
         "coder-4x2q and used only from its address"),
        (P1.jti, partner, "owner", "P1 granted to Globex at 198.51.100.77 and used from there"),
        (P2.jti, partner, "owner", "P2 granted to Globex at 198.51.100.77 and used from there"),
        (KEY_CI, f"ip:{GITHUB_IP}/aws-sdk-nodejs", "owner", "the runner that obtained the "
         "acme-ci session (AssumeRoleWithWebIdentity) uses it"),
        (KEY_DEPLOY, f"ip:{GITHUB_IP}/aws-cli", "delegate", "acme-deploy session minted by a "
         "logged role chain from acme-ci, used by the same runner"),
        (KEY_DEPLOY, f"ip:{GITHUB_IP}/docker", "delegate", "same runner, docker push: the "
         "user agent makes it a second network-tier holder"),
        (KEY_EC2, f"ip:{EC2_IP}/aws-sdk-go-v2", "owner", "the instance's own calls through "
         "the VPC endpoints; the intruder's use from outside does not change who owns it"),
        # set-up of the incidents, benign in themselves
        (cast.cli0.jti, office_cli, "owner", "alice's CLI token, used from the office address "
         "that redeemed the code"),
        (cast.cli1.jti, office_cli, "owner", "alice's CLI token after refresh, same address"),
        (cast.x1.jti, mcp, "delegate", "mcp-files received X1 from its own logged exchange "
         "and presents it (a token minted by exchange is a delegate, not an owner); the lost "
         "binding is finding TT006, not a change of holder"),
        (cast.x2.jti, mcp, "delegate", "X2 minted by a logged exchange with act.sub = "
         "mcp-files, presented by mcp-files; the widened scope is finding TT010"),
        # the incidents
        (A1.jti, coder, "forwarded", "a: coder-7d9f re-presents the orchestrator's own token: "
         "not issued to it, no exchange, coder is not in any act claim"),
        (C2.jti, mcp, "forwarded", "b: mcp-files (an audience of C2) passes C2 through to "
         "files-api, outside C2's audience: mcp_passthrough. Same trace as the inbound call, "
         "but a different request to a different resource: not a transport hop"),
        (M2.jti, f"jkt:{JKT_MCP}", "stolen", "j: a second request carrying the proof jti of "
         "mcp-files' 09:36:52 request, from 203.0.113.45 without mTLS: a replayed proof, "
         "not possession of the key"),
        (M2.jti, f"ip:{INTRUDER_IP}/python-requests", "stolen", "c: DPoP-bound M2 presented "
         "without any proof from an external address that never received it"),
        (P1.jti, f"ip:{INTRUDER_IP}/curl", "stolen", "d: used after Okta recorded its "
         "revocation, from an unknown external address"),
        (C1.jti, notebook, "stolen", "e: used 22 minutes after expiry by a workload that "
         "never received C1"),
        (KEY_EC2, f"ip:{INTRUDER_IP}/aws-cli", "stolen", "i: instance-role credentials "
         "(ec2RoleDelivery 2.0, session = instance id) used from a public address"),
        (K0.jti, f"ip:{INTRUDER_IP}/kubectl", "stolen", "k: pod-bound service-account token "
         "presented from an address outside the cluster"),
    ]
    findings = [
        ("TT001", A1.jti, coder, "a: internal holder forwarding a token issued to the "
         "orchestrator"),
        ("TT002", C2.jti, mcp, "b: MCP token passthrough to files-api"),
        ("TT004", M2.jti, f"jkt:{JKT_MCP}", "j: stolen pair, binding not broken (the proof "
         "is genuine), neither late nor revoked: TT004's catch-all applies"),
        ("TT004", KEY_EC2, f"ip:{INTRUDER_IP}/aws-cli", "i: unknown external holder"),
        ("TT004", K0.jti, f"ip:{INTRUDER_IP}/kubectl", "k: unknown external holder"),
        ("TT005", M2.jti, f"ip:{INTRUDER_IP}/python-requests", "c: DPoP-bound token without "
         "a proof, accepted"),
        ("TT006", cast.x1.jti, mcp, "g: exchange of DPoP-bound M2 minted X1 without cnf, "
         "presented as Bearer"),
        ("TT007", P1.jti, f"ip:{INTRUDER_IP}/curl", "d: accepted 4-5 min after revocation"),
        ("TT008", C1.jti, notebook, "e: accepted 22 min after expiry"),
        ("TT009", cast.rtc0, f"ip:{STEALER_IP}", "f: Keycloak refused a second redemption of "
         "alice's CLI refresh token for reuse"),
        ("TT010", cast.x2.jti, mcp, "g: exchange of R2 granted files:write, not in R2's scope"),
        ("TT013", P1.jti, partner, "h: P1's raw Authorization header in the gateway log "
         "(the leak behind d)"),
        ("TT016", KEY_EC2, f"ip:{INTRUDER_IP}/aws-cli", "i: instance credentials off the "
         "instance"),
        ("TT017", M2.jti, f"jkt:{JKT_MCP}", "j: DPoP proof jti presented in a second request"),
    ]
    pairs += looks.pairs
    return {
        "description": (
            "What a careful responder concludes from the sample story (README.md, 'Incidents'), "
            "written by generate.py from the story's own definitions, not from tokentrail's "
            "output. pairs: every (token, holder) that presented a token to a resource (a use "
            "or a refused use), with its class; token-endpoint grants (code, refresh, exchange) "
            "say who received a token and are not presentations. findings: every finding a "
            "correct tool reports with the built-in rules and no policy, and no other."),
        "pairs": [{"token_key": t, "holder_id": h, "classification": c, "why": w}
                  for t, h, c, w in pairs],
        "findings": [{"rule": r, "token_key": t, "holder_id": h, "why": w}
                     for r, t, h, w in findings],
        # benign look-alikes (issue 11.5): none may be flagged above `low`
        "lookalikes": looks.stories,
    }


# ---------------------------------------------------------------------------------------
# BENIGN LOOK-ALIKES (issue 11.5)
#
# Ordinary identity-provider traffic that a careless tool takes for theft, added after the
# incidents from a third seeded generator (LOOKALIKE_SEED), so the benign morning and the
# incidents stay byte for byte what they were. Each one is labelled in EXPECTED.json
# ("lookalikes") with the pairs it makes and why they are benign. All of it happens before
# alice's 09:57:12 LOGOUT, which stays the last event of the morning.
#
# Okta (System Log API LogEvent, https://developer.okta.com/docs/api/openapi/okta-management/
# management/tags/systemlog; sessions stitched by authenticationContext.externalSessionId,
# requests by transaction.id; request.ipChain "clientIp, proxy1, proxy2"). Carol's apps are
# public OIDC clients (SPA / native, PKCE, clientAuthType none), so the device itself calls the
# token endpoint and client.ipAddress / ipChain[0] is the device's address.
#   O1 09:06-09:13  SSO from one office session to two apps (Acme Orders, Acme Reports)
#   O2 09:14-09:16  admin console (SSO to Okta Admin Console) and okta-cli (device grant) of
#                   the same person on the same laptop
#   O3 09:20-09:53  carol's iPhone: a second device with its own session (two devices)
#   O4 09:33-09:53  the phone leaves home Wi-Fi: refreshes from two carrier addresses (IPv6,
#                   T-Mobile ASN) keep its session alive; each access token is also used from
#                   the phone's next address before the next refresh (roaming)
#   O5 09:24-09:27  dave at home behind the corporate web proxy: Okta sees the proxy as
#                   client.ipAddress and his home address first in request.ipChain; the API
#                   (not proxied) sees his home address
#   O6 09:21        the phone's request retried after a 503 (same x-request-id)
# Keycloak (admin REST events API, EventRepresentation; no user agent is logged):
#   K1 09:07-09:50  erin on a laptop (office) and a phone (home): two sessions, two devices
#   K2 09:07-09:40  erin's laptop session SSOs to a second client (LOGIN with the same
#                   sessionId, then CODE_TO_TOKEN)
#   K3 09:18-09:48  erin's phone session kept alive by REFRESH_TOKEN from changing addresses;
#                   each token used from where it was refreshed
#   K4 09:09-09:11  erin's admin console sign-in (security-admin-console) and her CLI
#                   (device authorization grant) on the laptop
#   K5 09:14        a retried request (same x-request-id, 503 then 200)

LOOKALIKE_SEED = SEED + 2
OKTA_WEB_UA = BROWSER_UA  # carol's Mac at the office (Safari), as in the benign morning
PHONE_UA = ("Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 "
            "(KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1")
WINDOWS_UA = ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
              "Chrome/130.0.0.0 Safari/537.36")
OKTA_CLI_UA = "okta-cli/0.10.0 (okta-sdk-java/8.2.5; Mac OS X 14.6)"
KC_CLI_UA = "acme-cli/1.2.0 python-httpx/0.27.2"
HOME_IP = "192.0.2.130"  # carol's home Wi-Fi (cable ISP)
CARRIER_A = "2001:db8:4a1f:10::1b"  # the phone on its carrier (IPv6, documentation range)
CARRIER_B = "2001:db8:4a1f:2c0::7"
DAVE_HOME = "192.0.2.150"
PROXY_IP = "198.51.100.9"  # Acme's corporate web proxy egress (SaaS traffic only)
ERIN_PHONE_1 = "192.0.2.210"  # erin's phone: home Wi-Fi, then a café, then the office guest Wi-Fi
ERIN_PHONE_2 = "192.0.2.211"
ERIN_PHONE_3 = "192.0.2.212"


@dataclass
class Lookalikes:
    pairs: list[tuple[str, str, str, str]]  # token, holder, class, why
    stories: list[dict[str, Any]]  # EXPECTED.json "lookalikes"


def okta_user_token(name: str, issued: datetime, *, issuer: str, client: str, uid_: str,
                    login: str, scope: list[str], minutes: int = 60) -> Token:
    """An Okta custom authorization server access token for a user (ver, jti AT.…, iss, aud,
    iat, exp, cid, uid, scp, auth_time, sub = the user's login)."""
    return Token(name, {
        "ver": 1, "jti": "AT." + b64u(32), "iss": issuer, "aud": "api://orders",
        "iat": epoch(issued), "exp": epoch(issued + timedelta(minutes=minutes)), "cid": client,
        "uid": uid_, "scp": scope, "auth_time": epoch(issued) - 60, "sub": login})


def build_lookalikes(keycloak: list[dict[str, Any]], okta: list[dict[str, Any]]) -> Lookalikes:
    pairs: list[tuple[str, str, str, str]] = []
    stories: list[dict[str, Any]] = []

    def story(code: str, name: str, why: str, made: list[tuple[str, str, str, str]],
              also: list[tuple[str, str]] = ()) -> None:  # type: ignore[assignment]
        """`made`: the pairs this look-alike adds; `also`: pairs of another one it touches."""
        pairs.extend(made)
        stories.append({"id": code, "name": name, "why": why,
                        "pairs": [{"token_key": t, "holder_id": h}
                                  for t, h in [(m[0], m[1]) for m in made] + list(also)]})

    with seeded_rng(LOOKALIKE_SEED):
        orders_as = "aus" + alnum(17)
        issuer = f"{OKTA_ORG}/oauth2/{orders_as}"
        orders_app, reports_app, cli_app = ("0oa" + alnum(17) for _ in range(3))
        carol = dict(okta[0]["actor"])
        carol_uid, carol_login = carol["id"], carol["alternateId"]
        office_session = okta[0]["authenticationContext"]["externalSessionId"]
        phone_session = "102" + alnum(22)
        dave = {"id": "00u" + alnum(17), "type": "User", "alternateId": "dave@acme.example",
                "displayName": "Dave Okafor", "detailEntry": None}
        dave_session = "102" + alnum(22)
        scope = ["openid", "orders:read", "offline_access"]
        office = okta_client(BROWSER_IP, OKTA_WEB_UA, "Mac OS X", "SAFARI", "Boston")
        home = okta_client(HOME_IP, PHONE_UA, "iOS", "SAFARI", "Cambridge")
        home["device"] = "Mobile"
        carrier = {"asn": (21928, "t-mobile usa, inc.")}

        def user_event(hms: str, etype: str, message: str, actor: dict[str, Any],
                       client: dict[str, Any], session: str, debug: dict[str, Any],
                       target: list[dict[str, Any]] | None, *, client_id: str | None = None,
                       asn: tuple[int, str] = (64501, "acme"), v6: bool = False,
                       chain: list[str] | None = None) -> dict[str, Any]:
            c = json.loads(json.dumps(client))
            c["id"] = client_id
            ev = okta_event(hms, etype, etype + "_success", message, actor, c,
                            ("SUCCESS", None), debug, target, session=session, asn=asn)
            ev["transaction"]["type"] = "WEB"
            if v6:
                ev["request"]["ipChain"][0]["version"] = "V6"
            if chain:  # clientIp first, then each proxy (Okta LogRequest.ipChain)
                ev["request"]["ipChain"] = [
                    {"ip": ip, "geographicalContext": c["geographicalContext"],
                     "version": "V4", "source": None} for ip in chain]
            return ev

        def grant(hms: str, tok: Token, refresh_id: str, actor: dict[str, Any],
                  client: dict[str, Any], session: str, client_id: str, grant_type: str,
                  **kw: Any) -> list[dict[str, Any]]:
            """Okta logs one event per token minted (access_token, refresh_token), tied by
            transaction.id; a refresh grant does not name the refresh token presented."""
            debug = {"requestUri": f"/oauth2/{orders_as}/v1/token", "url": f"/oauth2/{orders_as}/v1/token?",
                     "grantType": grant_type, "clientAuthType": "none",
                     "authorizationServer": orders_as, "authorizationServerName": "Orders API",
                     "grantedScopes": ", ".join(tok.claims["scp"])}
            events = []
            for kind, ident, exp in (("access_token", tok.jti, tok.exp),
                                     ("refresh_token", refresh_id, tok.exp + timedelta(days=30))):
                target = [{"id": actor["id"], "type": "User", "alternateId": actor["alternateId"],
                           "displayName": actor["displayName"], "detailEntry": None},
                          {"id": ident, "type": kind, "alternateId": None,
                           "displayName": "Access Token" if kind == "access_token" else "Refresh Token",
                           "detailEntry": {"expires": iso_ms(exp), "subject": actor["id"],
                                           "hash": None}}]
                events.append(user_event(hms, f"app.oauth2.as.token.grant.{kind}",
                                         f"OAuth2 {kind.replace('_', ' ')} is granted", actor,
                                         client, session, dict(debug), target,
                                         client_id=client_id, **kw))
            txn = events[0]["transaction"]["id"]
            events[1]["transaction"]["id"] = txn
            events[1]["debugContext"]["debugData"]["requestId"] = txn
            return events

        def sso(hms: str, actor: dict[str, Any], client: dict[str, Any], session: str,
                app: str, label: str, **kw: Any) -> dict[str, Any]:
            return user_event(hms, "user.authentication.sso", "User single sign on to app",
                              actor, client, session,
                              {"initiationType": "SP_INITIATED", "signOnMode": "OpenID Connect"},
                              [{"id": app, "type": "AppInstance", "alternateId": label,
                                "displayName": label, "detailEntry": {"signOnModeType": "OPENID_CONNECT"}}],
                              **kw)

        def rt() -> str:
            return "RT." + b64u(32)

        def use(hms: str, ip: str, tok: Token, ua: str, path: str, *, api: str = "orders",
                status: int = 200, **kw: Any) -> None:
            gw(hms, ip, f"{api}-api.acme.example", "GET", path, status, token=tok, ua=ua, **kw)

        office_holder = f"ip:{BROWSER_IP}/safari"
        # O1: SSO from the office session (started 09:03:40) to two apps
        oa1 = okta_user_token("OA1", at("09:06:11.402"), issuer=issuer, client=orders_app,
                              uid_=carol_uid, login=carol_login, scope=scope)
        rp1 = okta_user_token("RP1", at("09:12:48.930"), issuer=issuer, client=reports_app,
                              uid_=carol_uid, login=carol_login, scope=["openid", "reports:read"])
        okta += [sso("09:06:10.118", carol, office, office_session, orders_app, "Acme Orders"),
                 *grant("09:06:11.402", oa1, rt(), carol, office, office_session, orders_app,
                        "authorization_code"),
                 sso("09:12:47.611", carol, office, office_session, reports_app, "Acme Reports"),
                 *grant("09:12:48.930", rp1, rt(), carol, office, office_session, reports_app,
                        "authorization_code")[:1]]
        use("09:06:12.705", BROWSER_IP, oa1, OKTA_WEB_UA, "/v1/orders?status=open")
        use("09:07:40.220", BROWSER_IP, oa1, OKTA_WEB_UA, "/v1/orders/ORD-2210")
        use("09:12:50.088", BROWSER_IP, rp1, OKTA_WEB_UA, "/v1/reports/weekly", api="reports")
        story("O1", "SSO to several apps in one session",
              f"one Okta session ({office_session}) signs in to Acme Orders and Acme Reports: two "
              "client ids, two tokens, one device and address; each token used from the address "
              "that obtained it", [
                  (oa1.jti, office_holder, "owner", "Acme Orders token, used from the office Mac "
                   "that redeemed the code (public client: the browser calls /token)"),
                  (rp1.jti, office_holder, "owner", "Acme Reports token (SSO, same session), "
                   "same Mac")])

        # O2: the admin console (SSO) and okta-cli (device authorization grant) of carol
        oc1 = okta_user_token("OC1", at("09:15:20.377"), issuer=issuer, client=cli_app,
                              uid_=carol_uid, login=carol_login, scope=["orders:read"])
        cli_client = okta_client(BROWSER_IP, OKTA_CLI_UA, "Mac OS X", "UNKNOWN", "Boston")
        okta += [sso("09:14:02.540", carol, office, office_session, "0oa" + alnum(17),
                     "Okta Admin Console"),
                 *grant("09:15:20.377", oc1, rt(), carol, cli_client, "unknown", cli_app,
                        "urn:ietf:params:oauth:grant-type:device_code")[:1]]
        use("09:15:21.904", BROWSER_IP, oc1, OKTA_CLI_UA, "/v1/orders/export?format=csv")
        use("09:16:05.316", BROWSER_IP, oa1, OKTA_WEB_UA, "/v1/orders/ORD-2210/notes")
        story("O2", "admin console and API client of one person",
              "carol opens the Okta Admin Console (SSO in her office session) and, on the same "
              "laptop, her okta-cli obtains its own token by the device authorization grant: "
              "two clients, two user agents, one person and address", [
                  (oc1.jti, f"ip:{BROWSER_IP}/okta-cli", "owner", "okta-cli's token, used by "
                   "okta-cli from the address that obtained it")])

        # O3 + O4 + O6: carol's iPhone, a second device with its own session
        oa2 = okta_user_token("OA2", at("09:20:31.884"), issuer=issuer, client=orders_app,
                              uid_=carol_uid, login=carol_login, scope=scope)
        rt2 = rt()
        okta += [user_event("09:20:05.260", "user.session.start", "User login to Okta", carol,
                            home, phone_session, {"behaviors": "{New Geo-Location=NEGATIVE, "
                                                  "New Device=NEGATIVE}"}, None,
                            asn=(7922, "comcast cable communications, llc")),
                 sso("09:20:30.150", carol, home, phone_session, orders_app, "Acme Orders",
                     asn=(7922, "comcast cable communications, llc")),
                 *grant("09:20:31.884", oa2, rt2, carol, home, phone_session, orders_app,
                        "authorization_code", asn=(7922, "comcast cable communications, llc"))]
        retry, retry_trace = uid(), hexs(32)
        use("09:21:02.117", HOME_IP, oa2, PHONE_UA, "/v1/orders?status=open", status=503,
            rid=retry, trace=retry_trace, flags="UC",
            details="upstream_reset_before_response_started{connection_termination}",
            upstream="10.42.11.71:8080")
        use("09:21:02.694", HOME_IP, oa2, PHONE_UA, "/v1/orders?status=open", rid=retry,
            trace=retry_trace, upstream="10.42.11.70:8080")
        use("09:29:40.503", HOME_IP, oa2, PHONE_UA, "/v1/orders/ORD-2214")
        phone_home = f"ip:{HOME_IP}/safari"
        story("O3", "one user on two devices",
              f"carol's iPhone signs in at home in its own Okta session ({phone_session}) while "
              "her Mac's office session is live: two devices, two networks, one user; each "
              "device's token used by that device", [
                  (oa2.jti, phone_home, "owner", "the phone's token, used from the home address "
                   "that redeemed the code")])
        story("O6", "retries", "the phone's request retried after a 503 from orders-api: the "
              "same x-request-id twice, one holder (no second pair, no relay)", [],
              also=[(oa2.jti, phone_home)])
        # O4: refreshes from the carrier keep the session alive; roaming between refreshes
        oa3 = okta_user_token("OA3", at("09:33:48.215"), issuer=issuer, client=orders_app,
                              uid_=carol_uid, login=carol_login, scope=scope)
        oa4 = okta_user_token("OA4", at("09:52:12.640"), issuer=issuer, client=orders_app,
                              uid_=carol_uid, login=carol_login, scope=scope)
        cell_a = okta_client(CARRIER_A, PHONE_UA, "iOS", "SAFARI", "Boston")
        cell_a["device"] = "Mobile"
        cell_b = okta_client(CARRIER_B, PHONE_UA, "iOS", "SAFARI", "Boston")
        cell_b["device"] = "Mobile"
        use("09:33:30.092", CARRIER_A, oa2, PHONE_UA, "/v1/orders/ORD-2214/items")
        okta += grant("09:33:48.215", oa3, rt(), carol, cell_a, phone_session, orders_app,
                      "refresh_token", asn=carrier["asn"], v6=True)
        use("09:33:49.310", CARRIER_A, oa3, PHONE_UA, "/v1/orders/ORD-2214/items")
        use("09:51:55.871", CARRIER_B, oa3, PHONE_UA, "/v1/orders?status=shipped")
        okta += grant("09:52:12.640", oa4, rt(), carol, cell_b, phone_session, orders_app,
                      "refresh_token", asn=carrier["asn"], v6=True)
        use("09:52:13.902", CARRIER_B, oa4, PHONE_UA, "/v1/orders?status=shipped")
        story("O4", "a phone roaming between carrier addresses; a session kept alive by "
              "refreshes from changing addresses",
              f"the phone leaves home Wi-Fi: each refresh grant in session {phone_session} comes "
              "from a new carrier address with the device (iPhone Safari) that signed in, and "
              "the phone presents its current token from its new address just before "
              "refreshing there", [
                  (oa2.jti, f"ip:{CARRIER_A}/safari", "owner", "the phone's first token from "
                   "its carrier address, which redeemed a refresh token in the phone's session "
                   "with the device that signed in"),
                  (oa3.jti, f"ip:{CARRIER_A}/safari", "owner", "refreshed at this address"),
                  (oa3.jti, f"ip:{CARRIER_B}/safari", "owner", "the next carrier address, which "
                   "refreshed in the same session with the same device a moment later"),
                  (oa4.jti, f"ip:{CARRIER_B}/safari", "owner", "refreshed at this address")])

        # O5: dave at home, Okta reached through the corporate web proxy
        dv1 = okta_user_token("DV1", at("09:24:41.733"), issuer=issuer, client=orders_app,
                              uid_=dave["id"], login=dave["alternateId"], scope=scope)
        dave_client = okta_client(PROXY_IP, WINDOWS_UA, "Windows 10", "CHROME", "Boston")
        chain = [DAVE_HOME, PROXY_IP]
        okta += [user_event("09:24:20.015", "user.session.start", "User login to Okta", dave,
                            dave_client, dave_session, {"behaviors": "{New Geo-Location=NEGATIVE, "
                                                        "New Device=NEGATIVE}"}, None,
                            chain=chain),
                 *grant("09:24:41.733", dv1, rt(), dave, dave_client, dave_session, orders_app,
                        "authorization_code", chain=chain)]
        use("09:24:43.012", DAVE_HOME, dv1, WINDOWS_UA, "/v1/orders?assignee=dave")
        use("09:27:19.480", DAVE_HOME, dv1, WINDOWS_UA, "/v1/orders/ORD-2230")
        story("O5", "an address chain through a corporate proxy",
              "Okta's client.ipAddress is the corporate proxy (198.51.100.9) and request.ipChain "
              "starts with dave's home address; the orders API is not behind the proxy and sees "
              "the home address: the originating client of the grant presents the token", [
                  (dv1.jti, f"ip:{DAVE_HOME}/chrome", "owner", "presented from the first "
                   "address of the grant's ipChain (the client behind the proxy)")])

        # Keycloak: erin (realm acme), public clients (PKCE; Keycloak still logs
        # client_auth_method client-secret for them)
        erin = uid()
        laptop_session, phone_kc_session = uid(), uid()
        portal, wiki, cli = "acme-portal", "acme-wiki", "acme-cli"

        def erin_token(name: str, hms: str, azp: str, session: str, scope_: str) -> Token:
            return kc_token(name, at(hms), sub=erin, azp=azp, aud=["orders-api"], scope=scope_,
                            sid=session, lifetime_min=15)

        def login(hms: str, client: str, ip: str, session: str) -> dict[str, Any]:
            return kc_event(hms, "LOGIN", client, erin, ip, session, {
                "auth_method": "openid-connect", "auth_type": "code",
                "redirect_uri": f"https://{client}.acme.example/callback",
                "consent": "no_consent_required", "code_id": session, "username": "erin"})

        def code(hms: str, client: str, ip: str, session: str, tok: Token, rid: str
                 ) -> dict[str, Any]:
            return kc_event(hms, "CODE_TO_TOKEN", client, erin, ip, session, {
                "token_id": tok.jti, "grant_type": "authorization_code",
                "refresh_token_type": "Refresh", "scope": tok.claims["scope"],
                "refresh_token_id": rid, "code_id": session, "client_auth_method": "client-secret"})

        def refresh(hms: str, client: str, ip: str, session: str, tok: Token, old: str, new: str
                    ) -> dict[str, Any]:
            return kc_event(hms, "REFRESH_TOKEN", client, erin, ip, session, {
                "token_id": tok.jti, "grant_type": "refresh_token", "refresh_token_type": "Refresh",
                "scope": tok.claims["scope"], "refresh_token_id": old,
                "updated_refresh_token_id": new, "client_auth_method": "client-secret"})

        e1 = erin_token("E1", "09:07:12.455", portal, laptop_session, "openid profile orders:read")
        w1 = erin_token("W1", "09:07:58.102", wiki, laptop_session, "openid profile")
        ec1 = erin_token("EC1", "09:10:44.920", cli, laptop_session, "orders:read")
        keycloak += [login("09:07:11.980", portal, BROWSER_IP, laptop_session),
                     code("09:07:12.455", portal, BROWSER_IP, laptop_session, e1, uid()),
                     login("09:07:57.731", wiki, BROWSER_IP, laptop_session),
                     code("09:07:58.102", wiki, BROWSER_IP, laptop_session, w1, uid()),
                     login("09:09:30.066", "security-admin-console", BROWSER_IP, laptop_session),
                     kc_event("09:10:44.920", "OAUTH2_DEVICE_CODE_TO_TOKEN", cli, erin, BROWSER_IP,
                              laptop_session, {"token_id": ec1.jti, "grant_type":
                                               "urn:ietf:params:oauth:grant-type:device_code",
                                               "scope": "orders:read",
                                               "refresh_token_id": uid(),
                                               "refresh_token_type": "Refresh",
                                               "client_auth_method": "client-secret"})]
        kc_web = f"ip:{BROWSER_IP}/safari"
        use("09:07:13.660", BROWSER_IP, e1, OKTA_WEB_UA, "/v1/orders?team=erin")
        use("09:08:01.337", BROWSER_IP, w1, OKTA_WEB_UA, "/v1/reports/wiki-usage", api="reports")
        use("09:11:02.240", BROWSER_IP, ec1, KC_CLI_UA, "/v1/orders/export?format=json")
        retry, retry_trace = uid(), hexs(32)
        use("09:14:10.118", BROWSER_IP, e1, OKTA_WEB_UA, "/v1/orders/ORD-2240", status=503,
            rid=retry, trace=retry_trace, flags="UC",
            details="upstream_reset_before_response_started{connection_termination}",
            upstream="10.42.11.70:8080")
        use("09:14:10.705", BROWSER_IP, e1, OKTA_WEB_UA, "/v1/orders/ORD-2240", rid=retry,
            trace=retry_trace, upstream="10.42.11.71:8080")
        story("K2", "SSO to several apps in one session (Keycloak)",
              f"erin's laptop session {laptop_session} signs in to acme-portal and acme-wiki "
              "(a LOGIN per client with the same sessionId); each token used from the laptop "
              "that redeemed its code", [
                  (e1.jti, kc_web, "owner", "acme-portal token used from the address of its "
                   "CODE_TO_TOKEN"),
                  (w1.jti, kc_web, "owner", "acme-wiki token (SSO), same laptop")])
        story("K4", "admin console and API client of one person (Keycloak)",
              "erin signs in to security-admin-console and her acme-cli gets a token by the "
              "device grant on the same laptop: two clients, two user agents, one address", [
                  (ec1.jti, f"ip:{BROWSER_IP}/acme-cli", "owner", "the CLI's token used by the "
                   "CLI from the address of its OAUTH2_DEVICE_CODE_TO_TOKEN")])
        story("K5", "retries (Keycloak)", "acme-portal's request retried after a 503 (same "
              "x-request-id): one holder, no relay", [], also=[(e1.jti, kc_web)])

        # K1 + K3: erin's phone, its own session, refreshed from changing addresses
        p1 = erin_token("EP1", "09:18:20.334", portal, phone_kc_session, "openid profile orders:read")
        p2 = erin_token("EP2", "09:33:05.871", portal, phone_kc_session, "openid profile orders:read")
        p3 = erin_token("EP3", "09:48:40.509", portal, phone_kc_session, "openid profile orders:read")
        r1, r2, r3 = uid(), uid(), uid()
        keycloak += [login("09:18:19.902", portal, ERIN_PHONE_1, phone_kc_session),
                     code("09:18:20.334", portal, ERIN_PHONE_1, phone_kc_session, p1, r1),
                     refresh("09:33:05.871", portal, ERIN_PHONE_2, phone_kc_session, p2, r1, r2),
                     refresh("09:48:40.509", portal, ERIN_PHONE_3, phone_kc_session, p3, r2, r3)]
        use("09:18:21.505", ERIN_PHONE_1, p1, PHONE_UA, "/v1/orders?team=erin")
        use("09:33:06.940", ERIN_PHONE_2, p2, PHONE_UA, "/v1/orders/ORD-2241")
        use("09:48:41.722", ERIN_PHONE_3, p3, PHONE_UA, "/v1/orders/ORD-2241/items")
        story("K1", "one user on two devices (Keycloak)",
              f"erin's phone signs in in its own session ({phone_kc_session}) while her laptop "
              "session is live", [
                  (p1.jti, f"ip:{ERIN_PHONE_1}/safari", "owner", "the phone's token, used from "
                   "the address of its CODE_TO_TOKEN")])
        story("K3", "a session kept alive by refreshes from changing addresses (Keycloak)",
              "each REFRESH_TOKEN of the phone's session comes from its current network; each "
              "token is used from where it was refreshed. Keycloak logs no user agent, so a use "
              "from the next address before the refresh there would not be separable from a "
              "thief holding both tokens: the sample does not pretend it is", [
                  (p2.jti, f"ip:{ERIN_PHONE_2}/safari", "owner", "used from the address of the "
                   "REFRESH_TOKEN that minted it"),
                  (p3.jti, f"ip:{ERIN_PHONE_3}/safari", "owner", "used from the address of the "
                   "REFRESH_TOKEN that minted it")])
    keycloak.sort(key=lambda e: e["time"], reverse=True)
    okta.sort(key=lambda e: e["published"])
    return Lookalikes(pairs, stories)


# ---------------------------------------------------------------------------------------


def write_jsonl(name: str, records: list[dict[str, Any]], sort_keys: bool = False) -> None:
    with open(OUT / name, "w", encoding="utf-8", newline="\n") as fh:
        for rec in records:
            fh.write(json.dumps(rec, separators=(",", ":"), ensure_ascii=False,
                                sort_keys=sort_keys) + "\n")


def write_json(name: str, doc: Any) -> None:
    with open(OUT / name, "w", encoding="utf-8", newline="\n") as fh:
        fh.write(dumps(doc) + "\n")


def print_ids() -> None:
    """The join keys as a Markdown table (README.md quotes it)."""
    rows = [
        ("A0", A0.jti, "Keycloak CODE_TO_TOKEN", "orchestrator (alice's token)"),
        ("C1", C1.jti, "Keycloak TOKEN_EXCHANGE", "coder (both replicas)"),
        ("R1", R1.jti, "Keycloak TOKEN_EXCHANGE", "researcher"),
        ("M1", M1.jti, "Keycloak CLIENT_LOGIN", "mcp-files (DPoP-bound)"),
        ("M2", M2.jti, "Keycloak CLIENT_LOGIN", "mcp-files (DPoP-bound)"),
        ("A1", A1.jti, "Keycloak REFRESH_TOKEN", "orchestrator"),
        ("C2", C2.jti, "Keycloak TOKEN_EXCHANGE", "coder (both replicas)"),
        ("R2", R2.jti, "Keycloak TOKEN_EXCHANGE", "researcher"),
        ("K0", K0.jti, "k8s TokenRequest", "pod agents/coder-7d9f (API server)"),
        ("K1", K1.jti, "k8s TokenRequest", "pod agents/coder-7d9f (artifacts API)"),
        ("K2", K2.jti, "k8s TokenRequest", "pod agents/coder-4x2q (API server)"),
        ("P1", P1.jti, "Okta client_credentials", "Globex partner sync"),
        ("P2", P2.jti, "Okta client_credentials", "Globex partner sync"),
        ("CI", KEY_CI, "AssumeRoleWithWebIdentity", "GitHub Actions (role acme-ci)"),
        ("DEPLOY", KEY_DEPLOY, "AssumeRole by acme-ci", "GitHub Actions (role acme-deploy)"),
        ("EC2", KEY_EC2, "none (IMDSv2)", f"instance {EC2_INSTANCE} (acme-artifacts-api)"),
    ]
    with seeded_rng(INCIDENT_SEED):
        cast = incident_cast()
    rows += [
        ("CLI0", cast.cli0.jti, "Keycloak CODE_TO_TOKEN (public client agents-cli)",
         "alice's CLI on her laptop (incident f)"),
        ("CLI1", cast.cli1.jti, "Keycloak REFRESH_TOKEN (agents-cli)", "alice's CLI"),
        ("X1", cast.x1.jti, "Keycloak TOKEN_EXCHANGE of M2 (no cnf)", "mcp-files (incident g)"),
        ("X2", cast.x2.jti, "Keycloak TOKEN_EXCHANGE of R2 (files:write added)",
         "mcp-files (incident g)"),
    ]
    print("| name | id | issued by | holder |\n|---|---|---|---|")
    for name, ident, issued, holder in rows:
        print(f"| {name} | `{ident}` | {issued} | {holder} |")
    print(f"\nalice userId `{ALICE['id']}`, Keycloak session `{SESSION}`, "
          f"refresh tokens `{RT0}` -> `{RT1}`, mcp-files DPoP jkt `{JKT_MCP}`, "
          f"Okta client `{OKTA_CLIENT}`, authorization server `{OKTA_AS}`")
    print(f"alice's CLI refresh tokens `{cast.rtc0}` -> `{cast.rtc1}` (incident f), "
          f"notebook pod {cast.notebook.namespace}/{cast.notebook.name} "
          f"`{cast.notebook.spiffe}` at {cast.notebook.ip}")


def main() -> None:
    if "--ids" in sys.argv[1:]:
        print_ids()
        return
    # The benign morning first, in its original order (it owns the seeded generator) ...
    build_gateway_and_mcp()
    keycloak = build_keycloak()
    okta = build_okta()
    cloudtrail = build_cloudtrail()
    k8s = build_k8s()
    # ... then the incidents, into the same records, from their own generator.
    cast = build_incidents(keycloak, cloudtrail, k8s)
    # ... then the benign look-alikes, from a third generator.
    looks = build_lookalikes(keycloak, okta)
    gateway_lines.sort(key=lambda r: r["start_time"])
    sidecar_lines.sort(key=lambda r: r["start_time"])
    mcp_lines.sort(key=lambda r: r["ts"])
    write_jsonl("envoy-acme-gateway-access.jsonl", gateway_lines, sort_keys=True)
    write_jsonl("envoy-code-api-sidecar-access.jsonl", sidecar_lines, sort_keys=True)
    write_jsonl("tokentrail-mcp-files.jsonl", mcp_lines)
    write_json("keycloak-acme-events.json", keycloak)
    write_json("okta-system-log.json", okta)
    write_json(f"cloudtrail-{ACCOUNT}_CloudTrail_{REGION}_20261102T0955Z.json", cloudtrail)
    write_jsonl("k8s-audit-agents-prod.jsonl", k8s)
    with open(OUT / "EXPECTED.json", "w", encoding="utf-8", newline="\n") as fh:
        fh.write(json.dumps(expected(cast, looks), indent=2, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
