"""The secret rules: provider token shapes, private keys, JWTs, credentials in URLs and
assignments, and high-entropy strings (with filters against hashes, ids and blobs).

Every rule here is replaced by ``[REDACTED:<category>]``. Categories are provider names
(``github``, ``openai``, ``stripe``...) or a kind of secret (``private-key``, ``jwt``,
``password``, ``secret``, ``high-entropy``). Shapes follow each provider's published
token formats; where a provider has no distinctive prefix the rule needs a keyword next to
the value (``_context``). Patterns run on raw JSONL bytes, so tokens may sit right after a
JSON escape (``\\n``) and values may be wrapped in escaped quotes (``\\"``).
"""

from __future__ import annotations

import re

from .rules import (
    ALNUM,
    B64URL,
    ESC,
    WORD,
    Rule,
    entropy,
    left,
    not_placeholder,
    token,
)

# -- builders -----------------------------------------------------------------------------


def _tok(
    name: str,
    category: str,
    prefix: bytes,
    body: bytes,
    *,
    cls: bytes = WORD,
    check=None,
    priority: int = 100,
) -> Rule:
    """A token that starts with ``prefix``; the detector is the prefix and the body's shape
    (a bare prefix such as ``re_`` or ``SK`` would fire on ordinary words). Bodies of a
    few repeated characters are documentation placeholders (``ghp_xxxx...``)."""
    return Rule(
        name,
        category,
        detect=prefix + body,
        pattern=token(prefix, body, cls),
        check=check or _real_token,
        priority=priority,
    )


# key-value separators as they appear in env files, YAML, JSON, code, and JSON inside JSON
_Q = rb"(?:\\{0,3}[\"'`])?"
_SEP = _Q + rb"[ \t]{0,5}(?::=|=>|==|[=:])[ \t]{0,5}" + _Q


def _context(name: str, category: str, keyword: bytes, value: bytes) -> Rule:
    """A value with no distinctive shape, recognised by a ``keyword`` in the key before it
    (``CLOUDFLARE_API_TOKEN=...``, ``"mistral_key": "..."``)."""
    return Rule(
        name,
        category,
        detect=rb"(?i)" + keyword,
        pattern=rb"(?i:"
        + keyword
        + rb")[A-Za-z0-9_.\-]{0,30}?"
        + _SEP
        + rb"(?P<s>"
        + value
        + rb")(?![A-Za-z0-9_\-])",
        priority=90,
    )


def _varied(v: bytes) -> bool:
    """No character makes up half of it (doc examples such as ``ghp_xxxxxxxx...``)."""
    return v.count(max(set(v), key=v.count)) * 2 < len(v)


def _real_token(v: bytes) -> bool:
    return _varied(v) and not_placeholder(v)


# -- provider tokens ----------------------------------------------------------------------

