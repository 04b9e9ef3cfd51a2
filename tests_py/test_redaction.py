"""Credentials never show: not in ``repr(store)``, ``store.url``, ``anthill stats``,
error messages or log records (DEBUG included), whether they came in the URL's
query, its userinfo, keyword options or the ``AWS_*`` environment.

Each scenario runs in a fresh interpreter with logging at DEBUG configured
before anthill is imported (Rust log levels are cached on first use), so every
record the Rust core and its libraries emit is captured. A backend that fails
is an S3 URL pointing at a closed local port; a working one is the S3 service
of ``ANTHILL_TEST_S3_URL`` (CI's Garage), skipped without it.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import uuid
from urllib.parse import parse_qsl

import pytest
from test_s3 import S3_URL, needs_s3

# Distinctive values, one per way a credential comes in.
IN_QUERY = {
    "access_key_id": "QUERYKEYID123",
    "secret_access_key": "QUERYSECRETVALUE123",
    "session_token": "QUERYTOKENVALUE123",
}
IN_KEYWORDS = {
    "secret_access_key": "KEYWORDSECRETVALUE123",
    "session_token": "KEYWORDTOKENVALUE123",
}
IN_ENVIRONMENT = {
    "AWS_ACCESS_KEY_ID": "ENVKEYID123",
    "AWS_SECRET_ACCESS_KEY": "ENVSECRETVALUE123",
    "AWS_SESSION_TOKEN": "ENVTOKENVALUE123",
}
USERINFO = ("USERINFONAME123", "USERINFOSECRETVALUE123")
ENDPOINT_USERINFO = ("ENDPOINTNAME123", "ENDPOINTSECRETVALUE123")
STORE_SECRET = "STORESECRETVALUE123"

FORBIDDEN = [
    *IN_QUERY.values(),
    *IN_KEYWORDS.values(),
    *IN_ENVIRONMENT.values(),
    *USERINFO,
    *ENDPOINT_USERINFO,
    STORE_SECRET,
]

SCRIPT = """
import logging, sys
logging.basicConfig(level=logging.DEBUG, stream=sys.stdout,
                    format="LOG %(name)s %(levelname)s %(message)s")
logging.getLogger("anthill").setLevel(logging.DEBUG)
import anthill
url, keywords, good = sys.argv[1], eval(sys.argv[2]), sys.argv[3] == "good"
try:
    store = anthill.open(url, secret=STORE_SECRET, retry_attempts=1, **keywords)
except anthill.AnthillError as error:
    print("ERROR", type(error).__name__, str(error), repr(error), error.args)
    assert not good, "the working store failed to open"
else:
    print("REPR", repr(store))
    print("URL", store.url)
    print("NATIVE", repr(store._native))
    store["key"] = b"value"
    assert store["key"] == b"value"
    print("SUMMARY", store.summary())
    try:
        store.fetch_item("missing")
    except anthill.AnthillError as error:
        print("ERROR", str(error))
    store.close()
