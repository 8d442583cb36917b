"""The decision itself: one CASE over `token_holders` joined to `tokens`, its WHENs in
DESIGN.md's order (first match wins), so the whole case is classified by one statement and
the order of the evidence is the order of this file."""

from __future__ import annotations

from .sqlparts import (
    PolicySQL,
    _device_family,
    _holder_ip,
    _name_of,
    _net24,
    _norm_name,
    _private,
    _same_v4_net,
)


def classification_sql(policy: PolicySQL) -> str:
    h = "th.holder_id"
    w = policy.of(policy.workload_of, h)
    intended_w = policy.of(policy.workload_of, "t.issued_to_holder")
    actor_w = policy.of(policy.workload_of, "t.current_actor")
    client_w = policy.of(policy.workload_of, "'client:' || t.client_id")
    name_w = policy.of(policy.workload_of, "'client:' || t.client_name")
    skew = f"INTERVAL {int(policy.skew_seconds)} SECOND"
    # How the presenter matches the identity the token was issued / bound to (NULL: no match).
    owner_match = f"""CASE
        WHEN t.cnf_jkt IS NOT NULL AND th.uses > 0 AND th.dpop_unproven = 0 AND th.bound_as_bearer = 0
             THEN 'every use carried a DPoP proof from the key the token is bound to (cnf.jkt)'
        WHEN t.cnf_x5t IS NOT NULL AND {h} = 'x5t:' || t.cnf_x5t THEN 'presented over the mTLS certificate the token is bound to (cnf.x5t#S256)'
        WHEN t.cnf_jkt IS NOT NULL AND {h} = 'jkt:' || t.cnf_jkt THEN 'presented with a proof from the DPoP key the token is bound to (cnf.jkt)'
        WHEN {h} = t.issued_to_holder THEN 'presenter is who received the token at issuance (' || t.issued_to_holder || ')'
        WHEN t.client_id IS NOT NULL AND {h} = 'client:' || t.client_id THEN 'presenter is the client the token was issued to'
        WHEN t.client_id IS NOT NULL AND th.holder_tier IN ('spiffe', 'workload')
             AND {_name_of(h)} = t.client_id THEN 'presenter ' || {h} || ' is named for client ' || t.client_id
        WHEN t.client_name IS NOT NULL AND th.holder_tier IN ('spiffe', 'workload')
             AND {_norm_name(_name_of(h))} = {_norm_name('t.client_name')}
             THEN 'presenter ' || {h} || ' is named for the issuing app "' || t.client_name || '" ('
                  || coalesce('client ' || t.client_id, 'issuance') || ', identity provider log)'
        WHEN {w} IS NOT NULL AND {w} IN ({intended_w}, {client_w}, {name_w}) THEN 'presenter belongs to workload ' || {w} || ' (policy), the token''s holder'
        WHEN th.holder_tier = 'network' AND t.issued_ip IS NOT NULL AND {_holder_ip(h)} = t.issued_ip
             THEN 'presented from the address that obtained it (' || t.issued_ip || ')'
        END"""
    actor_match = f"""CASE
        WHEN t.current_actor IS NULL THEN NULL
        WHEN {h} = t.current_actor OR {h} = 'client:' || t.current_actor THEN 'presenter is the current actor (act.sub ' || t.current_actor || ')'
        WHEN th.holder_tier IN ('spiffe', 'workload') AND {_name_of(h)} = {_name_of('t.current_actor')}
             THEN 'presenter is the current actor (act.sub ' || t.current_actor || ')'
        WHEN {w} IS NOT NULL AND {w} = {actor_w} THEN 'presenter belongs to workload ' || {w} || ', the current actor'
        END"""
    delegated = ("(t.issue_kind = 'exchange' OR len(coalesce(t.act_chain, [])) > 0 "
                 "OR (l.kind = 'role-chain' AND starts_with(l.parent_key, 'ASIA')))")
    exchange_logged = "(t.issue_kind = 'exchange' OR l.kind IN ('exchange', 'role-chain'))"
    binding_broken = ("((t.cnf_jkt IS NOT NULL OR t.cnf_x5t IS NOT NULL) AND "
                      "(th.bound_as_bearer > 0 OR th.dpop_unproven > 0 OR th.cert_mismatch > 0 OR th.cert_absent > 0))")
    late = (f"((th.max_after_exp IS NOT NULL AND th.max_after_exp > {skew}) OR "
            f"(th.max_after_revoke IS NOT NULL AND th.max_after_revoke > {skew}))")
    late_reason = (f"CASE WHEN th.max_after_revoke > {skew} THEN 'used ' || CAST(th.max_after_revoke AS VARCHAR) "
                   f"|| ' after revocation' ELSE 'used ' || CAST(th.max_after_exp AS VARCHAR) || ' after expiry' END")
    ip = _holder_ip(h)
    internal_identity = (f"(th.holder_tier IN ('spiffe', 'mtls', 'workload') OR {w} IS NOT NULL "
                         f"OR th.holder_id IN (SELECT holder_id FROM _tt_matched))")
    external = (f"(th.holder_tier = 'network' AND {w} IS NULL AND NOT coalesce({policy.of(policy.is_trusted_net, h)}, "
                f"{_private(ip)}))")
    aud_has_resource = "coalesce(tt_aud_covers(t.audience, th.resources), true)"
    presenter_is_audience = f"(t.audience IS NOT NULL AND list_contains(t.audience, {_name_of(h)}))"
    forward_subtype = f"""CASE
        WHEN {presenter_is_audience} AND NOT {aud_has_resource} THEN 'mcp_passthrough'
        WHEN NOT {aud_has_resource} THEN 'audience_mismatch'
        WHEN t.cnf_jkt IS NOT NULL OR t.cnf_x5t IS NOT NULL THEN 'bound_token_forwarded'
        END"""
    nat = policy.of(policy.in_nat, h)
    # Istio SPIFFE IDs name namespace and service account; a pod-bound token (Kubernetes
    # binding claims) presented by the service account of that pod's namespace and name.
    pod_match = (f"CASE WHEN t.pod IS NOT NULL AND th.holder_tier = 'spiffe' "
                 f"AND regexp_matches({h}, '/ns/[^/]+/sa/[^/]+$') "
                 f"AND split_part(t.pod, '/', 1) = regexp_extract({h}, '/ns/([^/]+)/sa/', 1) "
                 f"AND starts_with(split_part(t.pod, '/', 2), regexp_extract({h}, '/sa/([^/]+)$', 1)) "
                 f"THEN 'presenter ' || {h} || ' is the service account of the pod the token is bound to ('"
                 f" || t.pod || ')' END")
    intended = ("coalesce(CASE WHEN t.cnf_x5t IS NOT NULL THEN 'x5t:' || t.cnf_x5t END, "
                "CASE WHEN t.cnf_jkt IS NOT NULL THEN 'jkt:' || t.cnf_jkt END, t.current_actor, "
                "CASE WHEN t.client_id IS NOT NULL THEN 'client:' || t.client_id END, t.issued_to_holder)")
    intended_tier = ("CASE WHEN t.cnf_x5t IS NOT NULL THEN 'mtls' WHEN t.cnf_jkt IS NOT NULL THEN 'dpop' "
                     "WHEN t.current_actor LIKE 'spiffe://%' THEN 'spiffe' "
                     "WHEN t.current_actor IS NOT NULL OR t.client_id IS NOT NULL THEN 'workload' "
                     "ELSE t.issued_to_tier END")
    tier_conf = ("CASE holder_tier WHEN 'spiffe' THEN 0.95 WHEN 'mtls' THEN 0.95 WHEN 'dpop' THEN 0.95 "
                 "WHEN 'workload' THEN 0.9 ELSE 0.7 END")
    return f"""
CREATE OR REPLACE TABLE token_holders AS
WITH facts AS (
  SELECT th.*,
         {owner_match} AS owner_match,
         {actor_match} AS actor_match,
         coalesce({delegated}, false) AS delegated,
         coalesce({exchange_logged}, false) AS exchange_logged,
         coalesce({binding_broken}, false) AS binding_broken,
         coalesce({late}, false) AS late, {late_reason} AS late_reason,
         coalesce({internal_identity}, false) AS internal_identity,
         coalesce({external}, false) AS external,
         {forward_subtype} AS forward_subtype,
         coalesce({policy.of(policy.is_transport, h)}, false) AS declared_transport,
         coalesce({nat}, false) AS in_nat,
         {w} AS workload,
         {intended} AS intended_holder_id, {intended_tier} AS intended_holder_tier,
         t.client_id AS t_client_id, t.current_actor AS t_actor, t.holders AS t_holders,
         t.issue_kind AS t_issue_kind, t.pod AS t_pod, t.host AS t_host, l.kind AS link_kind,
         io.reason AS instance_off, t.issued_ip AS t_issued_ip, coalesce(p.presenters, 1) AS t_presenters,
         coalesce(p.nets, 1) AS t_nets, {_net24(ip)} AS holder_net,
         coalesce(tt_ua_family(th.user_agents[1]) = tt_ua_family(t.issued_user_agent)
                  AND len(th.user_agents) = 1, false) AS same_ua_as_issuance,
         coalesce(th.first_seen - t.issued_at BETWEEN INTERVAL 0 SECOND AND INTERVAL 300 SECOND, false)
             AS used_right_after_issuance,
         coalesce(t.issued_ip IS NOT NULL AND {_private('t.issued_ip')}, false) AS issued_inside,
         coalesce(NOT EXISTS (SELECT 1 FROM _tt_client_nets cn WHERE cn.client_id = t.client_id
                              AND cn.token_key <> th.token_key)
                  OR EXISTS (SELECT 1 FROM _tt_client_nets cn WHERE cn.client_id = t.client_id
                             AND cn.token_key <> th.token_key AND cn.net = {_net24(ip)}), true)
             AS in_owner_nets,
         {_same_v4_net(ip, 't.issued_ip')} AS near_issued_ip,
         {pod_match} AS pod_match,
         (SELECT st.reason FROM _tt_session_theft st WHERE st.token_key = th.token_key
            -- a presenter with a device the session already had is not the new holder
            AND NOT coalesce(list_contains(st.earlier_devices, {_device_family('th.user_agents[1]')}), false))
             AS session_theft,
         (SELECT so.reason FROM _tt_session_owner so
          WHERE so.token_key = th.token_key AND so.holder_id = th.holder_id) AS session_login,
         coalesce(th.holder_tier = 'network' AND {_private(ip)} AND p.internal = 1, false)
             AS sole_internal,
         -- One device moving between networks (_tt_handover, built in classify()).
         (SELECT 'moved networks: presented from ' || {ip} || ' with the same user agent as its owner '
                 || ho.owner_id || ' (' || th.user_agents[1] || '), never at the same time as another '
                 || 'holder of the token: one device changing networks, or a copy replayed with that user agent'
          FROM _tt_handover ho WHERE ho.token_key = th.token_key AND ho.holder_id = th.holder_id) AS handover
  FROM token_holders th
  JOIN tokens t USING (token_key)
  LEFT JOIN _tt_instance_off io ON io.token_key = th.token_key AND io.holder_id = th.holder_id
  LEFT JOIN (SELECT child_key, min(kind) AS kind, min(parent_key) AS parent_key
             FROM links GROUP BY child_key) l ON l.child_key = th.token_key
  -- distinct presenters, one per address whatever its user agents (two SDKs on one host)
  LEFT JOIN (SELECT token_key, count(DISTINCT CASE WHEN starts_with(holder_id, 'ip:')
                    THEN split_part(holder_id, '/', 1) ELSE holder_id END) AS presenters,
                    -- one egress pool: every presenter an address of one /24
                    count(DISTINCT CASE WHEN starts_with(holder_id, 'ip:')
                    THEN {_net24("split_part(substr(holder_id, 4), '/', 1)")} ELSE holder_id END) AS nets,
                    -- network holders inside the network (an aggregate, not a window per row)
                    count(*) FILTER (WHERE holder_tier = 'network'
                                     AND {_private(_holder_ip('holder_id'))}) AS internal
             FROM token_holders GROUP BY token_key) p ON p.token_key = th.token_key
), decided AS (
  SELECT *,
    CASE
      WHEN declared_transport THEN ['transport', '0.9', 'declared transport hop (policy)']
      WHEN proof_replays > 0 AND owner_match IS NULL OR proof_replays > 0 AND proof_replays = count
        THEN ['stolen', '0.9', 'replayed a DPoP proof (same proof jti) first used on an earlier request']
      WHEN instance_off IS NOT NULL AND NOT in_nat
        THEN ['stolen', '0.9', instance_off]
      -- Session level (issue 11.2): the token came out of a refresh grant redeemed by a new
      -- holder of the IdP session (new network and new device), so whoever presents it, the
      -- refresher included, holds it through a stolen refresh token.
      WHEN session_theft IS NOT NULL AND NOT delegated
        THEN ['stolen', '0.8', session_theft]
      WHEN owner_match IS NOT NULL AND NOT delegated
        THEN ['owner', CAST({tier_conf} AS VARCHAR), owner_match]
      WHEN relayed AND relayed_from IS NOT NULL AND owner_match IS NULL AND actor_match IS NULL
        THEN ['transport', '0.8', 'relayed the same request that ' || relayed_from || ' presented']
      WHEN binding_broken AND owner_match IS NULL AND actor_match IS NULL
        THEN ['stolen', '0.95', 'bound token presented without its key: '
              || CASE WHEN bound_as_bearer > 0 THEN 'sent with the Bearer scheme'
                      WHEN cert_mismatch > 0 THEN 'client certificate differs from cnf.x5t#S256'
                      WHEN cert_absent > 0 THEN 'no client certificate, in a log that records them (cnf.x5t#S256)'
                      ELSE 'no DPoP proof from the bound key' END]
      WHEN late AND owner_match IS NULL AND actor_match IS NULL
        THEN ['stolen', '0.85', late_reason || ' by a holder that never received it']
      WHEN actor_match IS NOT NULL AND delegated AND exchange_logged
        THEN ['delegate', '0.9', actor_match || '; minted by a logged ' || coalesce(t_issue_kind, 'exchange')]
      WHEN actor_match IS NOT NULL AND delegated
        THEN ['delegate', '0.6', actor_match || '; act claim present but no exchange event in the case']
      WHEN owner_match IS NOT NULL AND delegated AND exchange_logged
        THEN ['delegate', '0.9', owner_match || '; minted by a logged ' || coalesce(link_kind, t_issue_kind)]
      WHEN owner_match IS NOT NULL AND delegated
        THEN ['delegate', '0.6', owner_match || '; token minted by delegation']
      WHEN pod_match IS NOT NULL
        THEN ['owner', '0.8', pod_match]
      WHEN relayed AND relayed_from IS NOT NULL
        THEN ['transport', '0.8', 'relayed the same request that ' || relayed_from || ' presented']
      -- The user's other device or roaming phone: its address logged in to the same IdP
      -- session (a login, not a refresh: a stolen refresh token is redeemed, never logged in).
      WHEN holder_tier = 'network' AND session_login IS NOT NULL AND NOT delegated
        THEN ['owner', '0.6', session_login]
      WHEN sole_internal AND (t_pod IS NOT NULL OR t_host IS NOT NULL)
        THEN ['owner', '0.6', 'sole presenter, inside the network, of a token bound to '
              || coalesce('pod ' || t_pod, 'host ' || t_host) || ' (address not attested)']
      -- Nothing contradicts a lone presenter when the case cannot tie the token's intended
      -- holder to it: a client id in the claims is another namespace than an address, and
      -- than a SPIFFE ID or certificate unless a policy alias or the issuance joins them.
      WHEN t_presenters = 1 AND owner_match IS NULL AND actor_match IS NULL AND NOT delegated
           AND (holder_tier = 'network' AND t_issued_ip IS NULL
                OR holder_tier <> 'network' AND forward_subtype IS NULL
                   -- no issuance, or one that names its holder in another namespace than the
                   -- presenter's (client id vs SPIFFE ID): the issuance ties nothing to it
                   AND (t_issue_kind IS NULL OR intended_holder_id IS NULL
                        OR split_part(intended_holder_id, ':', 1) <> split_part(holder_id, ':', 1)))
        THEN ['unknown', '0.3', 'sole presenter ' || holder_id || '; the case does not tie it to '
              || coalesce(intended_holder_id, 'the token''s issuance') || ' (an alias in the policy, '
              || 'or the identity provider''s log, would)']
      WHEN internal_identity AND intended_holder_id IS NOT NULL
        THEN ['forwarded', '0.85', 'internal holder ' || holder_id || ' re-presented a token issued to '
              || coalesce(intended_holder_id, 'another holder') || '; no exchange for it'
              || CASE WHEN forward_subtype IS NOT NULL THEN ' (' || forward_subtype || ')' ELSE '' END]
      WHEN holder_tier = 'network' AND near_issued_ip
        THEN ['suspicious', '0.3', 'presented from ' || holder_id || ', in the same /24 as the '
              || 'address that obtained it (' || t_issued_ip || '): an egress pool or NAT']
      -- Obtained inside, used only from one public /24 by the fleet's own user agent right
      -- after issuance, nobody else holding it, and not a network the client's other tokens
      -- avoid: the fleet's egress pool (NAT gateway) as often as a theft. Nothing contrasts it.
      WHEN external AND NOT in_nat AND t_nets = 1 AND issued_inside AND same_ua_as_issuance
           AND used_right_after_issuance AND in_owner_nets
        THEN ['suspicious', '0.3', 'sole presenter ' || holder_id || ' (one /24, ' || holder_net
              || '.0/24), same user agent as the issuance from inside (' || t_issued_ip
              || ') and first use within 5 minutes of it: likely the fleet''s egress pool; '
              || 'no other holder to contrast']
      WHEN external AND NOT in_nat AND handover IS NOT NULL
        THEN ['suspicious', '0.4', handover]
      WHEN external AND NOT in_nat
        THEN ['stolen', CASE WHEN t_holders > 1 THEN '0.75' ELSE '0.7' END,
              'unknown external holder ' || holder_id || ' presented a bearer token issued to '
              || coalesce(intended_holder_id, 'someone else')]
      WHEN holder_tier = 'network'
        THEN ['suspicious', CASE WHEN in_nat THEN '0.3' ELSE '0.5' END,
              'presented from ' || holder_id || ', not the address or identity it was issued to'
              || CASE WHEN in_nat THEN ' (inside a declared NAT range)' ELSE '' END]
      ELSE ['unknown', '0.3', 'no evidence links ' || holder_id || ' to '
              || coalesce(intended_holder_id, 'the token''s issuance')]
    END AS _d
  FROM facts
)
SELECT * EXCLUDE (_d, instance_off),
       _d[1] AS classification,
       CAST(_d[2] AS DOUBLE) AS confidence,
       list_filter([_d[3],
                    'presenter ' || holder_id || ' (' || holder_tier || ')',
                    CASE WHEN intended_holder_id IS NOT NULL
                         THEN 'issued to ' || intended_holder_id ELSE 'issuance not seen' END,
                    CASE WHEN t_actor IS NULL THEN 'act claim absent' ELSE 'act.sub ' || t_actor END,
                    CASE WHEN relayed AND _d[1] <> 'transport' THEN 'same request also presented by ' || relayed_from END,
                    CASE WHEN forward_subtype IS NOT NULL AND _d[1] = 'forwarded' THEN 'subtype ' || forward_subtype END,
                    CASE WHEN len(holder_evidence) > 0
                         THEN 'holder named by ' || array_to_string(holder_evidence, ', ') END],
                   lambda x: x IS NOT NULL) AS reasons
FROM decided
"""