PROVIDERS: list[Rule] = [
    # cloud
    _tok(
        "aws-access-key-id",
        "aws",
        rb"(?:AKIA|ASIA|ABIA|ACCA)",
        rb"[A-Z2-7]{16}",
        cls=ALNUM,
    ),
    Rule(
        "aws-secret-access-key",
        "aws",
        detect=rb"(?i)(?:secret_?access_?key|aws_?secret)",
        pattern=rb"(?i:secret_?access_?key|aws_?secret(?:_?key)?)"
        + _SEP
        + rb"(?P<s>[A-Za-z0-9/+]{40})(?![A-Za-z0-9/+=])",
        priority=110,
    ),
    _tok("google-api-key", "google", rb"AIza", rb"[A-Za-z0-9_\-]{35}", cls=B64URL),
    _tok("google-oauth-secret", "google", rb"GOCSPX-", rb"[A-Za-z0-9_\-]{28}", cls=B64URL),
    _tok("google-oauth-token", "google", rb"ya29\.", rb"[A-Za-z0-9_\-]{30,}"),
    _tok("google-refresh-token", "google", rb"1//0", rb"[A-Za-z0-9_\-]{40,}", cls=B64URL),
    Rule(
        "azure-storage-key",
        "azure",
        detect=rb"(?:Account|SharedAccess)Key=",
        pattern=rb"(?:Account|SharedAccess)Key=(?P<s>[A-Za-z0-9+/]{40,100}={0,2})",
    ),
    Rule(
        "azure-sas-signature",
        "azure",
        detect=rb"sig=",
        pattern=rb"(?<=[?&;])sig=(?P<s>[A-Za-z0-9%+/]{30,}={0,2})",
    ),
    Rule(
        "azure-ad-client-secret",
        "azure",
        detect=rb"[A-Za-z0-9_~.]{3}[0-9]Q~",
        pattern=left(rb"A-Za-z0-9_~.")
        + rb"[A-Za-z0-9_~.]{3}[0-9]Q~[A-Za-z0-9_~.\-]{31,34}(?![A-Za-z0-9_~.\-])",
    ),
    _tok("digitalocean-token", "digitalocean", rb"do[por]_v1_", rb"[a-f0-9]{64}"),
    _tok("heroku-api-key", "heroku", rb"HRKU-", rb"[A-Za-z0-9_\-]{30,}", cls=B64URL),
    _context(
        "heroku-api-key-context",
        "heroku",
        rb"heroku",
        rb"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}",
    ),
    _tok("cloudflare-origin-ca-key", "cloudflare", rb"v1\.0-", rb"[a-f0-9]{24}-[a-f0-9]{146}"),
    _context(
        "cloudflare-api-token", "cloudflare", rb"(?:cloudflare|cf_api)", rb"[A-Za-z0-9_\-]{37,40}"
    ),
    _tok("fly-token", "fly", rb"fo1_", rb"[A-Za-z0-9_\-]{20,}", cls=B64URL),
    Rule(
        "fly-macaroon",
        "fly",
        detect=rb"(?:FlyV1 )?fm[12][ar]?_",
        pattern=rb"(?:FlyV1 )?fm[12][ar]?_[A-Za-z0-9+/=_\-]{40,}(?:,fm[12][ar]?_[A-Za-z0-9+/=_\-]{40,})*",
    ),
    _context("vercel-token", "vercel", rb"vercel", rb"[A-Za-z0-9]{24}"),
    _tok("vercel-token-prefixed", "vercel", rb"vc[piark]_", rb"[A-Za-z0-9]{24,}"),
    _tok("supabase-token", "supabase", rb"sbp_", rb"[a-f0-9]{40}"),
    _tok("supabase-secret-key", "supabase", rb"sb_secret_", rb"[A-Za-z0-9_\-]{20,}", cls=B64URL),
    _tok("netlify-token", "netlify", rb"nfp_", rb"[A-Za-z0-9]{36,}"),
    _tok("render-token", "render", rb"rnd_", rb"[A-Za-z0-9]{32,}"),
    _tok("vault-token", "hashicorp", rb"hv[sbr]\.", rb"[A-Za-z0-9_\-]{24,}", cls=B64URL),
    Rule(
        "terraform-cloud-token",
        "hashicorp",
        detect=rb"[A-Za-z0-9]{14}\.atlasv1\.",
        pattern=left(ALNUM) + rb"[A-Za-z0-9]{14}\.atlasv1\.[A-Za-z0-9_=\-]{60,}",
    ),
    _tok("alibaba-access-key", "alibaba", rb"LTAI", rb"[A-Za-z0-9]{20}", cls=ALNUM),
    _tok("tailscale-key", "tailscale", rb"tskey-", rb"[A-Za-z0-9\-]{20,}", cls=B64URL),
    _tok("databricks-token", "databricks", rb"dapi", rb"[a-f0-9]{32}(?:-[0-9])?", cls=ALNUM),
    _tok("grafana-cloud-token", "grafana", rb"glc_", rb"[A-Za-z0-9+/]{32,}={0,2}"),
    _tok("grafana-service-account", "grafana", rb"glsa_", rb"[A-Za-z0-9]{32}_[a-f0-9]{8}"),
    _tok("newrelic-key", "newrelic", rb"NR(?:AK|AA|II)-", rb"[A-Za-z0-9]{27}", cls=ALNUM),
    _tok(
        "doppler-token",
        "doppler",
        rb"dp\.(?:pt|st|sa|ct|scim|audit)\.",
        rb"[A-Za-z0-9]{40,44}",
    ),
    _tok("pulumi-token", "pulumi", rb"pul-", rb"[a-f0-9]{40}"),
    _tok(
        "age-secret-key",
        "age",
        rb"AGE-SECRET-KEY-1",
        rb"[QPZRY9X8GF2TVDW0S3JN54KHCE6MUA7L]{58}",
        cls=ALNUM,
    ),
    _tok("1password-service-token", "1password", rb"ops_eyJ", rb"[A-Za-z0-9+/]{100,}={0,3}"),
    # AI APIs
    _tok(
        "anthropic-key", "anthropic", rb"sk-ant-", rb"[A-Za-z0-9_\-]{32,}", cls=B64URL, priority=120
    ),
    _tok("openrouter-key", "openrouter", rb"sk-or-v1-", rb"[a-f0-9]{64}", cls=B64URL, priority=120),
    _tok(
        "openai-project-key",
        "openai",
        rb"sk-(?:proj|svcacct|admin|None)-",
        rb"[A-Za-z0-9_\-]{20,}",
        cls=B64URL,
        priority=115,
    ),
    _tok(
        "openai-legacy-key",
        "openai",
        rb"sk-",
        rb"[A-Za-z0-9]{20}T3BlbkFJ[A-Za-z0-9]{20}",
        cls=B64URL,
        priority=115,
    ),
    _tok(
        "sk-api-key",  # DeepSeek, Moonshot, OpenAI-compatible gateways...
        "api-key",
        rb"sk-",
        rb"[A-Za-z0-9_\-]{24,}",
        cls=B64URL,
        check=lambda v: _varied(v) and entropy(v) >= 3.5,
    ),
    _tok("huggingface-token", "huggingface", rb"(?:hf_|api_org_)", rb"[A-Za-z0-9]{30,}"),
    _tok("groq-key", "groq", rb"gsk_", rb"[A-Za-z0-9]{48,}"),
    _tok("replicate-token", "replicate", rb"r8_", rb"[A-Za-z0-9]{30,}"),
    _tok("perplexity-key", "perplexity", rb"pplx-", rb"[A-Za-z0-9]{40,}", cls=B64URL),
    _tok("xai-key", "xai", rb"xai-", rb"[A-Za-z0-9]{60,}", cls=B64URL),
    _tok("fireworks-key", "fireworks", rb"fw_", rb"[A-Za-z0-9]{24,}"),
    _tok("langsmith-key", "langsmith", rb"lsv2_(?:pt|sk)_", rb"[a-f0-9]{32}_[a-f0-9]{10}"),
    _tok("elevenlabs-key", "elevenlabs", rb"sk_", rb"[a-f0-9]{48}"),
    _context("cohere-key", "cohere", rb"(?:cohere|co_api_key)", rb"[A-Za-z0-9]{40}"),
    _context("mistral-key", "mistral", rb"mistral", rb"[A-Za-z0-9]{32}"),
    # version control
    _tok("github-token", "github", rb"gh[pousr]_", rb"[A-Za-z0-9]{36,255}"),
    _tok("github-fine-grained-pat", "github", rb"github_pat_", rb"[A-Za-z0-9_]{40,}"),
    _tok(
        "gitlab-token",
        "gitlab",
        rb"gl(?:pat|dt|rt|ptt|ft|soat|imt|agent|oas|cbt|wt)-",
        rb"[A-Za-z0-9_.\-]{20,}",
        cls=B64URL,
    ),
    _tok("gitlab-runner-registration", "gitlab", rb"GR1348941", rb"[A-Za-z0-9_\-]{20,}"),
    _tok("bitbucket-app-password", "bitbucket", rb"ATBB", rb"[A-Za-z0-9_=.\-]{28,}", cls=B64URL),
    _tok(
        "atlassian-token", "atlassian", rb"AT(?:ATT|CTT)3", rb"[A-Za-z0-9_=.\-]{100,}", cls=B64URL
    ),
    # chat
    _tok(
        "slack-token",
        "slack",
        rb"(?:xox[abeoprs]|xapp)-",
        rb"[A-Za-z0-9\-]{10,}",
        cls=B64URL,
    ),
    Rule(
        "slack-webhook",
        "slack",
        detect=rb"hooks\.slack\.com/",
        pattern=rb"hooks\.slack\.com/(?:services|workflows|triggers)/(?P<s>[A-Za-z0-9+/_\-]{20,})",
    ),
    Rule(
        "discord-bot-token",
        "discord",
        detect=rb"[MNO][A-Za-z0-9_\-]{23,25}\.[A-Za-z0-9_\-]{6}\.",
        pattern=left(B64URL)
        + rb"[MNO][A-Za-z0-9_\-]{23,25}\.[A-Za-z0-9_\-]{6}\.[A-Za-z0-9_\-]{27,38}(?![A-Za-z0-9_\-])",
    ),
    Rule(
        "discord-webhook",
        "discord",
        detect=rb"/api/webhooks/",
        pattern=rb"/api/webhooks/[0-9]{17,20}/(?P<s>[A-Za-z0-9_\-]{60,})",
    ),
    Rule(
        "telegram-bot-token",
        "telegram",
        detect=rb"[0-9]{8,10}:AA",
        pattern=left(ALNUM) + rb"[0-9]{8,10}:AA[A-Za-z0-9_\-]{33}(?![A-Za-z0-9_\-])",
    ),
    Rule(
        "teams-webhook",
        "microsoft-teams",
        detect=rb".webhook.office.com/",
        pattern=rb"\.webhook\.office\.com/(?P<s>webhookb2/[A-Za-z0-9@/\-]{40,})",
    ),
    # payments
    _tok("stripe-key", "stripe", rb"(?:sk|rk)_(?:live|test)_", rb"[A-Za-z0-9]{20,}"),
    _tok("stripe-webhook-secret", "stripe", rb"whsec_", rb"[A-Za-z0-9+/=]{32,}"),
    _tok("square-token", "square", rb"sq0(?:atp|csp|idp)-", rb"[A-Za-z0-9_\-]{22,43}", cls=B64URL),
    _tok("square-access-token", "square", rb"EAAA", rb"[A-Za-z0-9_\-]{60}", cls=B64URL),
    Rule(
        "braintree-access-token",
        "paypal",
        detect=rb"access_token\$",
        pattern=rb"access_token\$(?:production|sandbox)\$[a-z0-9]{16}\$[a-f0-9]{32}",
    ),
    _context("paypal-client-secret", "paypal", rb"paypal", rb"[A-Za-z0-9_\-]{60,90}"),
    _tok("shopify-token", "shopify", rb"shp(?:at|ca|pa|ss)_", rb"[a-fA-F0-9]{32}"),
    _tok("razorpay-key", "razorpay", rb"rzp_(?:live|test)_", rb"[A-Za-z0-9]{14,}"),
    # package registries
    _tok("npm-token", "npm", rb"npm_", rb"[A-Za-z0-9]{36}"),
    _tok("pypi-token", "pypi", rb"pypi-AgE", rb"[A-Za-z0-9_\-]{50,}", cls=B64URL),
    _tok("rubygems-key", "rubygems", rb"rubygems_", rb"[a-f0-9]{48}"),
    _tok("nuget-key", "nuget", rb"oy2", rb"[a-z0-9]{43}", cls=ALNUM),
    _tok(
        "dockerhub-token", "dockerhub", rb"dckr_(?:pat|oat)_", rb"[A-Za-z0-9_\-]{27,}", cls=B64URL
    ),
    _tok("crates-io-token", "crates-io", rb"cio", rb"[A-Za-z0-9]{32}", cls=ALNUM),
    _tok("clojars-token", "clojars", rb"CLOJARS_", rb"[a-z0-9]{60}"),
    # other services
    _tok("twilio-api-key", "twilio", rb"SK", rb"[0-9a-f]{32}", cls=ALNUM),
    _context("twilio-auth-token", "twilio", rb"twilio", rb"[0-9a-f]{32}"),
    Rule(
        "sendgrid-key",
        "sendgrid",
        detect=rb"SG\.",
        pattern=left(B64URL) + rb"SG\.[A-Za-z0-9_\-]{22}\.[A-Za-z0-9_\-]{43}(?![A-Za-z0-9_\-])",
    ),
    _tok("mailgun-key", "mailgun", rb"key-", rb"[a-f0-9]{32}", cls=B64URL),
    Rule(
        "mailchimp-key",
        "mailchimp",
        detect=rb"[a-f0-9]{32}-us[0-9]",
        pattern=left(ALNUM) + rb"[a-f0-9]{32}-us[0-9]{1,2}(?![A-Za-z0-9])",
    ),
    _context(
        "datadog-key", "datadog", rb"(?:datadog|dd_api|dd_app|dd-api|dd-app)", rb"[a-f0-9]{32,40}"
    ),
    _tok("sentry-token", "sentry", rb"sntry[su]_", rb"[A-Za-z0-9+/=_\-]{40,}", cls=B64URL),
    _tok("linear-key", "linear", rb"lin_(?:api|oauth)_", rb"[A-Za-z0-9]{40}"),
    _tok("notion-token", "notion", rb"(?:secret_|ntn_)", rb"[A-Za-z0-9]{43,46}"),
    _tok("postman-key", "postman", rb"PMAK-", rb"[a-f0-9]{24}-[a-f0-9]{34}", cls=B64URL),
    _tok("figma-token", "figma", rb"figd_", rb"[A-Za-z0-9_\-]{40,}", cls=B64URL),
    Rule(
        "airtable-token",
        "airtable",
        detect=rb"pat[A-Za-z0-9]{14}\.",
        pattern=left(ALNUM) + rb"pat[A-Za-z0-9]{14}\.[a-f0-9]{64}(?![A-Za-z0-9])",
    ),
    _tok(
        "planetscale-token", "planetscale", rb"pscale_(?:tkn|pw|oauth)_", rb"[A-Za-z0-9_.\-]{32,}"
    ),
    _tok(
        "mapbox-secret-token", "mapbox", rb"sk\.eyJ", rb"[A-Za-z0-9_\-]{50,}\.[A-Za-z0-9_\-]{20,}"
    ),
    _tok("dropbox-token", "dropbox", rb"sl\.", rb"[A-Za-z0-9_\-]{130,}", cls=B64URL),
    _tok("resend-key", "resend", rb"re_", rb"[A-Za-z0-9]{8}_[A-Za-z0-9]{24}"),
    _context("okta-token", "okta", rb"okta", rb"00[A-Za-z0-9_\-]{40}"),
]


