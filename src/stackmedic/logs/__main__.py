"""`python -m stackmedic.logs …`: the logs commands without the main CLI."""

from stackmedic.logs.cli import app

app(prog_name="stackmedic logs")
