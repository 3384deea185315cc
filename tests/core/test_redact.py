"""Redaction: by key, by shape (URLs, DSNs, headers) and by registered value."""

import base64

import pytest

from stackmedic.redact import (
    MASK,
    redact,
    redact_text,
    register_environment_secrets,
    register_secret,
    register_url_secrets,
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


def test_short_mixed_secrets_are_masked_as_whole_tokens() -> None:
    """`hunter2` and `S3cret!` (7 characters, below the anywhere-length) echoed in an
    app's error or a log line are masked as tokens; `redis` right after "password" is
    masked, while `redis-cli`, `redis.conf` and "wrong password" stay readable."""
    for value in ("hunter2", "S3cret!", "redis", "wrong"):
        register_secret(value)
    assert redact_text('{"error": "login failed: hunter2 rejected (S3cret!)"}') == \
        f'{{"error": "login failed: {MASK} rejected ({MASK})"}}'
    assert redact_text("login failed with password redis.") == \
        f"login failed with password {MASK}."
    for text in ("password redis-cli", "see redis.conf", "cause: wrong password", "xhunter2"):
        assert redact_text(text) == text


def test_url_secrets_are_known_decoded_and_as_basic_credentials() -> None:
    """A URL's password is masked percent-decoded and as the Basic credential an HTTP
    client builds from it, even echoed without the word `Basic`."""
    register_url_secrets("http://app:h%40nter2@api:8080/")
    echoed = base64.b64encode(b"app:h@nter2").decode()
    assert redact_text(f'{{"auth": "{echoed}", "msg": "bad h@nter2"}}') == \
        f'{{"auth": "{MASK}", "msg": "bad {MASK}"}}'
    assert redact_text("redis://:a@b@cache:6379/0") == f"redis://:{MASK}@cache:6379/0"


@pytest.mark.parametrize(("text", "shown"), [
    ("DB_PASS=hunter2 REDIS_AUTH=hunter2", f"DB_PASS={MASK} REDIS_AUTH={MASK}"),
    ("X-Api-Key: hunter2", f"X-Api-Key: {MASK}"),
    ("aws_secret_access_key = hunter2", f"aws_secret_access_key = {MASK}"),
    ("host=db password='S3 cr,et' dbname=x", f"host=db password='{MASK}' dbname=x"),
    ('{"password": "a\\"b c"}', f'{{"password": "{MASK}"}}'),
    ("GET /x?key=hunter2&sig=abc", f"GET /x?key={MASK}&sig={MASK}"),
    ("Set-Cookie: sid=hunter2; Path=/", f"Set-Cookie: {MASK}"),
    ("redis-cli -h db -a hunter2 ping", f"redis-cli -h db -a {MASK} ping"),
    ("mysql -u root -phunter2 app", f"mysql -u root -p{MASK} app"),
    ("config set requirepass hunter2", f"config set requirepass {MASK}"),
    ("ACL SETUSER app on >hunter2 ~* +@all", f"ACL SETUSER app on >{MASK} ~* +@all"),
    ("MIGRATE db 6379 k 0 5000 AUTH2 app hunter2", f"MIGRATE db 6379 k 0 5000 AUTH2 {MASK}"),
    ("LOG: statement: ALTER ROLE a PASSWORD 'hunter2'",
     f"LOG: statement: ALTER ROLE a PASSWORD '{MASK}'"),
    ("ALTER ROLE app PASSWORD E'hun\\'ter2'", f"ALTER ROLE app PASSWORD '{MASK}'"),
    ("CREATE USER app WITH PASSWORD U&'hunter2'", f"CREATE USER app WITH PASSWORD '{MASK}'"),
    ("PGPASS=hunter2 psql -h db", f"PGPASS={MASK} psql -h db"),
    ("DB_PASSWD=hunter2 MYSQL_PWD=hunter2 mysql", f"DB_PASSWD={MASK} MYSQL_PWD={MASK} mysql"),
    ("pass: hunter2", f"pass: {MASK}"),
    ("db:\n  - pass = 'S3 cr,et'", f"db:\n  - pass = '{MASK}'"),
    ('{"user": "app", "pass": "hunter2"}', f'{{"user": "app", "pass": "{MASK}"}}'),
    ("level=warn user=app pass=hunter2 db=x", f"level=warn user=app pass={MASK} db=x"),
    ('1700000000.123456 [0 127.0.0.1:50000] "AUTH" "hunter2"',
     f'1700000000.123456 [0 127.0.0.1:50000] "AUTH" "{MASK}"'),
    ('1700000000.1 [0 127.0.0.1:50000] "auth" "app" "hun\\"ter2"',
     f'1700000000.1 [0 127.0.0.1:50000] "auth" "{MASK}"'),
    ('1700000000.1 [0 127.0.0.1:50000] "CONFIG" "SET" "requirepass" "hunter2"',
     f'1700000000.1 [0 127.0.0.1:50000] "CONFIG" "SET" "requirepass" "{MASK}"'),
    ('1700000000.1 [0 127.0.0.1:50000] "ACL" "SETUSER" "app" "on" ">hunter2"',
     f'1700000000.1 [0 127.0.0.1:50000] "ACL" "SETUSER" "app" "on" ">{MASK}"'),
])
def test_unregistered_credentials_masked_by_shape(text: str, shown: str) -> None:
    """Credentials found in output but never configured are masked where they sit."""
    assert redact_text(text) == shown


def test_placeholders_and_plain_commands_stay_readable() -> None:
    """Runbook placeholders and password-less commands are not taken for credentials."""
    for text in ("redis-cli -a $REDIS_PASSWORD ping", "mysql -h db -P 3306 -u app -p",
                 "http://x/?keyword=a", "bucket tokens=3"):
        assert redact_text(text) == text


@pytest.mark.parametrize("text", [
    "first pass: 3 rows", "pass rate: 98%", "Test pass: 98% (bypass=1)", "compass: north",
    "OLDPWD=/root PGPASSFILE=/root/.pgpass", '"CONFIG" "GET" "requirepass"',
    "auth failed: wrong password",
])
def test_pass_words_in_prose_stay_readable(text: str) -> None:
    """`pass` is a key only at a key position (line start, quoted, unspaced `pass=`), so
    prose, a PGPASSFILE path and a MONITOR line without a password are left alone."""
    assert redact_text(text) == text


def test_pass_and_pwd_named_keys_are_masked_whole() -> None:
    """`PGPASS` and `MYSQL_PWD` name passwords as mapping keys and environment variables."""
    register_environment_secrets({"MYSQL_PWD": "mysql-pw-1"})
    assert redact({"PGPASS": "x", "MYSQL_PWD": "y", "OLDPWD": "/root"}) == \
        {"PGPASS": MASK, "MYSQL_PWD": MASK, "OLDPWD": "/root"}
    assert redact_text("denied for mysql-pw-1") == f"denied for {MASK}"