# -- generic shapes -----------------------------------------------------------------------

_PEM_BODY = rb"(?:\\{1,3}[nrt]|[A-Za-z0-9+/= \t\r\n:,.\-])"

GENERIC: list[Rule] = [
    Rule(
        "private-key",
        "private-key",
        detect=rb"-----BEGIN ",
        # the whole block up to its END line; a block cut short still loses its body
        pattern=rb"-----BEGIN (?:[A-Z0-9]+ ){0,3}PRIVATE KEY(?: BLOCK)?-----"
        + rb"(?:"
        + _PEM_BODY
        + rb"{0,65536}?-----END (?:[A-Z0-9]+ ){0,3}PRIVATE KEY(?: BLOCK)?-----|"
        + _PEM_BODY
        + rb"{0,65536})",
        priority=130,
    ),
    Rule(
        "public-pem-block",  # public keys and certificates are not secrets: keep them whole
        "public-key",
        detect=rb"-----BEGIN ",
        pattern=rb"-----BEGIN (?:[A-Z0-9]+ ){0,3}(?:PUBLIC KEY|CERTIFICATE(?: REQUEST)?|X509 CRL)-----"
        + _PEM_BODY
        + rb"{0,65536}?-----END (?:[A-Z0-9]+ ){0,3}(?:PUBLIC KEY|CERTIFICATE(?: REQUEST)?|X509 CRL)-----",
        kind="keep",
        priority=125,
    ),
    Rule(
        "jwt",
        "jwt",
        detect=rb"eyJ",
        pattern=token(
            rb"eyJ", rb"[A-Za-z0-9_\-]{10,}\.eyJ[A-Za-z0-9_\-]{10,}\.[A-Za-z0-9_\-]*", B64URL
        ),
        priority=95,
    ),
    Rule(
        "url-credentials",  # scheme://user:password@host (postgres, mysql, mongodb, redis, amqp, https...)
        "password",
        detect=rb"://",
        pattern=rb"://[^\s:/@\"'\\]{0,128}:(?P<s>[^\s/@\"'\\]{1,256})@(?=[A-Za-z0-9\[])",
        check=not_placeholder,
        priority=90,
    ),
    Rule(
        "authorization-header",
        "secret",
        detect=rb"(?i)(?:bearer|basic)[ \t]",
        pattern=rb"(?:(?<![A-Za-z])|"
        + ESC
        + rb")(?i:bearer|basic)[ \t]{1,4}(?P<s>[A-Za-z0-9._~+/\-]{16,}={0,2})",
        check=not_placeholder,
        priority=85,
    ),
]


