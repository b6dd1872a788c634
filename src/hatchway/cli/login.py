"""``hatchway login``, ``hatchway logout`` and ``hatchway completion``: this machine's set-up of the CLI."""

from __future__ import annotations

import contextlib
import sys

from hatchway.cli._common import _conn, api, app, fail
from hatchway.cli._table import FLAG, Arg, echo

BASH = """\
# hatchway completion for bash: eval "$(hatchway completion bash)" in ~/.bashrc
_hatchway_complete() {
    local IFS=$'\\n'
    COMPREPLY=($(_HATCHWAY_COMPLETE=bash "${COMP_WORDS[0]}" "${COMP_WORDS[@]:1:$COMP_CWORD}" 2>/dev/null))
}
complete -o default -F _hatchway_complete hatchway
"""

ZSH = """\
#compdef hatchway
# hatchway completion for zsh: eval "$(hatchway completion zsh)" in ~/.zshrc (after compinit)
_hatchway() {
    local -a candidates
    candidates=("${(@f)$(_HATCHWAY_COMPLETE=zsh "${words[1]}" "${(@)words[2,CURRENT]}" 2>/dev/null)}")
    if (( ${#candidates[@]} )) && [[ -n "${candidates[1]}" ]]; then
        compadd -a candidates
    else
        _files
    fi
}
compdef _hatchway hatchway
"""


@app.command(
    "completion", Arg("shell", metavar="SHELL", choices=("bash", "zsh"), help="bash or zsh"), shares_options=False
)
def completion(shell: str) -> None:
    """Print the shell completion script: eval "$(hatchway completion bash)" in ~/.bashrc."""
    scripts = {"bash": BASH, "zsh": ZSH}
    if shell not in scripts:
        fail(f"no completion for {shell!r}; there is one for bash and zsh", 2)
    sys.stdout.write(scripts[shell])


@app.command("login", Arg("--with-token", kind=FLAG, help="read the token from stdin"))
def login(with_token: bool) -> None:
    """Store a gateway URL and token in the profile file (0600), used when no option or variable names them."""
    import getpass

    from hatchway.cli import _profile
    from hatchway.client import DEFAULT_URL, Client, Forbidden, NotFound

    url = (_conn.url or DEFAULT_URL).rstrip("/")
    token = _conn.token
    if with_token:
        token = sys.stdin.readline().strip()
    elif not token:
        if not sys.stdin.isatty():
            fail("give the token with --token, HATCHWAY_TOKEN or --with-token (read from stdin)")
        token = getpass.getpass(f"token for {url}: ").strip()
    if not token:
        fail("the token is empty")
    project = _conn.project if _conn.project != "proj_local" else None
    with Client(url, token, project=_conn.project, environment=_conn.env, retries=0) as hw:

        def check() -> None:  # a token this gateway does not know is refused here (401), before it is stored
            with contextlib.suppress(Forbidden, NotFound):  # known, but not for this project: still a login
                hw.get_project()

        api(check)
    where = _profile.save(url, token, project)
    echo(f"logged in to {url}; the token is stored in {where}")


@app.command("logout")
def logout() -> None:
    """Remove a gateway's token from the profile file (the current gateway's, or --url's)."""
    from hatchway.cli import _profile

    removed = _profile.forget(_conn.url)
    if removed is None:
        fail(f"no token is stored for {_conn.url or 'the current gateway'}")
    echo(f"logged out of {removed}")
