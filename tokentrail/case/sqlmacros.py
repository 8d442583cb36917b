"""DuckDB macros that mappings and rules call by name.

Mappings are SQL, but the parts every format needs (fingerprinting, JWT decoding, time
parsing, fingerprint normalisation) live here once, so a mapping reads like a field list and
a rule stays portable: on another engine only these macros need a port.
"""

from __future__ import annotations

import duckdb

from tokentrail.redact import REDACT_TRIGGER_SQL, sql_redact_expr

# Each entry: (name, parameters, body). Bodies must not raise on hostile input: every parse
# is wrapped in TRY or a TRY_ variant so one odd record cannot fail a whole file.
MACROS: tuple[tuple[str, str, str], ...] = (
    # base64url without padding of raw bytes given as hex.
    ("tt_hex_b64url", "h",
     "CASE WHEN length(h) = 64 "  # a SHA-256: 32 bytes are always 43 chars + one '='
     "THEN replace(replace(left(to_base64(unhex(h)), 43), '+', '-'), '/', '_') "
     "ELSE rtrim(replace(replace(to_base64(unhex(h)), '+', '-'), '/', '_'), '=') END"),
    # The token fingerprint: base64url(SHA-256(token)), i.e. the DPoP `ath` value.
    ("tt_fp", "tok", "CASE WHEN tok IS NULL OR tok = '' THEN NULL ELSE tt_hex_b64url(sha256(tok)) END"),
    # A certificate thumbprint in any common spelling (hex, colon hex, base64, base64url)
    # normalised to the base64url form RFC 8705 uses in cnf.x5t#S256.
    ("tt_x5t", "v",
     "CASE WHEN v IS NULL OR v IN ('', '-') THEN NULL "
     "WHEN length(v) = 64 AND regexp_full_match(v, '[0-9A-Fa-f]+') THEN tt_hex_b64url(v) "
     "WHEN length(v) = 95 AND regexp_full_match(v, '[0-9A-Fa-f:]+') "
     "THEN tt_hex_b64url(replace(v, ':', '')) "
     "ELSE rtrim(replace(replace(trim(v), '+', '-'), '/', '_'), '=') END"),
    # Decode base64url text (padding optional) to VARCHAR, NULL when it is not valid.
    ("tt_b64url_text", "s",
     "TRY(decode(from_base64(replace(replace(s, '-', '+'), '_', '/') "
     "|| repeat('=', (4 - length(s) % 4) % 4))))"),
    # The credential part of an Authorization header value ("Bearer x", "DPoP x", or bare x).
    ("tt_auth_token", "h",
     "CASE WHEN h IS NULL OR trim(h) IN ('', '-') THEN NULL "
     "WHEN regexp_matches(trim(h), '^[A-Za-z][A-Za-z0-9_-]*\\s+\\S') "
     "THEN nullif(trim(regexp_extract(trim(h), '^[A-Za-z][A-Za-z0-9_-]*\\s+(.*)$', 1)), '') "
     "ELSE trim(h) END"),
    ("tt_auth_scheme", "h",
     "CASE WHEN h IS NULL OR trim(h) IN ('', '-') THEN NULL "
     "WHEN regexp_matches(trim(h), '^[A-Za-z][A-Za-z0-9_-]*\\s+\\S') "
     "THEN CASE lower(regexp_extract(trim(h), '^([A-Za-z][A-Za-z0-9_-]*)', 1)) "
     "WHEN 'bearer' THEN 'Bearer' WHEN 'dpop' THEN 'DPoP' WHEN 'basic' THEN 'Basic' "
     "ELSE regexp_extract(trim(h), '^([A-Za-z][A-Za-z0-9_-]*)', 1) END END"),
    # Claims of a compact JWS (unverified): NULL for opaque tokens and for garbage.
    ("tt_jwt_claims", "tok",
     "CASE WHEN tok IS NOT NULL "
     "AND regexp_full_match(tok, '[A-Za-z0-9_-]+\\.[A-Za-z0-9_-]+\\.[A-Za-z0-9_-]*') "
     "THEN tt_json_object(tt_b64url_text(split_part(tok, '.', 2))) END"),
    # Text that is a JSON object, as JSON; anything else (invalid, array, scalar) as NULL.
    ("tt_json_object", "t",
     "CASE WHEN json_valid(t) AND json_type(t) = 'OBJECT' THEN json(t) END"),
    # The first JWT-looking substring of free text.
    ("tt_find_jwt", "s",
     "nullif(regexp_extract(s, 'eyJ[A-Za-z0-9_-]+\\.eyJ[A-Za-z0-9_-]+\\.[A-Za-z0-9_-]*'), '')"),
    # A GUID in text form as the 16 bytes .NET writes (first three groups little-endian),
    # base64url without padding: the form Entra uses for a token's `uti` claim.
    ("tt_guid_b64url", "g",
     "CASE WHEN regexp_full_match(g, '[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-"
     "[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}') THEN tt_hex_b64url("
     "substr(g,7,2)||substr(g,5,2)||substr(g,3,2)||substr(g,1,2)||substr(g,12,2)||substr(g,10,2)"
     "||substr(g,17,2)||substr(g,15,2)||substr(g,20,4)||substr(g,25,12)) END"),
    # Entra's uniqueTokenIdentifier / Graph SignInActivityId / a JWT's `uti`, one spelling:
    # base64url of the request GUID's bytes. Seen encoded that way (22 chars, sometimes padded
    # or in the standard alphabet) and, in older exports, as base64 of the GUID's text; a bare
    # GUID is accepted too.
    ("tt_uti", "v",
     "CASE WHEN v IS NULL OR trim(v) = '' THEN NULL "
     "WHEN length(trim(v)) = 36 AND tt_guid_b64url(trim(v)) IS NOT NULL "
     "THEN tt_guid_b64url(trim(v)) "
     "WHEN length(rtrim(trim(v), '=')) BETWEEN 47 AND 48 "
     "AND tt_guid_b64url(tt_b64url_text(rtrim(trim(v), '='))) IS NOT NULL "
     "THEN tt_guid_b64url(tt_b64url_text(rtrim(trim(v), '='))) "
     "ELSE rtrim(replace(replace(trim(v), '+', '-'), '/', '_'), '=') END"),
    # Timestamps: ISO-8601 text, epoch seconds or epoch milliseconds.
    ("tt_ts", "v", "TRY_CAST(CAST(v AS VARCHAR) AS TIMESTAMPTZ)"),
    ("tt_epoch", "v",
     "CASE WHEN TRY_CAST(v AS DOUBLE) IS NULL THEN NULL "
     "WHEN TRY_CAST(v AS DOUBLE) > 100000000000 THEN TRY(to_timestamp(TRY_CAST(v AS DOUBLE) / 1000)) "
     "ELSE TRY(to_timestamp(TRY_CAST(v AS DOUBLE))) END"),
    ("tt_epoch_ms", "v", "TRY(to_timestamp(TRY_CAST(v AS DOUBLE) / 1000))"),
    # A JSON value that is a string or an array of strings, as VARCHAR[].
    # JSON values here are DuckDB's compact JSON text, so the first character tells the type
    # without a parse.
    ("tt_str_list", "j",
     "CASE WHEN j IS NULL THEN NULL "
     "WHEN starts_with(j, '[') THEN TRY(CAST(json_transform(j, '[\"VARCHAR\"]') AS VARCHAR[])) "
     "WHEN starts_with(j, '\"') THEN [json_extract_string(j, '$')] "
     "WHEN j = 'null' THEN NULL "
     "ELSE [CAST(j AS VARCHAR)] END"),
    # Scopes given as a space/comma separated string or an array.
    ("tt_scopes", "j",
     "CASE WHEN j IS NULL THEN NULL "
     "WHEN starts_with(j, '[') THEN TRY(CAST(json_transform(j, '[\"VARCHAR\"]') AS VARCHAR[])) "
     "WHEN starts_with(j, '\"') THEN tt_split_scopes(json_extract_string(j, '$')) END"),
    ("tt_split_scopes", "s",
     "CASE WHEN s IS NULL OR s = '' THEN NULL "
     "ELSE list_filter(string_split(replace(replace(s, ',', ' '), '\t', ' '), ' '), "
     "lambda x: x <> '') END"),
    # RFC 8693 act chain, current actor first, from the `act` claim (nested act objects).
    ("tt_act_chain", "act",
     "list_filter(json_extract_string(act, ["
     + ", ".join("'$" + ".act" * depth + ".sub'" for depth in range(0, 8))
     + "]), lambda x: x IS NOT NULL)"),
    # IP address from "ip", "ip:port", "[v6]:port"; "-" and empty become NULL.
    # Text shaped like an address (IPv4, IPv6, an IPv6 zone), else NULL: a log field that
    # holds a host name, "AWS Internal" or an attacker's string never becomes a holder. The
    # shape is checked, not the value: anonymised logs carry addresses like 255.090.254.5.
    ("tt_ip_shaped", "v",
     "CASE WHEN regexp_full_match(v, '[0-9A-Fa-f:.]{2,45}(%[A-Za-z0-9_.-]{1,32})?') "
     "AND regexp_matches(v, '[0-9]') THEN v END"),
    ("tt_ip_any", "v",
     "tt_ip_shaped(CASE WHEN v IS NULL OR trim(v) IN ('', '-') THEN NULL "
     "WHEN starts_with(trim(v), '[') THEN nullif(split_part(substr(trim(v), 2), ']', 1), '') "
     "WHEN contains(v, ':') AND length(v) - length(replace(v, ':', '')) = 1 "
     "THEN split_part(trim(v), ':', 1) "
     "ELSE trim(v) END)"),
    # IPv4 with or without a port (nearly every gateway line) takes one regex; anything else
    # the general form, whose shape check evaluates its argument three times (measured on 1 M
    # Envoy addresses: 0.23 s general, 0.08 s with this path).
    ("tt_ip", "v",
     "CASE WHEN regexp_full_match(v, '[0-9]{1,3}\\.[0-9]{1,3}\\.[0-9]{1,3}\\.[0-9]{1,3}(:[0-9]{1,5})?') "
     "THEN split_part(v, ':', 1) ELSE tt_ip_any(v) END"),
    # A private, loopback or link-local address (RFC 1918, RFC 4193, RFC 3927): where a hop
    # inside the network sits. Same prefixes as classify._PRIVATE_PREFIXES.
    ("tt_private_ip", "ip",
     "coalesce(starts_with(ip, '10.') OR starts_with(ip, '192.168.') OR starts_with(ip, '127.') "
     "OR starts_with(ip, '169.254.') OR starts_with(lower(ip), 'fc') "
     "OR starts_with(lower(ip), 'fd') OR starts_with(lower(ip), 'fe80:') OR ip = '::1' "
     "OR (starts_with(ip, '172.') AND TRY_CAST(split_part(ip, '.', 2) AS INTEGER) "
     "BETWEEN 16 AND 31), false)"),
    # The first address of an X-Forwarded-For style list.
    ("tt_first_ip", "v", "tt_ip(split_part(v, ',', 1))"),
    # A user agent's family, version-free, so one client's variants are one holder: the AWS
    # console's many front ends (console.amazonaws.com, signin.amazonaws.com,
    # ec2consolefrontend, S3Console, "aws-internal/3 ..." and "AWS Internal") are aws-console;
    # tools that embed an SDK (aws-cli and Terraform carry botocore / aws-sdk-go) by the tool;
    # AWS SDKs as aws-sdk-<language>; browsers by brand (Edge and Opera before Chrome, Chrome
    # before Safari: each UA names the ones before it); else the first product token
    # ("python-requests/2.31" -> python-requests, "kubectl/v1.29 (linux/amd64)" -> kubectl,
    # "okhttp/4.12" -> okhttp), CloudTrail's [brackets] and trailing punctuation removed.
    ("tt_ua_family", "ua",
     "CASE WHEN ua IS NULL OR trim(ua) IN ('', '-') THEN NULL "
     "WHEN regexp_matches(lower(ua), '(^|[^a-z0-9])(console\\.amazonaws\\.com|signin\\.amazonaws\\.com"
     "|[a-z0-9]*consolefrontend|s3console|console\\.[a-z0-9.-]*amazonaws\\.com|aws-internal"
     "|aws internal)') THEN 'aws-console' "
     "WHEN contains(lower(ua), 'aws-cli/') THEN 'aws-cli' "
     "WHEN contains(lower(ua), 'terraform') THEN 'terraform' "
     "WHEN regexp_matches(lower(ua), '(^|[^a-z])boto3/') THEN 'boto3' "
     "WHEN regexp_matches(lower(ua), '(^|[^a-z])botocore/') THEN 'botocore' "
     "WHEN regexp_matches(lower(ua), 'aws-sdk-[a-z]+') "
     "THEN regexp_extract(lower(ua), '(aws-sdk-[a-z]+(-v[0-9]+)?)', 1) "
     "WHEN regexp_matches(ua, '(^|\\s)Mozilla/') THEN CASE "
     "WHEN regexp_matches(ua, 'Edg[A-Za-z]*/') THEN 'edge' "
     "WHEN regexp_matches(ua, 'OPR/') THEN 'opera' "
     "WHEN regexp_matches(ua, 'Firefox/|FxiOS/') THEN 'firefox' "
     "WHEN regexp_matches(ua, 'Chrome/|CriOS/|Chromium/') THEN 'chrome' "
     "WHEN regexp_matches(ua, 'Safari/') THEN 'safari' ELSE 'mozilla' END "
     "ELSE nullif(rtrim(lower(split_part(split_part(split_part(ltrim(ua, '[ '), '/', 1), ' ', 1), "
     "';', 1)), ',]'), '') END"),
    # The SPIFFE ID among comma-joined URI SANs.
    ("tt_spiffe", "v",
     "CASE WHEN v IS NULL OR NOT contains(v, 'spiffe://') THEN NULL "
     "WHEN starts_with(v, 'spiffe://') AND NOT contains(v, ',') THEN v "
     "ELSE nullif(regexp_extract(v, '(spiffe://[^,\\s]+)', 1), '') END"),
    ("tt_nullif_dash", "v",
     "CASE WHEN CAST(v AS VARCHAR) IN ('', '-') THEN NULL ELSE CAST(v AS VARCHAR) END"),
    # An audience or resource without scheme, "api://" prefix or trailing slash, lowercased.
    ("tt_aud_norm", "a",
     "lower(rtrim(regexp_replace(a, '^[A-Za-z][A-Za-z0-9+.-]*://', ''), '/'))"),
    # Does the audience list cover every resource presented at? Loose: either contains the
    # other after normalising. NULL when either side is unknown.
    ("tt_aud_covers", "auds, resources",
     "CASE WHEN auds IS NULL OR len(auds) = 0 OR resources IS NULL OR len(resources) = 0 THEN NULL "
     "ELSE list_bool_and([list_bool_or([contains(tt_aud_norm(r), tt_aud_norm(a)) "
     "OR contains(tt_aud_norm(a), tt_aud_norm(r)) FOR a IN auds]) FOR r IN resources]) END"),
    # --- OpenTelemetry (OTLP/JSON, see formats/otel.toml) ---------------------------------
    # Nanoseconds since the epoch (a decimal string, as int64 is in OTLP/JSON, or a number);
    # 0 means unset in OTLP, so it is NULL here.
    ("tt_epoch_ns", "v",
     "CASE WHEN coalesce(TRY_CAST(CAST(v AS VARCHAR) AS HUGEINT), "
     "TRY_CAST(TRY_CAST(CAST(v AS VARCHAR) AS DOUBLE) AS HUGEINT), 0) > 0 "
     "THEN to_timestamp(0) + to_microseconds(CAST(coalesce(TRY_CAST(CAST(v AS VARCHAR) AS HUGEINT), "
     "TRY_CAST(TRY_CAST(CAST(v AS VARCHAR) AS DOUBLE) AS HUGEINT)) // 1000 AS BIGINT)) END"),
    # A trace or span id as lowercase hex (the W3C traceparent form). OTLP/JSON writes hex in
    # any case; exporters that use protobuf's default JSON mapping write base64, converted
    # here. All zeros is an invalid id: NULL.
    ("tt_otel_id", "v",
     "CASE WHEN v IS NULL OR trim(v) = '' THEN NULL "
     "WHEN regexp_full_match(trim(v), '[0-9A-Fa-f]{16}|[0-9A-Fa-f]{32}') "
     "THEN nullif(nullif(lower(trim(v)), '0000000000000000'), '00000000000000000000000000000000') "
     "WHEN regexp_full_match(trim(v), '[A-Za-z0-9+/]{11}=|[A-Za-z0-9+/]{22}==') "
     "THEN nullif(nullif(lower(hex(from_base64(trim(v)))), '0000000000000000'), "
     "'00000000000000000000000000000000') END"),
    # An OTLP AnyValue read as {stringValue, intValue, boolValue, doubleValue, bytesValue:
    # VARCHAR, arrayValue: JSON} as text; an array gives its first string (HTTP header
    # attributes are string arrays). kvlistValue is not read.
    ("tt_otel_value", "v",
     "coalesce(v.stringValue, v.intValue, v.boolValue, v.doubleValue, v.bytesValue, "
     "json_extract_string(v.arrayValue, '$.values[0].stringValue'))"),
    # An OTLP attribute list (a list of {key, value} structs as above) as a map from key to
    # text value ('' as absent), built once per record (otel.toml's [let]) so that each
    # lookup is m['key']: searching the list per lookup, or converting the value per lookup,
    # measured several times slower. OTLP keys are unique; a list that repeats one cannot be
    # a map and reads as no attributes.
    ("tt_otel_attrs", "attrs",
     "map_from_entries(list_transform(attrs, lambda x: {'k': x.key, "
     "'v': nullif(tt_otel_value(x.value), '')}))"),
    # SpanKind: OTLP/JSON writes the enum as an integer; some exporters write its name.
    ("tt_otel_span_kind", "k",
     "CASE upper(CAST(k AS VARCHAR)) WHEN '1' THEN 'internal' WHEN '2' THEN 'server' "
     "WHEN '3' THEN 'client' WHEN '4' THEN 'producer' WHEN '5' THEN 'consumer' "
     "WHEN 'SPAN_KIND_INTERNAL' THEN 'internal' WHEN 'SPAN_KIND_SERVER' THEN 'server' "
     "WHEN 'SPAN_KIND_CLIENT' THEN 'client' WHEN 'SPAN_KIND_PRODUCER' THEN 'producer' "
     "WHEN 'SPAN_KIND_CONSUMER' THEN 'consumer' END"),
    # The host of an absolute URL (without userinfo and port).
    ("tt_url_host", "u",
     "lower(nullif(regexp_extract(u, "
     "'^[A-Za-z][A-Za-z0-9+.-]*://(?:[^@/?#]*@)?(\\[[^\\]]*\\]|[^:/?#]*)', 1), ''))"),
    # The path and query of an absolute URL.
    ("tt_url_path", "u",
     "nullif(regexp_extract(u, '^[A-Za-z][A-Za-z0-9+.-]*://[^/?#]*([^#]*)', 1), '')"),
    # Token redaction applied to anything stored from a log (see redact.py).
    ("tt_redact", "s",
     f"CASE WHEN s IS NULL OR NOT regexp_matches(s, {REDACT_TRIGGER_SQL}) THEN s "
     f"ELSE {sql_redact_expr('s')} END"),
    ("tt_redact_strict", "s", sql_redact_expr("s", strict=True)),
)


def install_macros(con: duckdb.DuckDBPyConnection) -> None:
    """Create the macros as TEMP macros: they belong to the engine version, not to the case."""
    for name, params, body in MACROS:
        con.execute(f"CREATE OR REPLACE TEMP MACRO {name}({params}) AS ({body})")