# -- key = value assignments (env files, YAML, JSON, code, CLI flags, ADO strings) --------

_PASSWORD_KEYS = rb"passw(?:or)?d|passwd|pwd|pass|passphrase"
_SECRET_KEYS = (
    rb"api[_.\-]?key|apikey|api[_.\-]?secret|secret|token|credentials?|private[_.\-]?key"
    rb"|access[_.\-]?key|auth[_.\-]?key|client[_.\-]?secret|session[_.\-]?(?:key|secret)"
    rb"|encryption[_.\-]?key|signing[_.\-]?key|master[_.\-]?key"
)
_KEY_SUFFIX = rb"(?:[_.\-](?:key|id|value|token|secret|base|b64|hex|str|string|hash|file))*"
_VALUE = rb"(?:[^\s\"'`\\,;(){}\[\]<>|]|\\u[0-9A-Fa-f]{4}){%d,512}"
_VALUE_END = rb"(?=[\s\"'`\\,;)}\]>|]|$)"
_CODE_REF = re.compile(rb"[A-Za-z_$][\w$]*(?:\.[A-Za-z_$][\w$]*)+|\$\w+|%\w+%")


def _secret_value(v: bytes) -> bool:
    """A value next to a token/secret/key name: not a placeholder, a code reference or a
    number, and not too regular to be random."""
    if not_placeholder(v) is False or _CODE_REF.fullmatch(v) or v.isdigit():
        return False
    has_digit = any(48 <= c <= 57 for c in v)
    return (has_digit or len(v) >= 16) and entropy(v) >= 2.5


