"""Passwords out of connection strings and out of written text."""

import pytest
from psycopg.conninfo import conninfo_to_dict

from runbooks.errors import UsageError
from runbooks.redact import REDACTED, redact_dsn, scrub, split_password


@pytest.mark.parametrize(
    "dsn,password",
    [
        ("host=db port=5432 user=admin password=s3cr3t dbname=autolytiq", "s3cr3t"),
        ("postgresql://admin:s3cr3t@db:5432/autolytiq", "s3cr3t"),
        ("postgresql://admin:p%40ss@db/autolytiq", "p@ss"),
        ("host=db password='two words'", "two words"),
    ],
)
def test_password_is_taken_out_and_the_rest_kept(dsn, password):
    clean, found = split_password(dsn)
    assert found == password
    assert password not in clean and "password" not in clean
    expected = {k: v for k, v in conninfo_to_dict(dsn).items() if k != "password"}
    assert conninfo_to_dict(clean) == expected  # everything else kept


def test_dsn_without_password_is_left_alone():
    assert split_password("host=db user=admin") == ("host=db user=admin", None)
    assert split_password("") == ("", None)


def test_unparseable_dsn_is_refused_without_showing_it():
    with pytest.raises(UsageError, match="cannot be read safely") as refused:
        split_password("host=db port=5432 password=s3cr3t =")
    assert "s3cr3t" not in str(refused.value)


def test_redact_dsn_for_display():
    assert redact_dsn("postgresql://admin:s3cr3t@db/x") == f"postgresql://admin:{REDACTED}@db/x"
    assert redact_dsn("user=a password=s3cr3t host=b") == f"user=a password={REDACTED} host=b"


def test_scrub_replaces_every_secret_longest_first():
    assert scrub("a s3cr3t and s3cr3t-2 b", ["s3cr3t", "s3cr3t-2", ""]) == f"a {REDACTED} and {REDACTED} b"


@pytest.mark.parametrize(
    "line,secret",
    [
        ('{"level":"warn","jwt_secret":"k3y-old-value","msg":"rotating"}', "k3y-old-value"),
        ("Authorization: Basic dXNlcjpwYXNzd29yZA==", "dXNlcjpwYXNzd29yZA=="),
        ('{"auth":"Bearer abc.def-123"}', "abc.def-123"),
        ("call failed api_key=sk_live_51Hx token: t0k3n", "sk_live_51Hx"),
        ("jwt expired: eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl", "eyJhbGciOiJIUzI1NiJ9"),
    ],
)
def test_redact_line_hides_credentials_and_keeps_the_rest(line, secret):
    from runbooks.redact import redact_line

    redacted = redact_line(line)
    assert secret not in redacted and REDACTED in redacted
    assert redacted.split()[0][:4] == line.split()[0][:4]


def test_bearer_redaction_keeps_the_closing_quote():
    from runbooks.redact import redact_line

    assert redact_line('{"auth":"Bearer abc"}') == f'{{"auth":"Bearer {REDACTED}"}}'


def test_redact_line_hides_passwords_in_urls():
    from runbooks.redact import redact_line

    line = "FATAL could not connect: postgres://autolytiq:pg-pass-4b1d@db.internal:5432/autolytiq"
    assert redact_line(line) == f"FATAL could not connect: postgres://autolytiq:{REDACTED}@db.internal:5432/autolytiq"