""".replace("STORE_SECRET", repr(STORE_SECRET))


def closed_port() -> int:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        return int(listener.getsockname()[1])


def failing_url(*, endpoint_userinfo: bool = False) -> str:
    """An S3 URL whose service is down, carrying credentials every way a URL can."""
    userinfo = f"{ENDPOINT_USERINFO[0]}:{ENDPOINT_USERINFO[1]}@" if endpoint_userinfo else ""
    endpoint = f"http://{userinfo}127.0.0.1:{closed_port()}"
    query = "&".join(f"{name}={value}" for name, value in IN_QUERY.items())
    return (
        f"s3://{USERINFO[0]}:{USERINFO[1]}@bucket/prefix?endpoint={endpoint}&region=garage"
        f"&{query}&max_retries=0&retry_timeout_secs=1"
    )


def environment(*, working: bool = False, **extra: str) -> dict[str, str]:
    """This process's environment without its ``AWS_*`` and ``ANTHILL_*``
    variables, with the decoy credentials (but no decoy session token for a
    working service, which would refuse the requests)."""
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("AWS_", "ANTHILL_"))
    }
    env.update(IN_ENVIRONMENT)
    if working:
        del env["AWS_SESSION_TOKEN"]
    env.update(extra)
    return env


def run(args: list[str], env: dict[str, str]) -> str:
    result = subprocess.run(
        [sys.executable, *args], check=False, capture_output=True, text=True, env=env, timeout=120
    )
    return result.stdout + result.stderr


def assert_no_credentials(output: str, forbidden: list[str]) -> None:
    leaked = sorted({value for value in forbidden if value in output})
    assert not leaked, f"credentials shown: {leaked}\n{output}"


def test_a_failing_s3_store_shows_no_credential_in_errors_or_logs() -> None:
    output = run(["-c", SCRIPT, failing_url(), repr(IN_KEYWORDS), "bad"], environment())
    assert "ERROR BackendError" in output, output
    assert " DEBUG " in output, "no DEBUG record was captured"
    assert_no_credentials(output, FORBIDDEN)


def test_an_endpoint_with_userinfo_is_refused_without_showing_it() -> None:
    url = failing_url(endpoint_userinfo=True)
    output = run(["-c", SCRIPT, url, repr(IN_KEYWORDS), "bad"], environment())
    assert "ERROR InvalidInputError" in output, output
    assert_no_credentials(output, FORBIDDEN)
    endpoint = f"http://{ENDPOINT_USERINFO[0]}:{ENDPOINT_USERINFO[1]}@127.0.0.1:{closed_port()}"
    keywords = {**IN_KEYWORDS, "endpoint": endpoint, "region": "garage", "max_retries": "0"}
    output = run(["-c", SCRIPT, "s3://bucket/prefix", repr(keywords), "bad"], environment())
    assert "ERROR InvalidInputError" in output, output
    assert_no_credentials(output, FORBIDDEN)


def test_anthill_stats_on_a_failing_store_shows_no_credential() -> None:
    for url in [failing_url(), failing_url(endpoint_userinfo=True)]:
        output = run(
            ["-m", "anthill", "--store", url, "stats"],
            environment(ANTHILL_SECRET=STORE_SECRET),
        )
        assert "anthill: error:" in output, output
        assert_no_credentials(output, FORBIDDEN)


def working_url() -> tuple[str, list[str]]:
    """A fresh store on the test S3 service with its credentials in the query,
    and those credentials."""
    base, _, query = S3_URL.partition("?")
    options = dict(parse_qsl(query))
    real = [
        value
        for name, value in [*options.items(), *os.environ.items()]
        if name.lower().removeprefix("aws_") in ("access_key_id", "secret_access_key")
    ]
    options["access_key_id"] = os.environ.get("AWS_ACCESS_KEY_ID", options.get("access_key_id", ""))
    options["secret_access_key"] = os.environ.get(
        "AWS_SECRET_ACCESS_KEY", options.get("secret_access_key", "")
    )
    query = "&".join(f"{name}={value}" for name, value in options.items())
    return f"{base.rstrip('/')}/redaction-{uuid.uuid4().hex}?{query}", real


@needs_s3
def test_a_working_s3_store_shows_no_credential() -> None:
    url, real = working_url()
    # Credentials in the query (the real ones), plus decoys in the
    # environment that must not show either.
    output = run(["-c", SCRIPT, url, "{}", "good"], environment(working=True))
    assert "REPR Store(" in output, output
    assert_no_credentials(output, [*real, STORE_SECRET, *IN_ENVIRONMENT.values()])
    stats = run(
        ["-m", "anthill", "--store", url, "stats"],
        environment(working=True, ANTHILL_SECRET=STORE_SECRET),
    )
    assert "pads" in stats, stats
    assert_no_credentials(stats, [*real, STORE_SECRET])


@needs_s3
def test_credentials_from_keywords_and_environment_do_not_show() -> None:
    url, real = working_url()
    base = url.partition("?")[0]
    options = dict(parse_qsl(url.partition("?")[2]))
    keywords = {
        name: value
        for name, value in options.items()
        if name not in ("access_key_id", "secret_access_key")
    }
    keywords["secret_access_key"] = options["secret_access_key"]
    env = environment(working=True, AWS_ACCESS_KEY_ID=options["access_key_id"])
    output = run(["-c", SCRIPT, base, repr(keywords), "good"], env)
    assert "REPR Store(" in output, output
    assert_no_credentials(output, [*real, STORE_SECRET])


def test_a_malformed_url_is_refused_without_showing_it() -> None:
    import anthill

    with pytest.raises(anthill.InvalidInputError, match="malformed store URL") as raised:
        anthill.open("s3:bucket?secret_access_key=MALFORMEDSECRET123")
    assert "MALFORMEDSECRET123" not in str(raised.value)