def _password_value(v: bytes) -> bool:
    return not_placeholder(v) and not _CODE_REF.fullmatch(v)


def _assignment(name: str, category: str, keys: bytes, min_len: int, check) -> Rule:
    return Rule(
        name,
        category,
        detect=rb"(?i)(?:" + keys + rb")[_.\-\\\"'` \t:=]",
        pattern=rb"(?:(?<![A-Za-z])|(?<=[a-z])(?=[A-Z])|"
        + ESC
        + rb")(?i:"
        + keys
        + rb")(?i:"
        + _KEY_SUFFIX
        + rb")"
        + _SEP
        + rb"(?P<s>"
        + (_VALUE % min_len)
        + rb")"
        + _VALUE_END,
        check=check,
        priority=70,
    )


def _flag(name: str, category: str, flags: bytes, check) -> Rule:
    """A command-line flag and its value: ``--token X``, ``--password=X``."""
    return Rule(
        name,
        category,
        detect=rb"--(?:" + flags + rb")[ =]",
        pattern=rb"(?:(?<![A-Za-z0-9\-])|"
        + ESC
        + rb")--(?:"
        + flags
        + rb")[ =](?P<s>"
        + (_VALUE % 6)
        + rb")"
        + _VALUE_END,
        check=check,
        priority=75,
    )


