"""Redaction: by key, by shape (URLs, DSNs, headers) and by registered value."""

from stackmedic.redact import (
    MASK,
    redact,
    redact_text,
    register_environment_secrets,
    register_secret,
)


def test_secret_keys_are_masked_whole() -> None:
    """Values of password/secret/token/*_key/authorization keys never survive."""
    data = {"password": "p4ss", "DB_PASSWORD": "x1", "client_secret": "abc", "api_key": "k",
            "X-Api-Key": "k2", "Authorization": "Bearer abcdefgh", "token": "t0k",
            "monkey": "banana", "keys": 3, "bypass": "yes"}
    out = redact(data)
    assert {k for k, v in out.items() if v == MASK} == {
        "password", "DB_PASSWORD", "client_secret", "api_key", "X-Api-Key", "Authorization",
        "token"}


def test_passwords_in_urls_and_dsns() -> None:
    """URL userinfo passwords and libpq password= pairs are masked, user kept."""
    assert redact_text("postgresql://app:s3cr3t@db:5432/app") == f"postgresql://app:{MASK}@db:5432/app"
    assert redact_text("host=db user=app password=s3cr3t dbname=x") == \
        f"host=db user=app password={MASK} dbname=x"
    assert redact_text("redis://:hunter2@cache:6379/0") == f"redis://:{MASK}@cache:6379/0"


def test_bearer_tokens_in_text() -> None:
    """Credentials after Bearer/Basic inside free text are masked."""
    assert redact_text("sent Authorization: Bearer eyJhbGciOi.x.y") == \
        f"sent Authorization: Bearer {MASK}"


def test_registered_values_are_masked_anywhere() -> None:
    """A registered secret is masked inside nested structures and arbitrary text."""
    register_secret("canary-8c1f")
    assert redact({"body": ["error near canary-8c1f!"]}) == {"body": [f"error near {MASK}!"]}


def test_environment_secrets() -> None:
    """Values of secret-named environment variables are registered; others are not."""
    register_environment_secrets({"APP_TOKEN": "tok-12345", "HOME": "/root"})
    assert redact_text("tok-12345 at /root") == f"{MASK} at /root"


def test_word_passwords_are_masked_only_where_credentials_sit() -> None:
    """Registered `redis` and `wrong` leave `redis-cli`, `redis://` and prose alone, yet
    are masked in URL userinfo, `password:` fields, DSNs, PGPASSWORD= and AUTH."""
    register_secret("redis")
    register_secret("wrong")
    for text in ("redis-cli -h 127.0.0.1 -p 6379 --askpass", "target=redis://127.0.0.1:6379/0",
                 "If the estimates are wrong", "cause: wrong password"):
        assert redact_text(text) == text
    assert redact_text("redis://:redis@cache:6379/0") == f"redis://:{MASK}@cache:6379/0"
    assert redact_text('password: "wrong"') == f'password: "{MASK}"'
    assert redact_text("host=db user=app password=wrong dbname=app") == \
        f"host=db user=app password={MASK} dbname=app"
    assert redact_text("PGPASSWORD=wrong psql -h db") == f"PGPASSWORD={MASK} psql -h db"
    assert redact_text("AUTH default redis") == f"AUTH {MASK}"
    assert redact_text("requirepass redis") == f"requirepass {MASK}"


def test_long_secrets_are_masked_everywhere_plain_words_are_not() -> None:
    """A long or mixed secret is masked anywhere, even inside a word; an 8-letter word
    or number (`postgres`, `12345678`) is not, as it names things a report shows."""
    register_secret("Tr0ub4dor&3")
    register_secret("correcthorsebatterystaple")
    register_secret("postgres")
    register_secret("12345678")
    assert redact_text("echo Tr0ub4dor&3 and xcorrecthorsebatterystaplex") == \
        f"echo {MASK} and x{MASK}x"
    assert redact_text("postgresql://db/app pid 12345678") == "postgresql://db/app pid 12345678"