ASSIGNMENTS: list[Rule] = [
    _assignment("password-assignment", "password", _PASSWORD_KEYS, 6, _password_value),
    _assignment("secret-assignment", "secret", _SECRET_KEYS, 8, _secret_value),
    _flag("password-flag", "password", rb"password|passwd", _password_value),
    _flag(
        "secret-flag",
        "secret",
        rb"token|api-key|apikey|secret|auth-token|access-token|client-secret",
        _secret_value,
    ),
]


# -- high-entropy strings -----------------------------------------------------------------

_HEX = re.compile(rb"(?:0x)?[0-9A-Fa-f]+")
_UUID = re.compile(rb"[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}")
# ids that are opaque but not secret (model APIs, payments objects), blob magic numbers
# (base64 images and PDFs), lockfile integrity hashes and Fernet/opaque provider blobs
_NOT_SECRET_PREFIXES = (
    b"msg_",
    b"req_",
    b"toolu_",
    b"srvtoolu_",
    b"call_",
    b"chatcmpl-",
    b"resp_",
    b"rs_",
    b"fc_",
    b"ws_",
    b"file-",
    b"file_",
    b"run_",
    b"thread_",
    b"asst_",
    b"batch_",
    b"evt_",
    b"cus_",
    b"sub_",
    b"pi_",
    b"ch_",
    b"in_",
    b"iVBORw0KGgo",
    b"/9j/",
    b"R0lGOD",
    b"UklGR",
    b"JVBERi0",
    b"PD94bWw",
    b"PHN2Zy",
    b"sha1-",
    b"sha256-",
    b"sha384-",
    b"sha512-",
    b"md5-",
    b"gAAAAA",
)
MAX_ENTROPY_TOKEN = 4096  # longer runs are data blobs, not credentials


_API_ID = re.compile(
    rb"(?:^|_)(?:msg|toolu|srvtoolu|req|call|resp|run|thread|asst|batch|file|evt|fc|rs)"
    rb"_[0-9A-Za-z]{16,48}$"
)
_WORDLIKE = re.compile(rb"[A-Za-z]?[a-z]{2,}")
_DIGITS = b"0123456789"
_UPPER = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ"
_LOWER = b"abcdefghijklmnopqrstuvwxyz"


def looks_random(v: bytes) -> bool:
    """A credential-like random string: long, mixed classes, high entropy, and none of the
    usual non-secrets (hex hashes and git shas, UUIDs, ids, paths, images, checksums)."""
    n = len(v)
    if n > MAX_ENTROPY_TOKEN:
        return False
    # cheapest test first: most candidates are names and paths with fewer than 2 digits
    if n - len(v.translate(None, _DIGITS)) < 2 or n - len(v.translate(None, _LOWER)) < 2:
        return False
    if n < 40 and n - len(v.translate(None, _UPPER)) < 2:
        return False
    if v.startswith(_NOT_SECRET_PREFIXES) or _HEX.fullmatch(v):
        return False
    if _API_ID.search(v):  # agent_msg_01..., srvtoolu_01...: ids, kept for the trace links
        return False
    if b"-" in v and len(_UUID.sub(b"", v)) < 24:
        return False
    if b"/" in v and any(_WORDLIKE.fullmatch(seg) for seg in v.split(b"/")):
        return False  # a path: some segment is a word (src, Users, Library)
    return entropy(v) >= (4.0 if n < 48 else 4.3)


_ENTROPY_CLASS = rb"A-Za-z0-9+/=_\-"
# opaque fields agents log that are not the user's secrets (thinking signatures,
# encrypted reasoning, inline image data)
_OPAQUE_FIELDS = b"".join(
    rb"(?<!" + re.escape(q + f + q + sep + q) + rb")"
    for f in (b"signature", b"thoughtSignature", b"encrypted_content", b"data")
    for q in (b'"', b'\\"')
    for sep in (b":", b": ")
)

HIGH_ENTROPY = Rule(
    "high-entropy-string",
    "high-entropy",
    # 32 bytes without "-" (so UUIDs never fire), or 20 after one early "-"
    detect=rb"(?:^|[^A-Za-z0-9+/=_\-])"
    + rb"(?:[A-Za-z0-9+/_]{32}|[A-Za-z0-9+/_]{1,24}-[A-Za-z0-9+/_]{20})",
    pattern=left(_ENTROPY_CLASS)
    + _OPAQUE_FIELDS
    + rb"(?<!;base64,)(?P<s>[A-Za-z0-9+/_\-]{32,}={0,2})"
    + rb"(?![A-Za-z0-9+/=_\-])",
    check=looks_random,
    priority=10,
    lead=True,
)

RULES: list[Rule] = [*PROVIDERS, *GENERIC, *ASSIGNMENTS, HIGH_ENTROPY]


# -- values of secret-looking environment variables of the current process -----------------

_ENV_NAME = re.compile(
    r"(?i)TOKEN|SECRET|PASSW(?:OR)?D|CREDENTIAL|API_?KEY|ACCESS_?KEY|PRIVATE_?KEY"
    r"|(?:^|_)(?:KEY|PASS|PWD|AUTH|COOKIE|SESSION)(?:_|$)"
)
_ENV_NOT_SECRET = re.compile(r"(?i)^(?:OLD)?PWD$|_(?:PATH|FILE|DIR|SOCK|SOCKET|URL|HOST|PORT)$")
_MIN_ENV_VALUE = 8
_MAX_ENV_VALUE = 8192


def _env_secret(name: str, value: str) -> bool:
    if not (_MIN_ENV_VALUE <= len(value) <= _MAX_ENV_VALUE) or value.isdigit():
        return False
    if value.startswith(("/", "~/", "./", "../")) or re.match(r"[A-Za-z]:[\\/]", value):
        return False  # a file path, not a credential
    if value.lower() in ("true", "false", "enabled", "disabled"):
        return False
    return bool(_ENV_NAME.search(name)) and not _ENV_NOT_SECRET.search(name)


def env_rules(env) -> list[Rule]:
    """One exact-match rule per secret-looking variable of ``env`` (its value as is and as
    it appears inside a JSON string). Names are never reported; values never leave."""
    import json

    forms: set[bytes] = set()
    for name, value in env.items():
        if _env_secret(name, value):
            for text in (
                value,
                json.dumps(value)[1:-1],
                json.dumps(value, ensure_ascii=False)[1:-1],
            ):
                forms.add(text.encode("utf-8", "surrogateescape"))
    return [
        Rule("env-value", "env", detect=re.escape(f), pattern=re.escape(f), priority=140, literal=f)
        for f in sorted(forms, key=len, reverse=True)
    ]
